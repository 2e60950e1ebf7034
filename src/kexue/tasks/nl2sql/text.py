"""String helpers of the NL2SQL baseline (https://kexue.fm/archives/6771): edit distance, the most similar
candidate, number detection and the location of a condition value in the question."""
from __future__ import annotations

import re
from typing import Callable, Sequence

__all__ = ["edit_distance", "most_similar", "is_number", "locate_value"]

_NUMBER = re.compile(r"\d+(\.\d+)?")


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character each cost 1)."""
    if not isinstance(a, str) or not isinstance(b, str):
        raise TypeError(f"edit_distance compares two strings, got {type(a).__name__} and {type(b).__name__}")
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def most_similar(value: str, candidates: Sequence[str],
                 similarity: Callable[[str, str], float] = edit_distance) -> tuple[str, float]:
    """(candidate, distance) with the smallest `similarity(value, candidate)` (a distance); the first wins ties."""
    if not candidates:
        raise ValueError(f"most_similar: no candidates to compare {value!r} with")
    scores = [similarity(value, c) for c in candidates]
    best = min(range(len(candidates)), key=scores.__getitem__)
    return candidates[best], scores[best]


def is_number(value: str) -> bool:
    """The reference's test: digits with at most one '.' ("35", "3.5"); "1,000", "-3" and "1e3" are not numbers
    here (pass another predicate to the decoder to change that)."""
    return bool(_NUMBER.fullmatch(value))


def locate_value(question: str, value: str, taken: Sequence[bool] | None = None,
                 similarity: Callable[[str, str], float] = edit_distance) -> tuple[int, int, bool] | None:
    """(start, end, overlaps) of the question span that carries `value`, or None when nothing is close.

    An exact occurrence not overlapping the `taken` characters is preferred (the reference took the first
    occurrence, `question.index`, even when an earlier condition had labelled it); without an exact match,
    the nearest character window of length len(value) - 1, len(value) or len(value) + 1 (the reference used
    jieba word n-grams), accepted when its distance is below len(value). `overlaps` says that the span
    overwrites another condition's labels."""
    if not value:
        return None
    taken = list(taken) if taken is not None else [False] * len(question)
    spans = []
    start = question.find(value)
    while start >= 0:
        spans.append((start, start + len(value)))
        start = question.find(value, start + 1)
    if not spans:
        windows = [(s, s + n) for n in (len(value) - 1, len(value), len(value) + 1) if n >= 1
                   for s in range(len(question) - n + 1)]
        if not windows:
            return None
        best, distance = most_similar(value, [question[s:e] for s, e in windows], similarity)
        if distance >= len(value):
            return None
        spans = [w for w in windows if question[w[0]:w[1]] == best]
    for s, e in spans:
        if not any(taken[s:e]):
            return s, e, False
    return spans[0][0], spans[0][1], True
