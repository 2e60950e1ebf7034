"""Conditional LayerNorm and ScaleShift (https://kexue.fm/archives/6810, https://kexue.fm/archives/7124).

ConditionalLayerNorm: y = LN0(x) * (gamma + W_g c) + (beta + W_b c), LN0 without affine terms. W_g, W_b are
bias-free and zero-initialised (bert4keras `LayerNormalization(conditional=True)`), so at initialisation the
layer is exactly an ordinary LayerNorm and conditioning is learned from there.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_float, check_int

__all__ = ["ConditionalLayerNorm", "ScaleShift"]


class ConditionalLayerNorm(nn.Module):
    """LayerNorm whose gain and bias are shifted by projections of a condition vector
    (https://kexue.fm/archives/7124). x [B, n, hidden_size] (or [B, hidden_size]); cond [B, cond_size] is
    broadcast over time, or [B, n, cond_size] per position. `hidden_units` inserts a shared bias-free projection of the
    condition first (with `hidden_activation`), as in bert4keras."""

    def __init__(self, hidden_size: int, cond_size: int, hidden_units: int | None = None,
                 hidden_activation: Callable[[Tensor], Tensor] | None = None, eps: float = 1e-12,
                 center: bool = True, scale: bool = True, zero_init: bool = True):
        super().__init__()
        hidden_size, cond_size = check_int("hidden_size", hidden_size, 1), check_int("cond_size", cond_size, 1)
        hidden_units = None if hidden_units is None else check_int("hidden_units", hidden_units, 1)
        eps = check_float("eps", eps, 0.0, low_open=True)  # eps <= 0: NaN on a constant row
        if not (center or scale):
            raise ValueError("at least one of center, scale must be True, got center=False, scale=False")
        self.hidden_size, self.cond_size, self.eps = hidden_size, cond_size, eps
        self.hidden_dense = nn.Linear(cond_size, hidden_units, bias=False) if hidden_units else None
        self.hidden_activation = hidden_activation
        width = hidden_units or cond_size
        self.weight = nn.Parameter(torch.ones(hidden_size)) if scale else None
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if center else None
        self.gamma_dense = nn.Linear(width, hidden_size, bias=False) if scale else None
        self.beta_dense = nn.Linear(width, hidden_size, bias=False) if center else None
        if zero_init:
            for lin in (self.gamma_dense, self.beta_dense):
                if lin is not None:
                    nn.init.zeros_(lin.weight)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if x.shape[-1] != self.hidden_size or cond.shape[-1] != self.cond_size:
            raise ValueError(f"x must end in hidden_size={self.hidden_size} and cond in cond_size={self.cond_size}, "
                             f"got x {tuple(x.shape)}, cond {tuple(cond.shape)}")
        if cond.dim() > x.dim() or (cond.dim() > 1 and x.dim() > 1 and cond.shape[0] != x.shape[0]):
            raise ValueError(f"cond must be [B, cond_dim] or [B, n, cond_dim] with the batch of x, got x "
                             f"{tuple(x.shape)}, cond {tuple(cond.shape)}")
        if cond.dim() < x.dim():
            cond = cond.reshape(cond.shape[0], *([1] * (x.dim() - cond.dim())), cond.shape[-1])   # [B, 1, c]
        if self.hidden_dense is not None:
            cond = self.hidden_dense(cond)
            cond = cond if self.hidden_activation is None else self.hidden_activation(cond)
        eps = max(self.eps, torch.finfo(torch.float32).tiny)                 # an eps that rounds to 0: NaN on constant rows
        y = F.layer_norm(x, (self.hidden_size,), eps=eps)                         # LN0: no affine terms
        if self.weight is not None:
            y = y * (self.weight + self.gamma_dense(cond))
        if self.bias is not None:
            y = y + (self.bias + self.beta_dense(cond))
        return y


class ScaleShift(nn.Module):
    """y = exp(log_scale) * x + shift per feature, both zero-initialised, so the layer starts as the identity
    (the learned vocabulary prior of https://kexue.fm/archives/6810 / seq2seq_bidecoder.py)."""

    def __init__(self, features: int):
        super().__init__()
        features = check_int("features", features, 1)
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.shift = nn.Parameter(torch.zeros(features))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.log_scale.shape[0]:
            raise ValueError(f"x must end in features={self.log_scale.shape[0]}, got shape {tuple(x.shape)}")
        return torch.exp(self.log_scale) * x + self.shift
