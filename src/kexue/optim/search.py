"""Optimisation as sampling: one step is the mean of p(d) ~ exp(-[l(theta + d) - l(theta)] / alpha),
estimated by self-normalised importance sampling, so non-differentiable task losses (0-1 error, BLEU)
can be optimised with a differentiable surrogate only placing the proposal (https://kexue.fm/archives/7521;
MGS, Welleck & Cho, arXiv 2006.03158).

    d_i ~ q = mix N(0, sigma^2 I) + (1 - mix) N(-eta grad l~, sigma^2 I),
    w_i ∝ exp(-dl_i / alpha) base(d_i) / q(d_i),   theta <- theta + lr sum_i w_i d_i.

With a flat base the target is only normalisable through the proposal's support (linear losses);
give base_sigma for a Gaussian base N(0, base_sigma^2 I), under which a linear loss gives exactly
gradient descent with lr base_sigma^2 / alpha, and a quadratic one the Newton step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from kexue._validate import check_bool, check_float, check_int

__all__ = ["importance_weights", "effective_sample_size", "ParamSpaceSearch", "sampled_update"]


def importance_weights(delta_losses: Tensor, log_q: Tensor, alpha: float, log_base: Tensor | None = None) -> Tensor:
    """Self-normalised w_i ∝ exp(-dl_i / alpha + log_base_i - log_q_i), computed in float64 log space
    (stable for dl / alpha up to 1e4 and beyond); invariant to adding a constant to all losses."""
    if not alpha > 0:
        raise ValueError(f"importance_weights: alpha must be > 0, got {alpha}")
    if delta_losses.shape != log_q.shape or delta_losses.dim() != 1:
        raise ValueError(f"importance_weights: delta_losses {tuple(delta_losses.shape)} and log_q "
                         f"{tuple(log_q.shape)} must be the same 1-D shape")
    logw = -delta_losses.double() / alpha - log_q.double()
    if log_base is not None:
        logw = logw + log_base.double()
    if not torch.isfinite(logw).any():
        raise ValueError("importance_weights: every log-weight is non-finite (NaN or infinite losses?)")
    return torch.softmax(logw.nan_to_num(nan=-torch.inf), 0)


def effective_sample_size(weights: Tensor) -> Tensor:
    """1 / sum w_i^2 for normalised weights: in [1, m]; near 1 means the estimate rests on one sample."""
    return 1.0 / weights.double().square().sum()


class ParamSpaceSearch(torch.optim.Optimizer):
    """Gradient-free parameter search by importance sampling in parameter space (https://kexue.fm/archives/7521).

    step(task_loss) evaluates task_loss() (no autograd) at num_samples perturbed parameter vectors drawn
    from the mixture proposal above (p.grad, if the caller ran a surrogate backward, is grad l~; without
    grads the proposal is N(0, sigma^2 I)), weights them and moves theta by lr * sum w_i d_i.  The current
    parameters (d = 0) are scored once and, with include_zero_candidate, join the candidates, so as
    alpha -> 0 the loss never increases.  alpha="auto" uses the median |dl| of the candidates.
    sigma is absolute (per param group); mix is the weight of the zero-centred component.  Parameters are
    restored exactly after scoring; use eval-mode (or fixed) dropout and the same batch for every call.
    A candidate whose loss is NaN gets weight 0; a NaN l(theta) (all weights undefined) raises ValueError.
    The step returns {"loss", "ess", "best_delta_loss", "weights", "deltas", "alpha"}.
    """

    def __init__(self, params, num_samples: int = 8, alpha: float | str = 1.0, sigma: float = 1e-3, eta: float = 1.0,
                 mix: float = 0.5, lr: float = 1.0, base_sigma: float | None = None, antithetic: bool = False,
                 include_zero_candidate: bool = True, generator: torch.Generator | None = None):
        check_bool("antithetic", antithetic)
        check_bool("include_zero_candidate", include_zero_candidate)
        check_int("num_samples", num_samples, low=1)
        if antithetic and num_samples % 2:
            raise ValueError(f"ParamSpaceSearch: num_samples must be even when antithetic, got {num_samples}")
        if not (isinstance(alpha, str) and alpha == "auto"):
            if isinstance(alpha, str):
                raise ValueError(f"ParamSpaceSearch: alpha must be > 0 or 'auto', got {alpha!r}")
            alpha = check_float("alpha", alpha, low=0.0, low_open=True)
        sigma = check_float("sigma", sigma, low=0.0, low_open=True)
        eta, mix = check_float("eta", eta, low=0.0), check_float("mix", mix, 0.0, 1.0)
        lr = check_float("lr", lr, low=0.0)
        if base_sigma is not None:
            base_sigma = check_float("base_sigma", base_sigma, low=0.0, low_open=True)
        super().__init__(params, dict(sigma=sigma, eta=eta))
        self.num_samples, self.alpha, self.mix, self.lr = num_samples, alpha, float(mix), float(lr)
        self.base_sigma, self.antithetic = base_sigma, antithetic
        self.include_zero_candidate, self.generator = include_zero_candidate, generator

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _per_element(self, key: str, theta: Tensor) -> Tensor:
        return torch.cat([torch.full((p.numel(),), float(g[key]), dtype=torch.float64)
                          for g in self.param_groups for p in g["params"]]).to(theta.device)

    def _propose(self, theta: Tensor, grad: Tensor | None) -> tuple[Tensor, Tensor]:
        """[m, P] candidate steps (float64) and their log q (up to a constant shared by all candidates)."""
        m, P = self.num_samples, theta.numel()
        sigma = self._per_element("sigma", theta)  # [P]
        half = m // 2 if self.antithetic else m
        eps = torch.randn(half, P, generator=self.generator, dtype=torch.float64)
        eps = torch.cat([eps, -eps]) if self.antithetic else eps
        if grad is None or self.mix == 1.0:
            d = sigma * eps
            return d, -0.5 * (eps.square()).sum(1)
        g_mean = -self._per_element("eta", theta) * grad.double()  # [P] gradient-centred component
        use_g = torch.rand(half, generator=self.generator, dtype=torch.float64) >= self.mix
        use_g = torch.cat([use_g, use_g]) if self.antithetic else use_g
        d = sigma * eps + use_g[:, None].double() * g_mean
        lq0 = -0.5 * (d / sigma).square().sum(1)
        lq1 = -0.5 * ((d - g_mean) / sigma).square().sum(1)
        mix = torch.tensor([self.mix, 1 - self.mix], dtype=torch.float64)
        return d, torch.logsumexp(torch.stack([lq0, lq1], 1) + mix.log(), 1)

    @torch.no_grad()
    def step(self, task_loss: Callable[[], float | Tensor], surrogate_grad: bool = True) -> dict:  # type: ignore[override]
        params = self._params()
        theta = parameters_to_vector(params).detach().clone()  # [P]
        grad = None
        if surrogate_grad and any(p.grad is not None for p in params):
            grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
        d, log_q = self._propose(theta, grad)
        l0 = float(task_loss())
        losses = []
        try:
            for di in d:
                vector_to_parameters((theta.double() + di).to(theta.dtype), params)
                losses.append(float(task_loss()))
        finally:
            vector_to_parameters(theta, params)  # exact restore
        dl = torch.tensor(losses, dtype=torch.float64) - l0
        if self.include_zero_candidate:
            d = torch.cat([d, torch.zeros_like(d[:1])])
            zero_lq = self._propose_log_q_at_zero(theta, grad)
            log_q, dl = torch.cat([log_q, zero_lq]), torch.cat([dl, dl.new_zeros(1)])
        alpha = self.alpha
        if alpha == "auto":
            nz = dl.abs()[dl.abs() > 0]
            alpha = float(nz.median()) if nz.numel() else 1.0
        log_base = None
        if self.base_sigma is not None:
            log_base = -0.5 * (d / self.base_sigma).square().sum(1)
        w = importance_weights(dl, log_q, alpha, log_base)
        step = self.lr * (w[:, None] * d).sum(0)  # [P]
        vector_to_parameters((theta.double() + step).to(theta.dtype), params)
        return {"loss": l0, "ess": float(effective_sample_size(w)), "best_delta_loss": float(dl.min()),
                "weights": w, "deltas": d, "alpha": alpha}

    def _propose_log_q_at_zero(self, theta: Tensor, grad: Tensor | None) -> Tensor:
        if grad is None or self.mix == 1.0:
            return torch.zeros(1, dtype=torch.float64)
        sigma = self._per_element("sigma", theta)
        g_mean = -self._per_element("eta", theta) * grad.double()
        lq1 = -0.5 * (g_mean / sigma).square().sum()
        mix = torch.tensor([self.mix, 1 - self.mix], dtype=torch.float64)
        return torch.logsumexp(torch.stack([torch.zeros((), dtype=torch.float64), lq1]) + mix.log(), 0)[None]


def sampled_update(model: torch.nn.Module, task_loss_fn: Callable[[torch.nn.Module, Any], float | Tensor], batch: Any,
                   surrogate_loss_fn: Callable[[torch.nn.Module, Any], Tensor] | None = None, **kw) -> Tensor:
    """One ParamSpaceSearch step on `model` for one batch, as a function: the surrogate loss (if given) is
    backpropagated to place the proposal, every candidate is scored by task_loss_fn(model, batch) on the same
    batch, the model is updated in place and the applied step vector [P] (float64) is returned.  kw are
    ParamSpaceSearch's arguments.  Candidates run one after another (task losses such as argmax-based
    error rates do not vectorise with torch.func in general)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    if surrogate_loss_fn is not None:
        with torch.enable_grad():
            surrogate_loss_fn(model, batch).backward()
    before = parameters_to_vector(params).detach().double()
    ParamSpaceSearch(params, **kw).step(lambda: task_loss_fn(model, batch), surrogate_grad=surrogate_loss_fn is not None)
    for p in params:
        p.grad = None
    return parameters_to_vector(params).detach().double() - before
