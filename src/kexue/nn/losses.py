"""Losses of the articles: the VAE's Gaussian KL terms and loss (https://kexue.fm/archives/5253),
focal loss (https://kexue.fm/archives/4733), multilabel categorical cross-entropy
(https://kexue.fm/archives/7359) and token cross-entropy over real (unpadded) positions.

KL convention everywhere: sum over the latent (last) dim, then `reduction` over the leading batch dims,
so the KL and a per-sample reconstruction sum stay on the same scale (mean over latent dims would be a
beta-VAE by accident).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_choice, check_float, check_int
from kexue.nn._reduce import mean_or_zero
from kexue.nn.reparam import LOGVAR_RANGE

__all__ = [
    "kl_std_normal", "kl_diag_normals", "ClassPrior", "VAELoss", "focal_loss", "binary_focal_loss",
    "multilabel_categorical_crossentropy", "masked_cross_entropy", "seq2seq_lm_loss",
]

_REDUCTIONS = ("sum", "mean", "none")


def _reduce(x: Tensor, reduction: str, fn: str) -> Tensor:
    if reduction == "sum":
        return x.sum()
    if reduction == "mean":
        return mean_or_zero(x)  # an empty batch: 0 with a graph, not NaN
    if reduction == "none":
        return x
    raise ValueError(f"{fn}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def kl_std_normal(mu: Tensor, logvar: Tensor, reduction: str = "sum") -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) = 1/2 sum_d (mu^2 + sigma^2 - log sigma^2 - 1)
    (https://kexue.fm/archives/5253).  mu, logvar [..., D] -> [...] ("none") or a scalar."""
    if mu.shape != logvar.shape:
        raise ValueError(f"kl_std_normal: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} differ in shape")
    logvar = logvar.clamp(*LOGVAR_RANGE)
    kl = 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(-1)  # [...]
    return _reduce(kl, reduction, "kl_std_normal")


def kl_diag_normals(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor | None = None,
                    reduction: str = "sum") -> Tensor:
    """KL(N(mu_q, e^lv_q) || N(mu_p, e^lv_p)) summed over the last dim; logvar_p=None means unit variance,
    the author's CVAE prior N(mu^Y, I) (https://kexue.fm/archives/5253)."""
    logvar_q = logvar_q.clamp(*LOGVAR_RANGE)
    logvar_p = torch.zeros_like(logvar_q) if logvar_p is None else logvar_p.clamp(*LOGVAR_RANGE)
    kl = 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).square()) / logvar_p.exp() - 1)
    return _reduce(kl.sum(-1), reduction, "kl_diag_normals")


