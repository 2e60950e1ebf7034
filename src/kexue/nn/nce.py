"""Noise-contrastive estimation with a learnable log Z, and word2vec negative sampling
(https://kexue.fm/archives/5617).

Density estimation becomes classification of data (label 1) against k noise samples per datum (label 0)
with logit s(x) = G(x) - gamma - log(k U(x)); at the optimum e^{G - gamma} is the data density and gamma
= log Z.  Without the log(k U) correction (the author's sigma(G - gamma), and negative sampling) the model
learns the density *ratio* p/U instead: for skip-gram that is PMI - log k (`kexue.corpus.pmi_matrix`).
"""
from __future__ import annotations

import math
from typing import Callable, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_choice, check_float, check_int
from kexue.nn._reduce import mean_or_zero

__all__ = [
    "nce_loss", "NCELoss", "NoiseDistribution", "UnigramSampler", "GaussianNoiseDistribution",
    "negative_sampling_loss", "SkipGramNS",
]


def nce_loss(score_data: Tensor, score_noise: Tensor, log_noise_data: Tensor | None = None,
             log_noise_noise: Tensor | None = None, log_z: Tensor | float = 0.0, k: int | None = None,
             correct_noise: bool = True, reduction: str = "mean") -> Tensor:
    """-log sigma(s(x_data)) - sum_{k noise} log sigma(-s(x_noise)), s = G - log_z [- log(k U)]
    (https://kexue.fm/archives/5617).  score_data [N]; score_noise [N, k] (or [N*k], reshaped); the
    log_noise_* tensors (log U) share those shapes and are required when correct_noise.  log_z: scalar or
    [N] (a per-context head).  reduction "mean" averages over the N data samples (0 for N = 0).  The noise
    must cover the data: a log U of -inf or NaN is an error (that point would be classified trivially)."""
    if score_data.dim() != 1:
        raise ValueError(f"nce_loss: score_data must be [N], got {tuple(score_data.shape)}")
    N = score_data.shape[0]
    if score_noise.dim() == 1:
        if k is None or score_noise.numel() != N * k:
            raise ValueError(f"nce_loss: flat score_noise of {score_noise.numel()} values needs k with N*k = "
                             f"{score_noise.numel()} (N={N}), got k={k}")
        score_noise = score_noise.reshape(N, k)
        log_noise_noise = None if log_noise_noise is None else log_noise_noise.reshape(N, k)
    if score_noise.dim() != 2 or score_noise.shape[0] != N:
        raise ValueError(f"nce_loss: score_noise must be [N={N}, k], got {tuple(score_noise.shape)}")
    k = score_noise.shape[1] if k is None else k
    if k != score_noise.shape[1] or k < 1:
        raise ValueError(f"nce_loss: k={k} does not match score_noise's {score_noise.shape[1]} columns")
    if not isinstance(log_z, Tensor):
        log_z = check_float("log_z", log_z)
    log_z = torch.as_tensor(log_z, dtype=score_data.dtype, device=score_data.device)
    lz_noise = log_z[:, None] if log_z.dim() == 1 else log_z
    s_data, s_noise = score_data - log_z, score_noise - lz_noise  # [N], [N, k]
    if correct_noise:
        if log_noise_data is None or log_noise_noise is None:
            raise ValueError("nce_loss: correct_noise=True needs log_noise_data and log_noise_noise (log U)")
        for name, lu in (("log_noise_data", log_noise_data), ("log_noise_noise", log_noise_noise)):
            if not torch.isfinite(lu).all():
                raise ValueError(f"nce_loss: {name} (log U) must be finite, got {lu[~torch.isfinite(lu)][0].item()}: "
                                 "the noise gives probability 0 to a sample, NCE needs noise that covers the data "
                                 "(smooth the noise counts)")
        s_data = s_data - (log_noise_data.to(s_data.dtype) + math.log(k))
        s_noise = s_noise - (log_noise_noise.to(s_noise.dtype) + math.log(k))
    loss = -F.logsigmoid(s_data) - F.logsigmoid(-s_noise).sum(1)  # [N]
    if reduction == "mean":
        return mean_or_zero(loss)
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"nce_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


