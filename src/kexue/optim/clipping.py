"""Hard and soft gradient clipping (https://kexue.fm/archives/7469).

Under (L0, L1)-smoothness, ‖∇²f‖ ≤ L0 + L1‖∇f‖, the step that guarantees the largest decrease is
η* = 1/(L0 + L1‖g‖) = (1/L0)·γ/(‖g‖ + γ) with γ = L0/L1: soft clipping. Hard clipping min(1, γ/‖g‖) is
within a factor 2 of it: ½·hard ≤ soft ≤ hard. The theory is for (S)GD; Adam is nearly scale-invariant per
coordinate, so clipping mostly changes its first moment relative to the second.
"""
from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.optim.base import DerivedOptimizer, delta_independent_of_params

__all__ = ["clip_scale", "clip_grads_", "GradientClipping", "ClipGrad", "smoothness_probe"]


def _check(gamma: float, mode: str) -> None:
    check_float("gamma", gamma, low=0.0, low_open=True)
    check_choice("mode", mode, ("hard", "soft"))


def _check_norm_type(norm_type: Any) -> float:
    """A p-norm order: a number > 0, inf allowed (max norm), NaN refused."""
    if isinstance(norm_type, bool) or not isinstance(norm_type, (int, float)) or math.isnan(norm_type) \
            or norm_type <= 0:
        raise ValueError(f"norm_type must be a number > 0 (inf for the max norm), got {norm_type!r}")
    return float(norm_type)


def clip_scale(grad_norm: Tensor, gamma: float, mode: str = "hard", eps: float = 1e-6) -> Tensor:
    """Clip factor c(‖g‖) (https://kexue.fm/archives/7469): hard min(1, γ/(‖g‖ + eps)), soft γ/(‖g‖ + γ).

    The hard form uses torch's clip_grad_norm_ convention (eps = 1e-6)."""
    _check(gamma, mode)
    grad_norm = torch.as_tensor(grad_norm)
    if mode == "hard":
        return (gamma / (grad_norm + eps)).clamp(max=1.0)
    return gamma / (grad_norm + gamma)


def clip_grads_(parameters: Tensor | Iterable[Tensor], gamma: float, mode: str = "hard", norm_type: float = 2.0,
                foreach: bool | None = None, error_if_nonfinite: bool = False) -> Tensor:
    """Scale the gradients in place by c(‖g‖) of their global norm; returns the pre-clip norm (https://kexue.fm/archives/7469).

    mode="hard" is `torch.nn.utils.clip_grad_norm_(parameters, max_norm=gamma)`; mode="soft" uses
    γ/(‖g‖ + γ), which never lets a finite gradient through unscaled and caps ‖c·g‖ below γ.
    """
    _check(gamma, mode)
    _check_norm_type(norm_type)
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.nn.utils.get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    if mode == "hard":
        torch.nn.utils.clip_grads_with_norm_(params, gamma, total, foreach)
    else:
        torch._foreach_mul_(grads, clip_scale(total, gamma, "soft").to(grads[0].device))
    return total


