"""Micro-averaged F1 over extracted triples (or any hashable items), the metric of the SPO extractor in
https://kexue.fm/archives/6736: counts are pooled over all texts before dividing (micro, not macro)."""
from __future__ import annotations

from typing import Hashable, Iterable, Sequence

__all__ = ["triple_f1", "bio_entities"]


def triple_f1(pred: Sequence[Iterable[Hashable]], gold: Sequence[Iterable[Hashable]]) -> tuple[float, float, float]:
    """(f1, precision, recall) of predicted vs gold item sets, one set per text, duplicates counted once.

    precision = |pred ∩ gold| / |pred| (1.0 when nothing is predicted), recall = |pred ∩ gold| / |gold|
    (1.0 when there is nothing to find), f1 = their harmonic mean (0.0 when both are 0)."""
    if isinstance(pred, (str, bytes)) or isinstance(gold, (str, bytes)):
        raise TypeError("pred and gold must be sequences of sets of items, one per text, not strings")
    pred, gold = list(pred), list(gold)
    if len(pred) != len(gold):
        raise ValueError(f"pred and gold must hold one set per text: got {len(pred)} and {len(gold)} texts")
    tp = n_pred = n_gold = 0
    for i, (p, g) in enumerate(zip(pred, gold)):
        if isinstance(p, (str, bytes)) or isinstance(g, (str, bytes)):
            raise TypeError(f"text {i}: pred and gold entries must be sets of items, got a string")
        p, g = set(p), set(g)
        tp += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_gold if n_gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f1, precision, recall


def bio_entities(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Entities (start, end inclusive, type) of a BIO tag sequence ("B-PER", "I-PER", "O"): an entity starts
    at B-X and runs over the following I-X; an I-X without a B-X of the same type before it starts one too
    (the conlleval convention)."""
    out, start, kind = [], None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        if not isinstance(tag, str) or not (tag == "O" or tag[:2] in ("B-", "I-") and len(tag) > 2):
            raise ValueError(f"tags must be 'O', 'B-<type>' or 'I-<type>', got {tag!r} at position {i}")
        if start is not None and (tag == "O" or tag.startswith("B-") or tag[2:] != kind):
            out.append((start, i - 1, kind))
            start = None
        if tag != "O" and start is None:
            start, kind = i, tag[2:]
    return out
