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


def _refuse_name_patterns(keyword: str, patterns: Any, key: str, value: Any) -> None:
    """A wrapper of an optimizer *instance* cannot regroup its parameters by name: point to the kexue way."""
    if patterns is None:
        return
    raise TypeError(
        f"{keyword}={patterns!r} (the bert4keras keyword) needs parameter names, which an optimizer instance "
        f"does not have. The kexue way: build the groups first, groups = kexue.optim.param_groups_by_name(model, "
        f"{{r'bias|LayerNorm': {{{key!r}: {value!r}}}}}), then wrap torch.optim.Adam(groups, lr=...); or use "
        f"extend_with(torch.optim.Adam, ...)(model.named_parameters(), lr=..., {keyword}=[...]), which accepts it")


class WeightDecay(DerivedOptimizer):
    """Decoupled weight decay (AdamW, arXiv 1711.05101; https://kexue.fm/archives/7094).

    Update rule, with Δ the inner optimizer's update, η_t the group's current lr (after any scheduler), λ the
    group key `weight_decay_rate` (a per-group hyperparameter; the constructor gives the default):

        θ_{t+1} = θ_t + Δ − η_t·λ·θ_t

    Set λ = 0 in groups that must not decay (`param_groups_by_name`; bert4keras's `exclude_from_weight_decay`
    is accepted by `extend_with` classes with named parameters). When the inner update does not read θ (Adam, SGD,
    ... without their own weight_decay) θ is scaled by (1 − ηλ) before the inner step exactly like
    `torch.optim.AdamW`; otherwise θ_t is snapshotted and the decay added after the inner step. A step with
    η_t·λ outside [0, 1] (the factor 1 − ηλ would flip or blow up the weights) is refused before any change.
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"weight_decay_rate": "weight_decay_rate"}

    def __init__(self, optimizer: Optimizer, weight_decay_rate: float = 0.01,
                 exclude_from_weight_decay: Any = None) -> None:
        _refuse_name_patterns("exclude_from_weight_decay", exclude_from_weight_decay, "weight_decay_rate", 0.0)
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
    """Trust ratio per tensor (LAMB, arXiv 1904.00962; https://kexue.fm/archives/7094).

    Update rule, for each tensor θ of a group with `layer_adaptation=True`, Δ the inner update, η_t its lr:

        r = min(‖θ_t‖ / (‖Δ‖/η_t + ε), r_max)      (r = 1 when ‖θ_t‖ = 0 or Δ = 0)
        θ_{t+1} = θ_t + r·Δ                          (so ‖θ_{t+1} − θ_t‖ ≈ η_t·‖θ_t‖)

    ε = group key `layer_adaptation_eps` (constructor `eps`), r_max = group key `max_trust_ratio` (constructor
    `max_ratio`, None: no cap): per-group hyperparameters in `defaults` and every group. With η_t = 0 the step
    is a no-op. Groups with `layer_adaptation=False` (biases, norms) keep the inner update.
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"layer_adaptation_eps": "eps", "max_trust_ratio": "max_ratio"}

    def __init__(self, optimizer: Optimizer, eps: float = 0.0, max_ratio: float | None = None,
                 exclude_from_layer_adaptation: Any = None) -> None:
        _refuse_name_patterns("exclude_from_layer_adaptation", exclude_from_layer_adaptation, "layer_adaptation",
                              False)
        eps = _check_nonneg("eps", eps)
        if max_ratio is not None:
            max_ratio = check_float("max_ratio", max_ratio, low=0.0, low_open=True)
        super().__init__(optimizer, layer_adaptation=True, layer_adaptation_eps=eps, max_trust_ratio=max_ratio)

    @property
    def eps(self) -> float:
        return self.defaults["layer_adaptation_eps"]

    @property
    def max_ratio(self) -> float | None:
        return self.defaults["max_trust_ratio"]

    def _check_group_value(self, key: str, value: Any, at: str, default: Any) -> None:
        if key == "max_trust_ratio":
            if value is not None:
                check_float(at, value, low=0.0, low_open=True)
        else:
            super()._check_group_value(key, value, at, default)

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
            ratio = torch.where((w > 0) & (u > 0), w / (u + group["layer_adaptation_eps"]), torch.ones_like(w))
            if group["max_trust_ratio"] is not None:
                ratio = ratio.clamp(max=group["max_trust_ratio"])
            # θ_t + rΔ = θ_new + (1 − r)(−Δ)
            torch._foreach_mul_(snaps, (1.0 - ratio).tolist())
            torch._foreach_add_(params, snaps)