class ClassPrior(nn.Module):
    """Learned class means mu^Y = W onehot(y) of the author's conditional VAE: the KL becomes
    KL(N(mu, sigma^2) || N(mu^Y, I)), and z ~ N(mu^Y, I) generates class y (https://kexue.fm/archives/5253).
    y [B] class ids -> [B, latent_size]; zero-initialised (starts as the plain N(0, I) prior)."""

    def __init__(self, num_classes: int, latent_size: int):
        super().__init__()
        num_classes, latent_size = check_int("num_classes", num_classes, 1), check_int("latent_size", latent_size, 1)
        self.means = nn.Embedding(num_classes, latent_size)  # row y = W onehot(y)
        nn.init.zeros_(self.means.weight)

    def forward(self, y: Tensor) -> Tensor:
        if y.numel() and (y.min() < 0 or y.max() >= self.means.num_embeddings):
            raise ValueError(f"ClassPrior: class ids must be in [0, {self.means.num_embeddings}), got range "
                             f"[{y.min().item()}, {y.max().item()}]")
        return self.means(y)

    def sample(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(mu^Y, I) for each class id in y."""
        mu = self.forward(y)
        return mu + torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)


class VAELoss(nn.Module):
    """Negative ELBO = reconstruction + beta * KL, both summed per sample (https://kexue.fm/archives/5253).

    recon: "bce" (decoder logits, targets in [0, 1], binary_cross_entropy_with_logits), "mse" (sum of
    squares) or "gaussian" (unit-variance Gaussian NLL, with its 1/2 log 2 pi).  reduction:
    "mean_over_batch" (default), "sum" or "none" (per sample).  forward returns {"loss", "recon", "kl"}.
    """

    def __init__(self, recon: str = "bce", beta: float = 1.0, reduction: str = "mean_over_batch"):
        super().__init__()
        if recon not in ("bce", "mse", "gaussian"):
            raise ValueError(f"VAELoss: recon must be 'bce', 'mse' or 'gaussian', got {recon!r}")
        if reduction not in ("mean_over_batch", "sum", "none"):
            raise ValueError(f"VAELoss: reduction must be 'mean_over_batch', 'sum' or 'none', got {reduction!r}")
        beta = check_float("beta", beta, 0.0)
        self.recon, self.beta, self.reduction = recon, beta, reduction

    def forward(self, x: Tensor, x_recon_or_logits: Tensor, mu: Tensor, logvar: Tensor,
                prior_mu: Tensor | None = None) -> dict[str, Tensor]:
        if x.shape != x_recon_or_logits.shape:
            raise ValueError(f"VAELoss: x {tuple(x.shape)} and reconstruction {tuple(x_recon_or_logits.shape)} differ")
        if self.recon == "bce":
            if x.numel() and (x.min() < 0 or x.max() > 1):
                raise ValueError(f"VAELoss(recon='bce'): targets must lie in [0, 1], got range "
                                 f"[{x.min().item()}, {x.max().item()}]")
            rec = F.binary_cross_entropy_with_logits(x_recon_or_logits, x, reduction="none")
        else:
            rec = (x_recon_or_logits - x).square()
            if self.recon == "gaussian":
                rec = 0.5 * rec + 0.5 * math.log(2 * math.pi)
        rec = rec.flatten(1).sum(1)  # [B]
        if prior_mu is None:
            kl = kl_std_normal(mu, logvar, reduction="none")
        else:
            kl = kl_diag_normals(mu, logvar, prior_mu, reduction="none")
        kl = kl.reshape(rec.shape[0], kl[0].numel() if kl.shape[0] else 0).sum(1)  # [B] (latent grids are summed too)
        loss = rec + self.beta * kl
        red = {"mean_over_batch": "mean", "sum": "sum", "none": "none"}[self.reduction]
        return {k: _reduce(v, red, "VAELoss") for k, v in (("loss", loss), ("recon", rec), ("kl", kl))}


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: Tensor | None = None,
               reduction: str = "mean") -> Tensor:
    """Softmax focal loss -alpha_y (1 - p_y)^gamma log p_y (https://kexue.fm/archives/4733): a soft
    version of dropping well-classified samples; gamma = 0 gives cross-entropy.
    logits [N, C], target [N] class ids, alpha optional per-class weights [C]."""
    gamma = check_float("gamma", gamma, 0.0)
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"focal_loss: expected logits [N, C] and target [N], got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")
    C = logits.shape[1]
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"focal_loss: target must hold integer class ids, got dtype {target.dtype}")
    if target.numel() and (target.min() < 0 or target.max() >= C):
        raise ValueError(f"focal_loss: target ids must be in [0, {C}), got range [{int(target.min())}, "
                         f"{int(target.max())}]")
    if alpha is not None and tuple(alpha.shape) != (C,):
        raise ValueError(f"focal_loss: alpha must be per-class weights of shape ({C},), got {tuple(alpha.shape)}")
    logp = logits.float().log_softmax(-1).gather(-1, target[:, None]).squeeze(-1)  # [N]
    loss = -(1 - logp.exp()).pow(gamma) * logp
    if alpha is not None:
        loss = loss * alpha.to(loss.dtype)[target]
    return _reduce(loss, reduction, "focal_loss")


def binary_focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: float = -1.0,
                      reduction: str = "mean") -> Tensor:
    """Sigmoid focal loss (https://kexue.fm/archives/4733), torchvision's convention: alpha < 0 means no
    class weighting, else alpha weights positives and 1 - alpha negatives.  Same shapes for both inputs."""
    gamma, alpha = check_float("gamma", gamma, 0.0), check_float("alpha", alpha, high=1.0)  # alpha < 0: off
    target = target.to(logits.dtype)
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return _reduce(loss, reduction, "binary_focal_loss")


def multilabel_categorical_crossentropy(logits: Tensor, target: Tensor, mask: Tensor | None = None,
                                        reduction: str = "mean") -> Tensor:
    """log(1 + sum_{neg} e^{s_i}) + log(1 + sum_{pos} e^{-s_j}) (https://kexue.fm/archives/7359): softmax
    CE generalised to several gold classes, threshold 0, no class imbalance tuning.  logits, target
    (0/1) [..., C]; mask [..., C] (True = class counts) drops classes, e.g. padding.  Returns [...] or a scalar."""
    if logits.shape != target.shape:
        raise ValueError(f"multilabel_categorical_crossentropy: logits {tuple(logits.shape)} and target "
                         f"{tuple(target.shape)} differ")
    s = logits.float()
    if target.dtype != torch.bool and ((target != 0) & (target != 1)).any():
        raise ValueError("multilabel_categorical_crossentropy: target must hold only 0/1, got other values")
    pos = target.bool()
    keep = torch.ones_like(pos) if mask is None else mask.bool().expand_as(pos)
    neg_inf = torch.tensor(float("-inf"), device=s.device)
    zero = torch.zeros_like(s[..., :1])
    s_neg = torch.where(keep & ~pos, s, neg_inf)  # e^{-inf} = 0: class not in the sum
    s_pos = torch.where(keep & pos, -s, neg_inf)
    loss = torch.cat([s_neg, zero], -1).logsumexp(-1) + torch.cat([s_pos, zero], -1).logsumexp(-1)
    return _reduce(loss, reduction, "multilabel_categorical_crossentropy")


def masked_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor | None = None,
                         label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """Token cross-entropy over real positions only (mask True = real token), the loss of the articles'
    seq2seq / MLM models (https://kexue.fm/archives/6933).  logits [B, n, V], target [B, n], mask [B, n].
    "mean" averages over real tokens of the whole batch; a fully masked batch gives 0, never NaN."""
    if logits.dim() != 3 or target.shape != logits.shape[:2]:
        raise ValueError(f"masked_cross_entropy: expected logits [B, n, V] and target [B, n], got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    if mask is not None and mask.shape != target.shape:
        raise ValueError(f"masked_cross_entropy: mask {tuple(mask.shape)} must match target {tuple(target.shape)}")
    V = logits.shape[-1]
    label_smoothing = check_float("label_smoothing", label_smoothing, 0.0, 1.0)
    if mask is not None and mask.dtype != torch.bool and ((mask != 0) & (mask != 1)).any():
        raise ValueError("masked_cross_entropy: mask must hold only 0/1 (True = real token), got other values")
    m = torch.ones_like(target, dtype=torch.bool) if mask is None else mask.bool()
    safe_target = target.masked_fill(~m, 0)  # padded ids may be anything (e.g. -1)
    if ((safe_target < 0) | (safe_target >= V)).any():
        raise ValueError(f"masked_cross_entropy: target ids at real positions must be in [0, {V}), got range "
                         f"[{safe_target.min().item()}, {safe_target.max().item()}]")
    ce = F.cross_entropy(logits.float().transpose(1, 2), safe_target, reduction="none",
                         label_smoothing=label_smoothing) * m  # [B, n]
    if reduction == "mean":
        return ce.sum() / m.sum().clamp_min(1)
    return _reduce(ce, reduction, "masked_cross_entropy")


def seq2seq_lm_loss(logits: Tensor, input_ids: Tensor, segment_ids: Tensor, attention_mask: Tensor | None = None,
                    reduction: str = "mean") -> Tensor:
    """UniLM seq2seq loss (https://kexue.fm/archives/6933, https://kexue.fm/archives/7630): position t predicts
    token t+1, and only tokens of the target segment (segment id 1, real per `attention_mask`) are targets; the
    source (segment 0) and padding never are.  logits [B, n, V], input_ids / segment_ids / attention_mask [B, n]
    (segments 0...0 then 1...1 per row).  "mean" averages over target tokens of the batch ("none": [B, n-1])."""
    if logits.dim() != 3 or input_ids.shape != logits.shape[:2] or segment_ids.shape != input_ids.shape:
        raise ValueError(f"seq2seq_lm_loss: expected logits [B, n, V] and input_ids, segment_ids [B, n], got "
                         f"{tuple(logits.shape)}, {tuple(input_ids.shape)} and {tuple(segment_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"seq2seq_lm_loss: attention_mask {tuple(attention_mask.shape)} must match input_ids "
                         f"{tuple(input_ids.shape)}")
    if ((segment_ids != 0) & (segment_ids != 1)).any():
        raise ValueError("seq2seq_lm_loss: segment_ids must hold only 0 (source) and 1 (target), got values "
                         f"{sorted(set(segment_ids.unique().tolist()) - {0, 1})[:4]}")
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if (segment_ids[:, 1:] < segment_ids[:, :-1])[real[:, 1:]].any():
        raise ValueError("seq2seq_lm_loss: segment_ids must be 0...0 then 1...1 in every row (a 1 -> 0 "
                         "transition among real tokens breaks the UniLM causal order)")
    target_mask = (segment_ids[:, 1:] == 1) & real[:, 1:]                            # [B, n-1]
    return masked_cross_entropy(logits[:, :-1], input_ids[:, 1:], target_mask, reduction=reduction)
