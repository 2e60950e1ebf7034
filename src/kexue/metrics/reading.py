"""Reading-comprehension scores of the CIPS-SOGOU QA evaluation (https://kexue.fm/archives/7148,
https://kexue.fm/archives/5409): answers are normalised (lower case, full width -> half width, punctuation and
spaces removed), Accuracy = the normalised prediction is one of the accepted answers, F1 = character-overlap F1
maximised over the accepted answers, Final = (Accuracy + F1) / 2.

A question with no answer has the accepted list [""] (or []): an empty prediction scores 1, any other 0.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Hashable, Mapping, Sequence

__all__ = ["normalize_answer", "to_half_width", "exact_match", "char_f1", "max_char_f1", "sogou_qa_scores"]


def to_half_width(text: str) -> str:
    """Full-width forms U+FF01..U+FF5E -> ASCII U+0021..U+007E, the ideographic space U+3000 -> ' '."""
    _check_str("text", text)
    return "".join(" " if c == "\u3000" else chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else c
                   for c in text)


def normalize_answer(text: str) -> str:
    """Half width, lower case, then drop every punctuation character (Unicode category P*, so both ASCII and
    Chinese punctuation such as ，。？、“”《》) and every space."""
    return "".join(c for c in to_half_width(text).lower()
                   if not c.isspace() and not unicodedata.category(c).startswith("P"))


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals one of the normalised accepted answers, else 0.0."""
    golds = _golds(answers)
    return float(normalize_answer(prediction) in golds)


def char_f1(prediction: str, answer: str) -> float:
    """Character-overlap F1 of the normalised strings (multiset overlap); two empty strings score 1."""
    p, g = normalize_answer(prediction), normalize_answer(answer)
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def max_char_f1(prediction: str, answers: Sequence[str]) -> float:
    """char_f1 maximised over the accepted answers ([] counts as the no-answer list [""])."""
    _check_str("prediction", prediction)
    return max(char_f1(prediction, a) for a in _golds(answers))


def sogou_qa_scores(preds: Mapping[Hashable, str], answers: Mapping[Hashable, Sequence[str]]) -> dict[str, float]:
    """{"acc", "f1", "final"} averaged over the questions of `answers`; `preds` must answer exactly those ids
    (an empty string is the "no answer" prediction)."""
    if not isinstance(preds, Mapping) or not isinstance(answers, Mapping):
        raise TypeError(f"preds and answers must be mappings qid -> answer(s), got {type(preds).__name__} and "
                        f"{type(answers).__name__}")
    if not answers:
        raise ValueError("answers must hold at least one question, got none")
    missing, extra = set(answers) - set(preds), set(preds) - set(answers)
    if missing or extra:
        raise ValueError(f"preds must answer exactly the questions of answers: missing {sorted(map(str, missing))[:5]}"
                         f", unknown {sorted(map(str, extra))[:5]}")
    acc = sum(exact_match(preds[q], answers[q]) for q in answers) / len(answers)
    f1 = sum(max_char_f1(preds[q], answers[q]) for q in answers) / len(answers)
    return {"acc": acc, "f1": f1, "final": (acc + f1) / 2}


def _check_str(name: str, value) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r} ({type(value).__name__})")


def _golds(answers: Sequence[str]) -> set[str]:
    if isinstance(answers, str):
        raise TypeError(f"answers must be a list of accepted answers, got the single str {answers!r}")
    answers = list(answers)
    for a in answers:
        _check_str("each accepted answer", a)
    return {normalize_answer(a) for a in answers} or {""}
