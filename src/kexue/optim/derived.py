"""Three derivations of https://kexue.fm/archives/7094 as wrappers of ANY torch optimizer:
decoupled weight decay, layer adaptation (LAMB trust ratio) and the piecewise-linear learning rate.

Composition: the wrapper written outermost rewrites last, so `LayerAdaptation(WeightDecay(Adam(...)))` is
LAMB (trust ratio of Adam's update *plus* the decay), while `WeightDecay(LayerAdaptation(Adam(...)))` adds
the decay after the trust ratio (not LAMB).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, ClassVar

import torch
from torch.optim import Optimizer

from kexue._validate import check_choice, check_float, check_int
from kexue.ops import piecewise_linear
from kexue.optim.base import DerivedOptimizer, delta_independent_of_params, will_update

__all__ = ["WeightDecay", "LayerAdaptation", "PiecewiseLinearLR", "piecewise_linear", "piecewise_linear_lambda"]


def _check_nonneg(name: str, value: Any) -> float:
    return check_float(name, value, low=0.0)


class WeightDecay(DerivedOptimizer):
    """Decoupled weight decay Δ' = Δ − η_t·λ·θ_t (AdamW; https://kexue.fm/archives/7094).

    η_t is the group's current lr (after any scheduler), λ the group key `weight_decay_rate` (set it to 0 in
    groups that must not decay, see `param_groups_by_name`). When the inner update does not read θ (Adam, SGD,
    ... without their own weight_decay) θ is scaled by (1 − ηλ) before the inner step exactly like
    `torch.optim.AdamW`; otherwise θ_t is snapshotted and the decay added after the inner step. A step with
    η_t·λ outside [0, 1] (the factor 1 − ηλ would flip or blow up the weights) is refused before any change.
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"weight_decay_rate": "weight_decay_rate"}

    def __init__(self, optimizer: Optimizer, weight_decay_rate: float = 0.01) -> None:
        super().__init__(optimizer, weight_decay_rate=_check_nonneg("weight_decay_rate", weight_decay_rate))

    def _before(self, closure: Callable | None) -> Any:
        pre = closure is None and delta_independent_of_params(self.inner)
        if pre and not will_update(self.inner):
            return None
        rates = [float(g["weight_decay_rate"]) * float(g["lr"]) for g in self.param_groups]
        for i, rate in enumerate(rates):                                # checked before any weight moves
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"param_groups[{i}]: weight_decay_rate * lr = {rate!r} must be in [0, 1] (the "
                                 f"weights are scaled by 1 - weight_decay_rate * lr each update)")
        ctx = []
        for group, rate in zip(self.param_groups, rates):
            params = self._step_params(group, closure) if rate != 0 else []
            if not params:
                continue
            if pre:
                torch._foreach_mul_(params, 1.0 - rate)
            else:
                ctx.append((params, self._snapshot(params), rate))
        return ctx

    def _after(self, ctx: Any, updated: bool) -> None:
        if not ctx or not updated:
            return
        for params, snaps, rate in ctx:
            keep = [i for i, p in enumerate(params) if p.grad is not None]
            if len(keep) != len(params):
                params, snaps = [params[i] for i in keep], [snaps[i] for i in keep]
            if params:
                torch._foreach_add_(params, snaps, alpha=-rate)


