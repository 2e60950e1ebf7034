"""Unsupervised constituency parsing, evaluated: syntactic distances -> binary tree -> spans -> unlabelled
bracket F1 (ON-LSTM, https://kexue.fm/archives/6621; the distances come from `kexue.nn.syntactic_distance`)."""
from __future__ import annotations

from typing import Any, Sequence

__all__ = ["build_tree", "tree_to_spans", "unlabeled_f1"]


def build_tree(distances: Sequence[float], tokens: Sequence) -> Any:
    """Greedy top-down binarisation (Ordered-Neurons `build_tree`): split at the first maximum k into
    tree(x_<k) and [x_k, tree(x_>k)]; a single token is returned as itself."""
    if len(distances) != len(tokens) or len(tokens) == 0:
        raise ValueError(f"distances and tokens must be non-empty and of equal length, got {len(distances)} "
                         f"and {len(tokens)}")
    if len(tokens) == 1:
        return tokens[0]
    d = [float(v) for v in distances]
    k = d.index(max(d))
    right = tokens[k] if k == len(tokens) - 1 else [tokens[k], build_tree(d[k + 1:], tokens[k + 1:])]
    return right if k == 0 else [build_tree(d[:k], tokens[:k]), right]


def tree_to_spans(tree: Any) -> set[tuple[int, int]]:
    """Constituent spans (start, end-exclusive) of length >= 2 of a nested-list tree (leaves = non-lists)."""
    spans: set[tuple[int, int]] = set()

    def walk(node, start: int) -> int:
        if not isinstance(node, (list, tuple)):
            return start + 1
        end = start
        for child in node:
            end = walk(child, end)
        if end - start >= 2:
            spans.add((start, end))
        return end

    walk(tree, 0)
    return spans


def unlabeled_f1(pred_spans: set, gold_spans: set) -> float:
    """Unlabelled bracket F1; two empty span sets score 1."""
    if not pred_spans and not gold_spans:
        return 1.0
    hit = len(set(pred_spans) & set(gold_spans))
    if hit == 0:
        return 0.0
    p, r = hit / len(pred_spans), hit / len(gold_spans)
    return 2 * p * r / (p + r)