@runtime_checkable
class NoiseDistribution(Protocol):
    """What NCE needs from its noise: samples and their log-density (log-probability)."""

    def sample(self, shape, generator: torch.Generator | None = None) -> Tensor: ...

    def log_prob(self, x: Tensor) -> Tensor: ...


class GaussianNoiseDistribution:
    """NCE noise distribution N(mean, std^2 I) over [..., event_size] (None: scalar samples) for continuous toys.
    (Not the input-noise layer `kexue.regularizers.GaussianNoise`.)"""

    def __init__(self, std: float = 1.0, mean: float = 0.0, event_size: int | None = None):
        std, mean = check_float("std", std, 0.0, low_open=True), check_float("mean", mean)
        event_size = None if event_size is None else check_int("event_size", event_size, 1)
        self.std, self.mean, self.event_size = std, mean, event_size

    def sample(self, shape, generator: torch.Generator | None = None) -> Tensor:
        shape = tuple(shape) + (() if self.event_size is None else (self.event_size,))
        return self.mean + self.std * torch.randn(shape, generator=generator, dtype=torch.float64).float()

    def log_prob(self, x: Tensor) -> Tensor:
        lp = -0.5 * ((x.double() - self.mean) / self.std) ** 2 - math.log(self.std) - 0.5 * math.log(2 * math.pi)
        return (lp if self.event_size is None else lp.sum(-1)).to(x.dtype if x.is_floating_point() else torch.float32)


class UnigramSampler:
    """Noise over token ids with P(i) proportional to counts_i ** power (word2vec: 0.75), drawn by
    torch.multinomial; log_prob kept in float64 for rare words."""

    def __init__(self, counts: Tensor, power: float = 0.75, remove_accidental_hits: bool = False):
        counts = torch.as_tensor(counts, dtype=torch.float64)
        if counts.dim() != 1 or not torch.isfinite(counts).all() or (counts < 0).any() or counts.sum() <= 0:
            raise ValueError(f"UnigramSampler: counts must be a 1-D finite non-negative tensor with a positive sum, "
                             f"got shape {tuple(counts.shape)}")
        power = check_float("power", power, 0.0)
        p = counts**power
        self.probs = p / p.sum()  # [V] float64
        self.log_probs = self.probs.log()
        self.remove_accidental_hits = remove_accidental_hits

    def sample(self, shape, generator: torch.Generator | None = None) -> Tensor:
        shape = tuple(shape)
        n = math.prod(shape)
        if n == 0:  # torch.multinomial refuses to draw no sample
            return torch.zeros(shape, dtype=torch.long)
        return torch.multinomial(self.probs, n, replacement=True, generator=generator).reshape(shape)

    def log_prob(self, x: Tensor) -> Tensor:
        return self.log_probs.to(x.device)[x]

    def accidental_hits(self, positive: Tensor, negatives: Tensor) -> Tensor:
        """[N] positive ids, [N, k] negatives -> [N, k] bool, True where a negative equals its positive."""
        return negatives == positive[:, None]


