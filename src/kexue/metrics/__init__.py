"""Evaluation helpers: scores computed from a model's outputs, not layers (retrieval top-k, parsing F1)."""
from .parsing import build_tree, tree_to_spans, unlabeled_f1
from .retrieval import retrieval_topk_accuracy

__all__ = ["build_tree", "tree_to_spans", "unlabeled_f1", "retrieval_topk_accuracy"]
