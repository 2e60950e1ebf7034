"""Faithfulness of token attributions on tasks whose evidence is known (spec nlp/12, reproduction A of
https://kexue.fm/archives/7533): does the top-scored token hold the evidence (hit@1), and how well do the
scores separate evidence from the rest (ROC AUC, the Mann-Whitney statistic)?"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["attribution_hit_at_1", "roc_auc"]


def _check_pair(scores: Tensor, relevant: Tensor) -> tuple[Tensor, Tensor]:
    scores, relevant = torch.as_tensor(scores), torch.as_tensor(relevant)
    if scores.dim() != 1 or relevant.shape != scores.shape or relevant.dtype != torch.bool:
        raise ValueError(f"expected scores [n] and a bool mask relevant [n] of the same shape, got {scores.dtype} "
                         f"{tuple(scores.shape)} and {relevant.dtype} {tuple(relevant.shape)}")
    if scores.numel() == 0 or not bool(torch.isfinite(scores).all()):
        raise ValueError(f"scores must be a non-empty vector of finite numbers, got {scores.tolist()}")
    return scores.double(), relevant


def attribution_hit_at_1(scores: Tensor, relevant: Tensor) -> float:
    """1.0 when the highest score falls on a relevant token, else 0.0. Ties at the top count as the fraction
    of the tied tokens that are relevant (so a constant score is not a free hit)."""
    scores, relevant = _check_pair(scores, relevant)
    top = scores == scores.max()
    return float(relevant[top].double().mean())


def roc_auc(scores: Tensor, relevant: Tensor) -> float:
    """P(score of a relevant token > score of an irrelevant one), ties counted 1/2 (Mann-Whitney U / (P N)).
    Needs at least one token of each kind."""
    scores, relevant = _check_pair(scores, relevant)
    pos, neg = scores[relevant], scores[~relevant]
    if pos.numel() == 0 or neg.numel() == 0:
        raise ValueError(f"roc_auc needs relevant and irrelevant tokens, got {pos.numel()} relevant and "
                         f"{neg.numel()} irrelevant")
    gt = (pos[:, None] > neg[None, :]).double()                                     # [P, N]
    eq = (pos[:, None] == neg[None, :]).double()
    return float((gt + 0.5 * eq).mean())
