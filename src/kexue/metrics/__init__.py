"""Evaluation helpers: scores computed from a model's outputs, not layers (retrieval top-k, parsing F1)."""
from .attribution import attribution_hit_at_1, roc_auc
from .extraction import bio_entities, triple_f1
from .parsing import build_tree, tree_to_spans, unlabeled_f1
from .reading import char_f1, exact_match, max_char_f1, normalize_answer, sogou_qa_scores, to_half_width
from .retrieval import retrieval_topk_accuracy
from .rouge import lcs_length, rouge_l

__all__ = ["attribution_hit_at_1", "roc_auc", "build_tree", "tree_to_spans", "unlabeled_f1", "retrieval_topk_accuracy",
           "char_f1", "exact_match", "max_char_f1", "normalize_answer", "sogou_qa_scores", "to_half_width",
           "lcs_length", "rouge_l", "triple_f1", "bio_entities"]