class GradientClipping(DerivedOptimizer):
    """Clip the gradients (global norm by default) before ANY optimizer's step (https://kexue.fm/archives/7469).

    Update rule, g the gradients of all parameters (of one group with `per_group`, one tensor with
    `per_tensor`), γ = `gamma`:

        hard:  g ← g·min(1, γ/(‖g‖ + 1e-6))       (torch.nn.utils.clip_grad_norm_)
        soft:  g ← g·γ/(‖g‖ + γ)
        then inner.step()

    γ and the mode are wrapper-wide (the norm may span all groups), constructor attributes.
    `per_group=True` clips each param group on its own norm, `per_tensor=True` each tensor (a different,
    LAMB-like algorithm). `last_grad_norm` / `last_scale` log the pre-clip norm and the factor. Place it
    inside `GradientAccumulation` so it clips the accumulated gradient; `GradScaler.step` unscales first.
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"clip_norm": "gamma", "clip_mode": "mode"}

    def __init__(self, optimizer: Optimizer, gamma: float = 1.0, mode: str = "hard", norm_type: float = 2.0,
                 per_group: bool = False, per_tensor: bool = False, error_if_nonfinite: bool = False) -> None:
        _check(gamma, mode)
        norm_type = _check_norm_type(norm_type)
        for name, value in (("per_group", per_group), ("per_tensor", per_tensor),
                            ("error_if_nonfinite", error_if_nonfinite)):
            check_bool(name, value)
        if per_group and per_tensor:
            raise ValueError("per_group and per_tensor are exclusive; got both True")
        self.gamma, self.mode, self.norm_type = float(gamma), mode, norm_type
        self.per_group, self.per_tensor = per_group, per_tensor
        self.error_if_nonfinite = error_if_nonfinite
        self._norm: Tensor | None = None
        self._scale: Tensor | None = None
        super().__init__(optimizer)

    def delta_independent_of_params(self) -> bool:
        return delta_independent_of_params(self.inner)

    def hparams(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "mode": self.mode, "norm_type": self.norm_type, "per_group": self.per_group,
                "per_tensor": self.per_tensor, "error_if_nonfinite": self.error_if_nonfinite}

    def _reset_own_state(self) -> None:
        self.state.clear()
        self._norm = self._scale = None

    @property
    def last_grad_norm(self) -> float:
        """Pre-clip norm of the last step (the largest one with per_group/per_tensor)."""
        return float("nan") if self._norm is None else float(self._norm.max())

    @property
    def last_scale(self) -> float:
        """Clip factor of the last step (the smallest one with per_group/per_tensor)."""
        return float("nan") if self._scale is None else float(self._scale.min())

    def _before(self, closure: Callable | None) -> Any:
        if closure is not None:
            raise ValueError("GradientClipping needs the gradients before the step; got a closure")
        if self.per_tensor:
            chunks = [[p] for g in self.param_groups for p in g["params"] if p.grad is not None]
        elif self.per_group:
            chunks = [[p for p in g["params"] if p.grad is not None] for g in self.param_groups]
        else:
            chunks = [[p for g in self.param_groups for p in g["params"] if p.grad is not None]]
        norms, scales = [], []
        for params in filter(None, chunks):
            grads = [p.grad for p in params]
            norm = torch.nn.utils.get_total_norm(grads, self.norm_type, self.error_if_nonfinite)
            scale = clip_scale(norm, self.gamma, self.mode)
            torch._foreach_mul_(grads, scale.to(grads[0].device))
            norms.append(norm)
            scales.append(scale)
        self._norm = torch.stack(norms) if norms else None
        self._scale = torch.stack(scales) if scales else None
        return None

    def _after(self, ctx: Any, updated: bool) -> None:
        return None


ClipGrad = GradientClipping


def smoothness_probe(loss_fn: Callable[[], Tensor], params: Iterable[Tensor], directions: int = 4,
                     radius: float = 1e-3, generator: torch.Generator | None = None) -> tuple[float, float]:
    """Local smoothness max_Δ ‖∇f(θ+Δ) − ∇f(θ)‖/‖Δ‖ over random ‖Δ‖ = radius, and ‖∇f(θ)‖ (https://kexue.fm/archives/7469).

    `loss_fn()` evaluates the loss at the current values of `params`; they are restored bit-exactly.
    """
    params = [p for p in params]
    check_int("directions", directions, low=1)
    check_float("radius", radius, low=0.0, low_open=True)

    def grads() -> list[Tensor]:
        with torch.enable_grad():
            return [g.detach() for g in torch.autograd.grad(loss_fn(), params)]

    g0 = grads()
    g0_norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in g0]))
    best = 0.0
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for _ in range(directions):
            d = [torch.randn(p.shape, dtype=p.dtype, device=p.device, generator=generator) for p in params]
            n = torch.linalg.vector_norm(torch.cat([x.flatten() for x in d]))
            d = [x * (radius / n) for x in d]
            torch._foreach_add_(params, d)
            g1 = grads()
            torch._foreach_copy_(params, saved)
            diff = torch.linalg.vector_norm(torch.cat([(a - b).flatten() for a, b in zip(g1, g0)]))
            best = max(best, float(diff) / radius)
    return best, float(g0_norm)
