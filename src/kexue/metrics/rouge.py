"""ROUGE-L (longest common subsequence F1), the metric of bert4keras's title-generation example
(task_seq2seq_autotitle.py, https://kexue.fm/archives/6933), on characters or any token sequence."""
from __future__ import annotations

from typing import Sequence

__all__ = ["lcs_length", "rouge_l"]


def _check_seq(name: str, value) -> Sequence:
    if not isinstance(value, (str, Sequence)):
        raise TypeError(f"{name} must be a str or a sequence of tokens, got {type(value).__name__}")
    return value


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of a and b (dynamic programming, O(len(a) len(b)))."""
    a, b = _check_seq("a", a), _check_seq("b", b)
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: Sequence, reference: Sequence) -> float:
    """ROUGE-L F1 = 2 P R / (P + R) with P = LCS / len(prediction), R = LCS / len(reference); a str is
    scored per character. 1.0 when both are empty, 0.0 when only one is."""
    prediction, reference = _check_seq("prediction", prediction), _check_seq("reference", reference)
    if not prediction or not reference:
        return float(not prediction and not reference)
    lcs = lcs_length(prediction, reference)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(prediction), lcs / len(reference)
    return 2 * p * r / (p + r)