class LayerAdaptation(DerivedOptimizer):
    """Trust ratio per tensor: Δ' = η_t·‖θ_t‖·Δ/‖Δ‖ (LAMB, arXiv 1904.00962; https://kexue.fm/archives/7094).

    r = ‖θ_t‖ / (‖Δ‖/η_t + eps), clamped to `max_ratio`; r = 1 when ‖θ_t‖ = 0 or Δ = 0. With η_t = 0 the step
    is a no-op. Groups with key `layer_adaptation=False` (biases, norms) keep the inner update.
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"layer_adaptation_eps": "eps", "max_trust_ratio": "max_ratio"}

    def __init__(self, optimizer: Optimizer, eps: float = 0.0, max_ratio: float | None = None) -> None:
        self.eps = _check_nonneg("eps", eps)
        if max_ratio is not None:
            max_ratio = check_float("max_ratio", max_ratio, low=0.0, low_open=True)
        self.max_ratio = max_ratio
        super().__init__(optimizer, layer_adaptation=True)

    def hparams(self) -> dict[str, Any]:
        return {"eps": self.eps, "max_ratio": self.max_ratio}

    def _before(self, closure: Callable | None) -> Any:
        ctx = []
        for group in self.param_groups:
            params = self._step_params(group, closure) if group["layer_adaptation"] else []
            if params:
                norms = torch._foreach_norm(params)                      # ‖θ_t‖ per tensor
                ctx.append((group, params, norms, self._snapshot(params)))
        return ctx

    def _after(self, ctx: Any, updated: bool) -> None:
        if not ctx or not updated:
            return
        for group, params, norms, snaps in ctx:
            keep = [i for i, p in enumerate(params) if p.grad is not None]
            params, norms, snaps = ([x[i] for i in keep] for x in (params, norms, snaps))
            if not params:
                continue
            lr = group["lr"]
            if float(lr) == 0.0:                                          # no-op step, never divide by 0
                torch._foreach_copy_(params, snaps)
                continue
            torch._foreach_sub_(snaps, params)                            # snaps = θ_t − θ_new = −Δ
            w = torch.stack(norms)                                        # [n] ‖θ_t‖
            u = torch.stack(torch._foreach_norm(snaps)) / lr              # [n] ‖Δ‖/η
            ratio = torch.where((w > 0) & (u > 0), w / (u + self.eps), torch.ones_like(w))
            if self.max_ratio is not None:
                ratio = ratio.clamp(max=self.max_ratio)
            # θ_t + rΔ = θ_new + (1 − r)(−Δ)
            torch._foreach_mul_(snaps, (1.0 - ratio).tolist())
            torch._foreach_add_(params, snaps)


def piecewise_linear_lambda(schedule: dict[int, float], from_zero: bool = True) -> Callable[[int], float]:
    """`LambdaLR`-ready multiplier t -> piecewise_linear(t, schedule) (https://kexue.fm/archives/7094)."""
    _check_schedule(schedule)
    return partial(piecewise_linear, schedule=dict(schedule), from_zero=from_zero)


def _check_schedule(schedule: Any) -> dict[int, float]:
    if not isinstance(schedule, dict) or not schedule:
        raise ValueError(f"lr_schedule must be a non-empty dict {{step: multiplier}}, got {schedule!r}")
    for k, v in schedule.items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"lr_schedule keys must be ints >= 0, got key {k!r}")
        _check_nonneg(f"lr_schedule[{k}]", v)
    return {int(k): float(v) for k, v in sorted(schedule.items())}


class PiecewiseLinearLR(DerivedOptimizer):
    """lr multiplier m(t) piecewise linear in the update count t (https://kexue.fm/archives/7094).

    {1000: 1, 2000: 0.1}: warm-up 0 -> 1 over 1000 updates, decay to 0.1 by 2000, constant after. t counts
    real updates from 0. mode="lr" scales every group's lr by m(t) during the inner step only (so it stacks
    with torch schedulers, as the tf.keras variant); mode="delta" scales the inner update Δ (keras variant).
    They agree when the inner update is linear in lr (SGD, Adam, and WeightDecay/LayerAdaptation around them).
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"lr_schedule": "lr_schedule", "lr_schedule_mode": "mode"}

    def __init__(self, optimizer: Optimizer, lr_schedule: dict[int, float] | None = None, mode: str = "lr") -> None:
        check_choice("mode", mode, ("lr", "delta"))
        self.lr_schedule = _check_schedule({0: 1.0} if lr_schedule is None else lr_schedule)
        self.mode = mode
        self.update_step = 0
        super().__init__(optimizer)

    def delta_independent_of_params(self) -> bool:
        return delta_independent_of_params(self.inner)

    @property
    def multiplier(self) -> float:
        """m(t) for the next update."""
        return float(piecewise_linear(self.update_step, self.lr_schedule))

    def _before(self, closure: Callable | None) -> Any:
        m = self.multiplier
        if self.mode == "lr":
            saved = [g["lr"] for g in self.param_groups]
            for g in self.param_groups:
                g["lr"] = g["lr"] * m
            return saved
        if m == 1.0:
            return None
        return [(params, self._snapshot(params), m) for g in self.param_groups
                if (params := self._step_params(g, closure))]

    def _after(self, ctx: Any, updated: bool) -> None:
        if self.mode == "lr":
            for g, lr in zip(self.param_groups, ctx):
                g["lr"] = lr
        elif ctx and updated:
            for params, snaps, m in ctx:
                keep = [i for i, p in enumerate(params) if p.grad is not None]
                params, snaps = [params[i] for i in keep], [snaps[i] for i in keep]
                if params:
                    torch._foreach_lerp_(params, snaps, 1.0 - m)          # θ_new + (1−m)(θ_t − θ_new)
        if updated:
            self.update_step += 1

    def hparams(self) -> dict[str, Any]:
        return {"lr_schedule": dict(self.lr_schedule), "mode": self.mode}

    def _reset_own_state(self) -> None:
        """A restart keeps the schedule's position (like a torch scheduler's `last_epoch`)."""
        self.state.clear()

    _extra_keys = ("update_step",)

    def _extra_state(self) -> dict[str, Any]:
        return {"update_step": self.update_step}

    def _check_extra_state(self, extra: dict[str, Any], where: str) -> None:
        check_int(f"{where}['update_step']", extra["update_step"], low=0)

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.update_step = int(extra["update_step"])
