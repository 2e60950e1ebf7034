"""Margin softmax losses on a cosine classifier: normalised softmax, AM-Softmax (CosFace), the author's
"simpler A-Softmax" and AAM (ArcFace) (https://kexue.fm/archives/5743).

Features and class weights are both L2-normalised, so the logits are cosines in [-1, 1]; the scale s
lets the softmax become confident and the margin m, applied to the gold class only, tightens each
group's cluster, which is what helps retrieval on unseen groups.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.nn._reduce import mean_or_zero

__all__ = [
    "CosineClassifier", "margin_logits", "MarginSoftmaxLoss", "AMSoftmaxLoss", "ArcFaceLoss",
]

_KINDS = ("softmax", "am", "aam", "a_simple")


class CosineClassifier(nn.Module):
    """Bias-free classifier with unit-norm class vectors, re-normalised in every forward (so gradients
    see the normalisation, unlike a post-step projection).  z [B, D] -> cosines [B, C]."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        in_features, num_classes = check_int("in_features", in_features, 1), check_int("num_classes", num_classes, 1)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))  # [C, D], torch Linear layout
        nn.init.xavier_uniform_(self.weight)

    def forward(self, z: Tensor, normalize_input: bool = True) -> Tensor:
        if z.shape[-1] != self.weight.shape[1]:
            raise ValueError(f"CosineClassifier: expected features of size {self.weight.shape[1]}, got {tuple(z.shape)}")
        if normalize_input:
            z = F.normalize(z, dim=-1)
        return z @ F.normalize(self.weight, dim=-1).T  # [B, C]


def margin_logits(cos: Tensor, target: Tensor, kind: str = "am", scale: float = 30.0, margin: float = 0.35,
                  easy_margin: bool = False, eps: float = 1e-7) -> Tensor:
    """Scaled logits with the gold entry replaced by its margin version (cos [B, C], target [B]):
    am: cos - m;  aam: cos(theta + m);  a_simple: min(cos, cos 4theta) = min(c, 8c^4 - 8c^2 + 1) (the
    author's surrogate for SphereFace, not its monotone psi);  softmax: unchanged.  For aam past theta + m
    > pi, cos(theta + m) stops decreasing; like insightface we then use cos - m sin(m) (easy_margin:
    keep cos wherever cos <= 0).  Half inputs are computed in float32; acos is clamped to [-1 + eps, 1 - eps]."""
    check_choice("kind", kind, _KINDS)
    scale, margin = check_float("scale", scale), check_float("margin", margin)
    eps = check_float("eps", eps, 0.0, 0.5, low_open=True)
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"margin_logits: target must hold integer class ids, got dtype {target.dtype}")
    if cos.dim() != 2 or target.shape != cos.shape[:1]:
        raise ValueError(f"margin_logits: expected cos [B, C] and target [B], got {tuple(cos.shape)}, {tuple(target.shape)}")
    if target.numel() and (target.min() < 0 or target.max() >= cos.shape[1]):
        raise ValueError(f"margin_logits: target ids must be in [0, {cos.shape[1]}), got range "
                         f"[{target.min().item()}, {target.max().item()}]")
    cos = cos.float() if cos.dtype in (torch.float16, torch.bfloat16) else cos
    c = cos.gather(1, target[:, None])  # [B, 1] gold cosines
    if kind == "softmax":
        gold = c
    elif kind == "am":
        gold = c - margin
    elif kind == "a_simple":
        gold = torch.minimum(c, 8 * c**4 - 8 * c**2 + 1)
    else:
        eps = max(eps, torch.finfo(c.dtype).eps)  # 1 - eps must differ from 1: acos'(1) = -inf
        theta = torch.acos(c.clamp(-1 + eps, 1 - eps))
        phi = torch.cos(theta + margin)
        if easy_margin:
            gold = torch.where(c > 0, phi, c)
        else:
            gold = torch.where(theta + margin < math.pi, phi, c - margin * math.sin(margin))
    return scale * cos.scatter(1, target[:, None], gold)  # [B, C]


class MarginSoftmaxLoss(nn.Module):
    """Cross-entropy on margin logits (https://kexue.fm/archives/5743); equal to the author's
    logsumexp form of sparse_amsoftmax_loss.  forward(cos [B, C], target [B]) -> loss."""

    def __init__(self, kind: str = "am", scale: float = 30.0, margin: float = 0.35, easy_margin: bool = False,
                 reduction: str = "mean"):
        super().__init__()
        check_choice("kind", kind, _KINDS)
        scale = check_float("scale", scale, 0.0, low_open=True)
        margin = check_float("margin", margin, 0.0)
        easy_margin = check_bool("easy_margin", easy_margin)
        check_choice("reduction", reduction, ("mean", "sum", "none"))
        self.kind, self.scale, self.margin = kind, float(scale), float(margin)
        self.easy_margin, self.reduction = easy_margin, reduction

    def forward(self, cos: Tensor, target: Tensor) -> Tensor:
        logits = margin_logits(cos, target, self.kind, self.scale, self.margin, self.easy_margin)
        if self.reduction == "mean":  # an empty batch: 0, not NaN
            return mean_or_zero(F.cross_entropy(logits, target, reduction="none"))
        return F.cross_entropy(logits, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, scale={self.scale}, margin={self.margin}"


class AMSoftmaxLoss(MarginSoftmaxLoss):
    """AM-Softmax / CosFace with the author's defaults s = 30, m = 0.35 (https://kexue.fm/archives/5743)."""

    def __init__(self, scale: float = 30.0, margin: float = 0.35, reduction: str = "mean"):
        super().__init__("am", scale, margin, reduction=reduction)


class ArcFaceLoss(MarginSoftmaxLoss):
    """AAM-Softmax / ArcFace, s = 30, m = 0.5 rad (https://kexue.fm/archives/5743, README of margin-softmax)."""

    def __init__(self, scale: float = 30.0, margin: float = 0.5, easy_margin: bool = False, reduction: str = "mean"):
        super().__init__("aam", scale, margin, easy_margin, reduction)