def piecewise_linear_lambda(schedule: dict[int, float], from_zero: bool = True) -> Callable[[int], float]:
    """`LambdaLR`-ready multiplier t -> piecewise_linear(t, schedule) (https://kexue.fm/archives/7094)."""
    _check_schedule(schedule)
    return partial(piecewise_linear, schedule=dict(schedule), from_zero=from_zero)


def _check_schedule(schedule: Any, name: str = "lr_schedule") -> dict[int, float]:
    if not isinstance(schedule, dict) or not schedule:
        raise ValueError(f"{name} must be a non-empty dict {{step: multiplier}}, got {schedule!r}")
    for k, v in schedule.items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"{name} keys must be ints >= 0, got key {k!r}")
        _check_nonneg(f"{name}[{k}]", v)
    return {int(k): float(v) for k, v in sorted(schedule.items())}


class PiecewiseLinearLR(DerivedOptimizer):
    """lr multiplier m(t) piecewise linear in the update count t (https://kexue.fm/archives/7094).

    Update rule, with Δ(η) the inner update at learning rate η and t the number of real updates so far:

        mode "lr":     θ_{t+1} = θ_t + Δ(m(t)·η)          (group lr scaled during the inner step only)
        mode "delta":  θ_{t+1} = θ_t + m(t)·Δ(η)          (the keras variant: the update is scaled)

    {1000: 1, 2000: 0.1}: warm-up 0 -> 1 over 1000 updates, decay to 0.1 by 2000, constant after. The lr stays
    the group's own (so it stacks with torch schedulers: η is theirs). The modes agree when the inner update
    is linear in lr (SGD, Adam, and WeightDecay/LayerAdaptation around them). The schedule and the mode are
    per-group hyperparameters (group keys `lr_schedule`, `lr_schedule_mode`; the constructor gives the
    defaults), so one group may warm up differently; t is one counter for the whole optimizer.
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"lr_schedule": "lr_schedule", "lr_schedule_mode": "mode"}

    def __init__(self, optimizer: Optimizer, lr_schedule: dict[int, float] | None = None, mode: str = "lr") -> None:
        check_choice("mode", mode, ("lr", "delta"))
        schedule = _check_schedule({0: 1.0} if lr_schedule is None else lr_schedule)
        self.update_step = 0
        super().__init__(optimizer, lr_schedule=schedule, lr_schedule_mode=mode)

    @property
    def lr_schedule(self) -> dict[int, float]:
        """The default schedule (groups may hold their own under `lr_schedule`)."""
        return self.defaults["lr_schedule"]

    @property
    def mode(self) -> str:
        return self.defaults["lr_schedule_mode"]

    def _check_group_value(self, key: str, value: Any, at: str, default: Any) -> None:
        if key == "lr_schedule":
            _check_schedule(value, at)
        else:
            check_choice(at, value, ("lr", "delta"))

    def delta_independent_of_params(self) -> bool:
        return delta_independent_of_params(self.inner)

    def multiplier_of(self, group: dict[str, Any]) -> float:
        """m(t) of `group` for the next update."""
        return float(piecewise_linear(self.update_step, group["lr_schedule"]))

    @property
    def multiplier(self) -> float:
        """m(t) of the default schedule for the next update."""
        return float(piecewise_linear(self.update_step, self.lr_schedule))

    def _before(self, closure: Callable | None) -> Any:
        saved, scaled = [], []
        for g in self.param_groups:
            m = self.multiplier_of(g)
            if g["lr_schedule_mode"] == "lr":
                saved.append((g, g["lr"]))
                g["lr"] = g["lr"] * m
            elif m != 1.0 and (params := self._step_params(g, closure)):
                scaled.append((params, self._snapshot(params), m))
        return saved, scaled

    def _after(self, ctx: Any, updated: bool) -> None:
        saved, scaled = ctx
        for g, lr in saved:
            g["lr"] = lr
        if updated:
            for params, snaps, m in scaled:
                keep = [i for i, p in enumerate(params) if p.grad is not None]
                params, snaps = [params[i] for i in keep], [snaps[i] for i in keep]
                if params:
                    torch._foreach_lerp_(params, snaps, 1.0 - m)          # θ_new + (1−m)(θ_t − θ_new)
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
