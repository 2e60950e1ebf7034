"""Masked sequence pooling: attention pooling and masked max / average pools (https://kexue.fm/archives/5409).

AttentionPooling1d: alpha = softmax_t(v^T tanh(W x_t)) over real tokens only, pooled = sum_t alpha_t x_t
(W and v bias-free, as in the DGCNN reader). Masks are [B, n] bool, True = real token; a row with no real
token pools to zeros.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from kexue._validate import check_float, check_int
from kexue.ops import masked_max, masked_mean, masked_softmax

__all__ = ["AttentionPooling1d", "MaskedMaxPool1d", "MaskedAvgPool1d"]


def _check(x: Tensor, mask: Tensor | None) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be [B, n, C], got shape {tuple(x.shape)}")
    if mask is not None and mask.shape != x.shape[:2]:
        raise ValueError(f"mask must be [B, n] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    if mask is not None and mask.dtype != torch.bool and ((mask != 0) & (mask != 1)).any():
        raise ValueError("mask must hold only 0/1 (True = real token), got other values")


class AttentionPooling1d(nn.Module):
    """Additive-attention pooling over time (https://kexue.fm/archives/5409): [B, n, C] -> [B, C]."""

    def __init__(self, hidden_size: int, intermediate_size: int | None = None):
        super().__init__()
        hidden_size = check_int("hidden_size", hidden_size, 1)
        width = hidden_size if intermediate_size is None else check_int("intermediate_size", intermediate_size, 1)
        self.proj = nn.Linear(hidden_size, width, bias=False)
        self.score = nn.Linear(width, 1, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None = None, output_attentions: bool = False):
        """x [B, n, hidden_size], mask [B, n] (True = real) -> pooled [B, hidden_size] (, weights [B, n])."""
        _check(x, mask)
        if x.shape[-1] != self.proj.in_features:
            raise ValueError(f"x must be [B, n, hidden_size={self.proj.in_features}], got shape {tuple(x.shape)}")
        logits = self.score(torch.tanh(self.proj(x)))[..., 0]                # [B, n]
        alpha = masked_softmax(logits, mask)                                 # [B, n], 0 on pads
        pooled = torch.einsum("bn,bnc->bc", alpha, x)                        # [B, C]
        return (pooled, alpha) if output_attentions else pooled


class MaskedMaxPool1d(nn.Module):
    """Max over real tokens only (pads ignored even when largest): [B, n, C] -> [B, C]."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check(x, mask)
        if x.shape[1] == 0:                                                  # no token at all: zeros [B, C]
            return x.sum(1)
        return masked_max(x, mask, dim=1)


class MaskedAvgPool1d(nn.Module):
    """Mean over real tokens only, sum(M x) / (sum(M) + eps): [B, n, C] -> [B, C]."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = check_float("eps", eps, 0.0, low_open=True)  # eps <= 0: 0 / 0 on an all-padding row

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check(x, mask)
        if x.shape[1] == 0:                                                  # no token at all: zeros [B, C]
            return x.sum(1)
        eps = max(self.eps, torch.finfo(x.dtype).tiny)                      # an eps below the dtype's tiny rounds to 0
        return masked_mean(x, mask, dim=1, eps=eps)
