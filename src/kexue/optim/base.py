"""`DerivedOptimizer`: the common base of every wrapper in `kexue.optim` (https://kexue.fm/archives/7094).

A derivation rewrites the update Δ = θ_new − θ_t that ANY inner `torch.optim.Optimizer` produces, without
knowing how it was computed: snapshot θ_t, call `inner.step()`, rewrite, write back. The wrapper shares the
inner optimizer's `param_groups` (the very same list), so torch LR schedulers, `GradScaler` and
`clip_grad_norm_` work on it unchanged.

Protocol between nested wrappers (what makes them compose in any order):
- `last_step_updated`: False when the last `step()` performed no real update (gradient accumulation);
  outer wrappers then skip their rewrite and do not advance their counters.
- `will_update`: whether the next `step()` will perform a real update.
- `delta_independent_of_params()`: True when Δ does not depend on θ_t, so a decoupled weight decay can be
  applied *before* the inner step without any snapshot (this is exactly what `torch.optim.AdamW` does).
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["DerivedOptimizer", "base_optimizer", "delta_independent_of_params", "last_step_updated",
           "will_update"]

# torch optimizers whose update does not read θ when their groups have weight_decay == 0
_THETA_FREE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
               torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta)


def last_step_updated(optimizer: Optimizer) -> bool:
    """Whether `optimizer`'s last step() really updated (always True for plain torch optimizers)."""
    return bool(getattr(optimizer, "last_step_updated", True))


def will_update(optimizer: Optimizer) -> bool:
    """Whether `optimizer`'s next step() will really update (always True for plain torch optimizers)."""
    return bool(getattr(optimizer, "will_update", True))


def delta_independent_of_params(optimizer: Optimizer) -> bool:
    """True when the update Δ of `optimizer` does not depend on the current parameter values."""
    if isinstance(optimizer, DerivedOptimizer):
        return optimizer.delta_independent_of_params()
    if type(optimizer) not in _THETA_FREE:
        return False
    return all(float(g.get("weight_decay", 0.0)) == 0.0 for g in optimizer.param_groups)


def base_optimizer(optimizer: Optimizer) -> Optimizer:
    """The innermost (non-derived) optimizer of a chain of wrappers (https://kexue.fm/archives/7094)."""
    while isinstance(optimizer, DerivedOptimizer):
        optimizer = optimizer.inner
    return optimizer


