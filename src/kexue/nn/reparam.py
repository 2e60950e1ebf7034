"""Reparameterisation tricks: Gaussian, Gumbel-max, Gumbel-softmax (soft and straight-through), the
score-function estimator and a temperature schedule.  (https://kexue.fm/archives/6705)

Objective L(theta) = E_{z ~ p_theta}[f(z)].  Gaussian: z = mu + sigma * eps.  Categorical: Gumbel-max
y = argmax(o + g), g = -log(-log u), samples softmax(o) exactly; Gumbel-softmax softmax((o + g) / tau)
is its smooth, biased relaxation.  The score-function (REINFORCE) estimator f(z) grad log p(z) needs no
gradient of f but has higher variance.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_float, check_int

__all__ = [
    "normal_rsample", "reparameterize", "GaussianHead", "sample_gumbel", "gumbel_max_sample",
    "gumbel_softmax", "TemperatureSchedule", "score_function_surrogate", "exact_discrete_expectation",
    "categorical_kl_to_uniform",
]

LOGVAR_RANGE = (-30.0, 20.0)  # exp(20) ~ 5e8: wide, but never overflows float32 (or exp(lv/2) in fp16)


def normal_rsample(mu: Tensor, logvar: Tensor | None = None, std: Tensor | None = None,
                   generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """z = mu + std * eps, eps ~ N(0, I) (https://kexue.fm/archives/5253); give exactly one of logvar
    (clamped to [-30, 20] so exp never overflows) or std.  `noise` fixes eps (same shape as mu)."""
    if (logvar is None) == (std is None):
        raise ValueError("normal_rsample: give exactly one of logvar or std, "
                         f"got logvar={'set' if logvar is not None else None}, std={'set' if std is not None else None}")
    if std is None:
        std = torch.exp(0.5 * logvar.clamp(*LOGVAR_RANGE))
    elif not (torch.isfinite(std) & (std >= 0)).all():
        raise ValueError(f"normal_rsample: std must be finite and >= 0, got {std[~(torch.isfinite(std) & (std >= 0))][0].item()}")
    shape = torch.broadcast_shapes(mu.shape, std.shape)
    if noise is None:
        noise = torch.randn(shape, generator=generator, dtype=mu.dtype, device=mu.device)
    elif noise.shape != shape:
        raise ValueError(f"normal_rsample: noise shape {tuple(noise.shape)} != broadcast shape {tuple(shape)}")
    return mu + std * noise


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """VAE sampling step z = mu + exp(logvar / 2) * eps (https://kexue.fm/archives/5253)."""
    return normal_rsample(mu, logvar=logvar, generator=generator)


class GaussianHead(nn.Module):
    """Linear encoder head giving each sample its own posterior N(mu, diag exp(logvar))
    (https://kexue.fm/archives/5253).  [..., in_features] -> (mu, logvar), each [..., latent_size]; logvar is
    clamped to LOGVAR_RANGE = [-30, 20], so exp(logvar) and exp(logvar / 2) never overflow."""

    def __init__(self, in_features: int, latent_size: int):
        super().__init__()
        in_features, latent_size = check_int("in_features", in_features, 1), check_int("latent_size", latent_size, 1)
        self.proj = nn.Linear(in_features, 2 * latent_size)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        if h.dim() < 1 or h.shape[-1] != self.proj.in_features:
            raise ValueError(f"h must be [..., in_features={self.proj.in_features}], got shape {tuple(h.shape)}")
        mu, logvar = self.proj(h).chunk(2, dim=-1)  # [..., latent_size] each
        return mu, logvar.clamp(*LOGVAR_RANGE)


def sample_gumbel(shape, eps: float = 1e-20, generator: torch.Generator | None = None,
                  dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Standard Gumbel noise g = -log(E), E ~ Exp(1) (= -log(-log u)); E clamped at eps so no log(0)."""
    e = torch.empty(shape, dtype=dtype or torch.get_default_dtype(), device=device).exponential_(generator=generator)
    return -e.clamp_min(eps).log()


def _check_dim(logits: Tensor, dim: int, fn: str) -> None:
    if logits.dim() == 0 or not -logits.dim() <= dim < logits.dim():
        raise ValueError(f"{fn}: dim={dim} out of range for logits of shape {tuple(logits.shape)}")


def gumbel_max_sample(logits: Tensor, dim: int = -1, generator: torch.Generator | None = None,
                      noise: Tensor | None = None) -> Tensor:
    """Exact categorical sample argmax(o + g) with P(y = i) = softmax(o)_i (https://kexue.fm/archives/6705)."""
    _check_dim(logits, dim, "gumbel_max_sample")
    if noise is None:
        noise = sample_gumbel(logits.shape, generator=generator, dtype=torch.float32, device=logits.device)
    return (logits.float() + noise).argmax(dim)


def gumbel_softmax(logits: Tensor, tau: float = 1.0, hard: bool = False, dim: int = -1,
                   generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """softmax((o + g) / tau) (https://kexue.fm/archives/6705); hard=True forwards the one-hot of the same
    argmax and backpropagates the soft gradient (straight-through, Jang et al. 2016).  Equals
    F.gumbel_softmax for the same noise; (o + g) / tau is computed in float32 (fp16 overflows at small tau)."""
    if not (isinstance(tau, (int, float)) and tau > 0 and math.isfinite(tau)):
        raise ValueError(f"gumbel_softmax: tau must be a finite number > 0, got {tau!r}")
    hard = check_bool("hard", hard)
    _check_dim(logits, dim, "gumbel_softmax")
    if noise is None:
        noise = -torch.empty_like(logits, dtype=torch.float32).exponential_(generator=generator).log()
    elif noise.shape != logits.shape:
        raise ValueError(f"gumbel_softmax: noise shape {tuple(noise.shape)} != logits shape {tuple(logits.shape)}")
    y_soft = ((logits.float() + noise) / tau).softmax(dim).to(logits.dtype)
    if not hard:
        return y_soft
    index = y_soft.argmax(dim, keepdim=True)
    y_hard = torch.zeros_like(y_soft).scatter_(dim, index, 1.0)
    return y_hard - y_soft.detach() + y_soft  # value one-hot, gradient of y_soft


class TemperatureSchedule:
    """tau(t) = tau_min + (tau_max - tau_min) * decay**t, the author's per-batch annealing
    (https://kexue.fm/archives/6705; his script: 1 -> 0.01 with decay 0.999 per batch).  per="epoch"
    counts t in epochs: step // steps_per_epoch (annealing per epoch is orders of magnitude slower)."""

    def __init__(self, tau_max: float = 1.0, tau_min: float = 0.01, decay: float = 0.999,
                 per: str = "step", steps_per_epoch: int | None = None):
        tau_max, tau_min = check_float("tau_max", tau_max), check_float("tau_min", tau_min)
        decay = check_float("decay", decay)
        check_choice("per", per, ("step", "epoch"))
        if steps_per_epoch is not None:
            steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
        if not 0 < tau_min <= tau_max:
            raise ValueError(f"TemperatureSchedule: need 0 < tau_min <= tau_max, got tau_min={tau_min}, tau_max={tau_max}")
        if not 0 < decay <= 1:
            raise ValueError(f"TemperatureSchedule: decay must be in (0, 1], got {decay}")
        if per not in ("step", "epoch"):
            raise ValueError(f"TemperatureSchedule: per must be 'step' or 'epoch', got {per!r}")
        if per == "epoch" and (steps_per_epoch is None or steps_per_epoch < 1):
            raise ValueError(f"TemperatureSchedule: per='epoch' needs steps_per_epoch >= 1, got {steps_per_epoch}")
        self.tau_max, self.tau_min, self.decay = float(tau_max), float(tau_min), float(decay)
        self.per, self.steps_per_epoch = per, steps_per_epoch

    @classmethod
    def reaching(cls, tau_end: float, at_step: int, tau_max: float = 1.0, tau_min: float | None = None
                 ) -> "TemperatureSchedule":
        """Schedule whose temperature equals tau_end at step `at_step` (tau_min defaults to tau_end / 2)."""
        tau_min = tau_end / 2 if tau_min is None else tau_min
        if not tau_min < tau_end < tau_max or at_step < 1:
            raise ValueError(f"TemperatureSchedule.reaching: need tau_min < tau_end < tau_max and at_step >= 1, "
                             f"got {tau_min}, {tau_end}, {tau_max}, at_step={at_step}")
        decay = ((tau_end - tau_min) / (tau_max - tau_min)) ** (1.0 / at_step)
        return cls(tau_max, tau_min, decay)

    def __call__(self, step: int) -> float:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not step >= 0 or not math.isfinite(step):
            raise ValueError(f"TemperatureSchedule: step must be a finite number >= 0, got {step!r}")
        t = step if self.per == "step" else step // self.steps_per_epoch
        return self.tau_min + (self.tau_max - self.tau_min) * self.decay ** t


def score_function_surrogate(log_prob: Tensor, f_value: Tensor, baseline: str | Tensor = "none",
                             dim: int = 0) -> Tensor:
    """Per-sample surrogate (f - b).detach() * log p(z) whose gradient is the score-function (REINFORCE)
    estimate (https://kexue.fm/archives/6705).  baseline: "none", "mean" or "leave_one_out" over the
    sample dimension `dim`, or a tensor.  "mean" includes each sample in its own baseline, which scales
    the expected gradient by (1 - 1/S); "leave_one_out" is unbiased.  Average the result before backward."""
    if log_prob.shape != f_value.shape:
        raise ValueError(f"score_function_surrogate: log_prob {tuple(log_prob.shape)} and f_value "
                         f"{tuple(f_value.shape)} must have the same shape")
    f = f_value.detach()
    if isinstance(baseline, Tensor):
        b = baseline.detach()
    elif baseline == "none":
        b = torch.zeros_like(f)
    elif baseline == "mean":
        b = f.mean(dim, keepdim=True)
    elif baseline == "leave_one_out":
        n = f.shape[dim]
        if n < 2:
            raise ValueError(f"score_function_surrogate: leave_one_out needs >= 2 samples on dim {dim}, got {n}")
        b = (f.sum(dim, keepdim=True) - f) / (n - 1)
    else:
        raise ValueError(f"score_function_surrogate: baseline must be 'none', 'mean', 'leave_one_out' or a "
                         f"Tensor, got {baseline!r}")
    return (f - b) * log_prob


def exact_discrete_expectation(logits: Tensor, f_table: Tensor) -> Tensor:
    """sum_y softmax(logits)_y f(y) over the last dim: the exact objective for small K (tests, baselines)."""
    if logits.shape[-1] != f_table.shape[-1]:
        raise ValueError(f"exact_discrete_expectation: logits K={logits.shape[-1]} != f_table K={f_table.shape[-1]}")
    return (logits.softmax(-1) * f_table).sum(-1)


def categorical_kl_to_uniform(logits: Tensor, dim: int = -1) -> Tensor:
    """KL(softmax(logits) || uniform) = sum p log p + log K, the discrete-VAE prior term."""
    _check_dim(logits, dim, "categorical_kl_to_uniform")
    logp = logits.log_softmax(dim)
    return (logp.exp() * logp).sum(dim) + math.log(logits.shape[dim])