class NCELoss(nn.Module):
    """NCE with a learnable log Z (https://kexue.fm/archives/5617).  forward(score_fn, data) draws
    k noise samples per datum, scores both with score_fn (unnormalised log-density G) and returns
    nce_loss.  init_log_z: 0, or log |V| for softmax-style models; learn_log_z=False fixes it
    (Mnih & Teh's self-normalisation).  correct_noise=False learns the density ratio to the noise."""

    def __init__(self, noise: NoiseDistribution, k: int = 5, learn_log_z: bool = True, init_log_z: float = 0.0,
                 correct_noise: bool = True):
        super().__init__()
        if not isinstance(noise, NoiseDistribution):
            raise TypeError(f"NCELoss: noise must have sample() and log_prob(), got {type(noise).__name__}")
        k = check_int("k", k, 1)
        self.noise, self.k, self.correct_noise = noise, k, correct_noise
        log_z = torch.tensor(check_float("init_log_z", init_log_z))
        if learn_log_z:
            self.log_z = nn.Parameter(log_z)
        else:
            self.register_buffer("log_z", log_z)

    def forward(self, score_fn: Callable[[Tensor], Tensor], data: Tensor,
                generator: torch.Generator | None = None) -> Tensor:
        N = data.shape[0]
        noise = self.noise.sample((N, self.k), generator=generator).to(data.device)  # [N, k, ...]
        s_data = score_fn(data)  # [N]
        s_noise = score_fn(noise.reshape(N * self.k, *noise.shape[2:])).reshape(N, self.k)
        lu_data = lu_noise = None
        if self.correct_noise:
            lu_data, lu_noise = self.noise.log_prob(data), self.noise.log_prob(noise)
            if not torch.isfinite(lu_data).all():
                raise ValueError("NCELoss: the noise distribution gives probability 0 to a data sample "
                                 "(log_noise_data = -inf); NCE needs noise that covers the data (smooth the counts)")
        return nce_loss(s_data, s_noise, lu_data, lu_noise, self.log_z, self.k, self.correct_noise)


def negative_sampling_loss(center: Tensor, pos_ctx: Tensor, neg_ctx: Tensor, neg_mask: Tensor | None = None,
                           reduction: str = "mean") -> Tensor:
    """Skip-gram negative sampling -log sigma(u.v+) - sum_k log sigma(-u.v-) (https://kexue.fm/archives/5617):
    NCE with gamma = 0 and no noise correction, so u.v fits PMI - log k.  center, pos_ctx [N, D];
    neg_ctx [N, k, D]; neg_mask [N, k] (False drops a negative, e.g. an accidental hit)."""
    if center.shape != pos_ctx.shape or neg_ctx.dim() != 3 or neg_ctx.shape[::2] != center.shape:
        raise ValueError(f"negative_sampling_loss: expected center, pos_ctx [N, D] and neg_ctx [N, k, D], got "
                         f"{tuple(center.shape)}, {tuple(pos_ctx.shape)}, {tuple(neg_ctx.shape)}")
    pos = (center * pos_ctx).sum(-1)  # [N]
    neg = torch.einsum("nd,nkd->nk", center, neg_ctx)  # [N, k]
    neg_term = F.logsigmoid(-neg)
    if neg_mask is not None:
        neg_term = neg_term * neg_mask
    loss = -F.logsigmoid(pos) - neg_term.sum(1)
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    return {"mean": lambda: mean_or_zero(loss), "sum": loss.sum, "none": lambda: loss}[reduction]()


class SkipGramNS(nn.Module):
    """word2vec skip-gram with negative sampling: input/output embeddings + negative_sampling_loss.
    forward(center_ids [N], context_ids [N]) draws k negatives per pair from the sampler."""

    def __init__(self, vocab_size: int, embedding_size: int, k: int = 5, sampler: UnigramSampler | None = None):
        super().__init__()
        vocab_size, k = check_int("vocab_size", vocab_size, 1), check_int("k", k, 1)
        embedding_size = check_int("embedding_size", embedding_size, 1)
        self.k = k
        self.sampler = sampler or UnigramSampler(torch.ones(vocab_size), power=1.0)
        self.inp = nn.Embedding(vocab_size, embedding_size)
        self.out = nn.Embedding(vocab_size, embedding_size)
        nn.init.uniform_(self.inp.weight, -0.5 / embedding_size, 0.5 / embedding_size)
        nn.init.zeros_(self.out.weight)

    def forward(self, center_ids: Tensor, context_ids: Tensor, generator: torch.Generator | None = None) -> Tensor:
        neg = self.sampler.sample((center_ids.shape[0], self.k), generator=generator).to(center_ids.device)
        mask = ~self.sampler.accidental_hits(context_ids, neg) if self.sampler.remove_accidental_hits else None
        return negative_sampling_loss(self.inp(center_ids), self.out(context_ids), self.out(neg), mask)

    def similarity(self) -> Tensor:
        """[V, V] learned u_i . v_j, the quantity that fits PMI(i, j) - log k."""
        return self.inp.weight @ self.out.weight.T
