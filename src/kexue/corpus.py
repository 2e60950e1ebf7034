"""Corpus statistics: pointwise mutual information of a co-occurrence count matrix, the fixed point that
skip-gram with negative sampling factorises (https://kexue.fm/archives/5617; `kexue.nn.SkipGramNS`)."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from kexue._validate import check_float, check_int

__all__ = ["pmi_matrix"]


def pmi_matrix(cooccurrence: Tensor, shift_k: int | None = None, smoothing_power: float = 1.0) -> Tensor:
    """PMI(i, j) = log p(i, j) / (p(i) p_alpha(j)) from a [V, V] count matrix, minus log k when shift_k is
    given (SGNS's fixed point, Levy & Goldberg 2014).  p_alpha: context counts ** smoothing_power.
    Zero counts give -inf."""
    c = torch.as_tensor(cooccurrence, dtype=torch.float64)
    if c.dim() != 2 or not torch.isfinite(c).all() or (c < 0).any() or c.sum() <= 0:
        raise ValueError(f"pmi_matrix: cooccurrence must be a finite non-negative 2-D matrix with a positive sum, "
                         f"got shape {tuple(c.shape)}")
    if shift_k is not None:
        shift_k = check_int("shift_k", shift_k, 1)
    smoothing_power = check_float("smoothing_power", smoothing_power, 0.0)
    p = c / c.sum()
    pi = p.sum(1, keepdim=True)
    pj = p.sum(0, keepdim=True) ** smoothing_power
    pmi = p.log() - pi.log() - (pj / pj.sum()).log()
    return pmi - (math.log(shift_k) if shift_k else 0.0)