class DerivedOptimizer(Optimizer):
    """Wraps an *instance* of any `torch.optim.Optimizer` and rewrites its updates (https://kexue.fm/archives/7094).

    Subclasses override `_before(closure) -> ctx` and `_after(ctx, updated)` (fast foreach paths), or just
    `transform_delta(p, delta, group, state) -> new_delta` (generic snapshot path). Per-parameter extra state
    lives in `self.state[p]` (the inner optimizer's state stays in `self.inner.state`); `state_dict()` is
    `{"inner": inner.state_dict(), "outer": own state}`. Parameters whose `.grad` is None are never touched.
    """

    # factory keyword (used by `extend_with`) -> constructor argument
    factory_kwargs: ClassVar[dict[str, str]] = {}

    def __init__(self, optimizer: Optimizer, **defaults: Any) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer instance, got {type(optimizer).__name__}")
        self.inner = optimizer
        self.defaults = dict(defaults)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self._optimizer_step_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._patch_step_function()
        self._warned_capturable_if_run_uncaptured = True
        self._snapshots: dict[Tensor, Tensor] = {}
        self.last_step_updated = False
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)

    # ------------------------------------------------------------------ shared groups
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The inner optimizer's groups (same list object; survives `inner.load_state_dict`)."""
        return self.inner.param_groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.inner.add_param_group(param_group)
        for key, value in self.defaults.items():
            self.param_groups[-1].setdefault(key, value)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"

    # ------------------------------------------------------------------ protocol
    @property
    def will_update(self) -> bool:
        return will_update(self.inner)

    def delta_independent_of_params(self) -> bool:
        """Override: True if this wrapper's rewrite keeps Δ independent of θ (given the inner's is)."""
        return False

    def _all_params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @staticmethod
    def _step_params(group: dict[str, Any], closure: Callable | None) -> list[Tensor]:
        """Params the step may move: those with a gradient (or, with a closure, all trainable ones)."""
        if closure is None:
            return [p for p in group["params"] if p.grad is not None]
        return [p for p in group["params"] if p.requires_grad]

    def _snapshot(self, params: list[Tensor]) -> list[Tensor]:
        """Copy θ_t into one pre-allocated buffer per parameter (reused every step)."""
        bufs = []
        for p in params:
            buf = self._snapshots.get(p)
            if buf is None or buf.shape != p.shape or buf.dtype != p.dtype:
                buf = self._snapshots[p] = torch.empty_like(p, memory_format=torch.preserve_format)
            bufs.append(buf)
        if bufs:
            torch._foreach_copy_(bufs, params)
        return bufs

    # ------------------------------------------------------------------ step
    def _inner_step(self, closure: Callable | None) -> Any:
        return self.inner.step() if closure is None else self.inner.step(closure)

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> Any:  # type: ignore[override]
        ctx = self._before(closure)
        try:
            loss = self._inner_step(closure)
        except BaseException:
            self._after(ctx, False)                                       # undo temporary changes (lr)
            raise
        updated = last_step_updated(self.inner)
        self._after(ctx, updated)
        self.last_step_updated = updated
        return loss

    def _overrides_transform(self) -> bool:
        return type(self).transform_delta is not DerivedOptimizer.transform_delta

    def _before(self, closure: Callable | None) -> Any:
        """Generic path: snapshot θ_t of every parameter that may move."""
        if not self._overrides_transform():
            return None
        out = []
        for group in self.param_groups:
            params = self._step_params(group, closure)
            if params:
                out.append((group, params, self._snapshot(params)))
        return out

    def _after(self, ctx: Any, updated: bool) -> None:
        """Generic path: θ = θ_t + transform_delta(θ_new − θ_t) for parameters that got a gradient."""
        if not ctx or not updated:
            return
        for group, params, snaps in ctx:
            pairs = [(p, s) for p, s in zip(params, snaps) if p.grad is not None]
            for p, snap in pairs:
                delta = self.transform_delta(p, p - snap, group, self.state[p])
                torch.add(snap, delta, out=p)

    def transform_delta(self, p: Tensor, delta: Tensor, group: dict[str, Any], state: dict[str, Any]) -> Tensor:
        """Override point: rewrite one parameter's update Δ (same shape as p); identity here."""
        return delta

    # ------------------------------------------------------------------ checkpoints
    def _extra_state(self) -> dict[str, Any]:
        """Override: scalars (counters) saved next to the per-parameter state."""
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Override: restore what `_extra_state` saved."""

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        index = {p: i for i, p in enumerate(self._all_params())}
        per_param = {index[p]: {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in s.items()}
                     for p, s in self.state.items() if s and p in index}
        return {"inner": self.inner.state_dict(), "outer": {"state": per_param, **self._extra_state()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        if not isinstance(state_dict, dict) or set(state_dict) != {"inner", "outer"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"state_dict must be a {type(self).__name__}.state_dict() with keys "
                             f"['inner', 'outer'], got {got}")
        self.inner.load_state_dict(state_dict["inner"])
        outer = dict(state_dict["outer"])
        params = self._all_params()
        saved = outer.pop("state", {})
        if saved and max(saved) >= len(params):
            raise ValueError(f"state_dict holds state for parameter index {max(saved)} but the optimizer "
                             f"has only {len(params)} parameters")
        new_state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for i, entry in saved.items():
            p, old = params[i], self.state.get(params[i], {})
            for key, value in entry.items():
                if isinstance(value, Tensor):
                    buf = old.get(key)
                    if isinstance(buf, Tensor) and buf.shape == value.shape:
                        value = buf.copy_(value)
                    else:
                        value = value.to(device=p.device, dtype=p.dtype if value.is_floating_point() else
                                         value.dtype).clone()
                new_state[p][key] = value
        self.state = new_state
        self._load_extra_state(outer)
