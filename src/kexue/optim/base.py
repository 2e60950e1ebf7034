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

State of a stack: `state_dict()` records the stack (`describe_stack`: classes outermost first with their
hyperparameters, then the base optimizer); `load_state_dict` checks the whole dict first (`check_state_dict`)
and changes nothing when it does not fit; `reset_state` clears the state of every level (a restart).
"""
from __future__ import annotations

import weakref
from types import MethodType
from collections import OrderedDict, defaultdict
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from kexue._validate import check_bool, check_float
from kexue.optim.state import check_group_hyperparameters, check_torch_state_dict

__all__ = ["DerivedOptimizer", "base_optimizer", "check_state_dict", "delta_independent_of_params",
           "describe_stack", "last_step_updated", "load_optimizer_state", "reset_state", "will_update"]

# torch optimizers whose update does not read θ when their groups have weight_decay == 0
_THETA_FREE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
               torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta)


def last_step_updated(optimizer: Optimizer) -> bool:
    """Whether `optimizer`'s last step() really changed the weights, for any stack of wrappers.

    False after a gradient-accumulation micro-step (wherever `GradientAccumulation` sits in the stack, also
    through `extend_with(..., "gradient_accumulation")`) and before the first step of a wrapper; always True
    for a plain torch optimizer. Count real updates with it (a global step, a scheduler)."""
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


def reset_state(optimizer: Optimizer) -> None:
    """Clear the optimizer state of a whole stack of wrappers (a restart, https://kexue.fm/archives/5765):
    the base optimizer's moments, Lookahead's slow weights (re-copied from the current weights) and counter,
    partial accumulation, EMA shadow (restarted from the current weights). Schedules keep their position."""
    if isinstance(optimizer, DerivedOptimizer):
        optimizer.reset_state()
    else:
        optimizer.state.clear()


def _stack_name(optimizer: Optimizer) -> str:
    """Class name of one level; classes made by `extend_with` are named by the derivation they extend."""
    cls = type(optimizer)
    while cls.__dict__.get("_made_by_extend_with", False):
        cls = cls.__bases__[0]
    return cls.__name__


def describe_stack(optimizer: Optimizer) -> list[tuple[str, dict[str, Any] | None]]:
    """[(class name, hyperparameters), ...] outermost first; the base optimizer comes last with None."""
    out: list[tuple[str, dict[str, Any] | None]] = []
    while isinstance(optimizer, DerivedOptimizer):
        out.append((_stack_name(optimizer), optimizer.hparams()))
        optimizer = optimizer.inner
    out.append((type(optimizer).__name__, None))
    return out


def _stack_str(stack: Any) -> str:
    try:
        return " > ".join(name if hp is None else f"{name}({', '.join(f'{k}={v!r}' for k, v in hp.items())})"
                          for name, hp in stack)
    except (TypeError, ValueError, AttributeError):
        return repr(stack)[:300]


def _same_record(a: Any, b: Any) -> bool:
    """Strict equality of two stack records (a tensor or another type anywhere is a difference)."""
    if type(a) is not type(b) and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_record(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_record(x, y) for x, y in zip(a, b))
    return isinstance(a, (str, int, float, bool, type(None))) and a == b


def _clone_tensors(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: _clone_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone_tensors(v) for v in obj]
    return obj


def check_state_dict(optimizer: Optimizer, state_dict: Any) -> None:
    """Raise a clear ValueError if `state_dict` cannot be loaded into `optimizer` exactly; changes nothing.

    For a wrapper stack: the same classes in the same order with the same hyperparameters, then every level's
    state; for a plain torch optimizer: group count and sizes, the group keys it needs, finite values."""
    if isinstance(optimizer, DerivedOptimizer):
        optimizer._check_state_dict(state_dict, "state_dict")
    else:
        check_torch_state_dict(optimizer, state_dict)


def load_optimizer_state(optimizer: Optimizer, state_dict: Any) -> None:
    """`optimizer.load_state_dict(state_dict)` for any optimizer, wrapper stack or plain torch, after
    `check_state_dict`: a checkpoint that does not fit is a clear ValueError and changes nothing; the
    optimizer keeps copies, never the checkpoint's own tensors."""
    if isinstance(optimizer, DerivedOptimizer):
        optimizer.load_state_dict(state_dict)               # checks everything first; runs its hooks
    else:
        check_state_dict(optimizer, state_dict)
        optimizer.load_state_dict(_clone_tensors(state_dict))


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

    Built with public torch API only: `Optimizer.__init__` runs (step hooks, `register_step_pre_hook`, torch
    LR schedulers, pickling work as for any torch optimizer), then `param_groups` is the inner's list object.
    `defaults` holds the inner's defaults plus this level's per-group hyperparameters, which live in every
    group (a group may set its own value; a scheduler may change them; they are checked before each step).
    Wrapper-wide settings that cannot differ per group (accumulation steps, EMA decay, ...) are constructor
    attributes recorded in the stack (`describe_stack`).
    """

    # factory keyword (used by `extend_with`) -> constructor argument
    factory_kwargs: ClassVar[dict[str, str]] = {}

    def __init__(self, optimizer: Optimizer, **defaults: Any) -> None:
        """`defaults`: this level's per-group hyperparameters (torch.optim style: written into every group that
        does not set its own, read from the group at each step, saved with the groups)."""
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer instance, got {type(optimizer).__name__}")
        check_group_hyperparameters(optimizer.param_groups, "optimizer.param_groups")
        for i, group in enumerate(optimizer.param_groups):          # values the user set in the inner's groups
            for key in defaults:
                if key in group:
                    self._check_group_value(key, group[key], f"optimizer.param_groups[{i}][{key!r}]", defaults[key])
        self.inner = optimizer
        self._group_keys = tuple(defaults)
        before = set(self.__dict__)
        # torch's own set-up (hooks, state); it adopts the inner's group dicts through torch's add_param_group
        # (the wrappers' own add_param_group adds to the inner optimizer, which already holds these groups)
        self.add_param_group = MethodType(Optimizer.add_param_group, self)   # type: ignore[method-assign]
        try:
            super().__init__(optimizer.param_groups, {**optimizer.defaults, **defaults})
        finally:
            del self.add_param_group
        # what torch keeps besides defaults/state/param_groups (hooks, ...): dropped by pickling, as torch does
        self._torch_bookkeeping = frozenset(set(self.__dict__) - before - {"defaults", "state", "param_groups"})
        self.param_groups = optimizer.param_groups                    # the very same list object
        self._follow_inner()
        self._snapshots: dict[Tensor, Tensor] = {}
        self.last_step_updated = False

    # ------------------------------------------------------------------ shared groups
    def _follow_inner(self) -> None:
        """Share the base optimizer's group list again whenever it loads a state dict (torch then rebinds its
        `param_groups` to a new list), through torch's public load_state_dict post-hook."""
        me = weakref.ref(self)

        def rebind(base: Optimizer) -> None:
            wrapper = me()
            if wrapper is not None:
                wrapper.param_groups = base.param_groups
        base_optimizer(self.inner).register_load_state_dict_post_hook(rebind)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add the group to the inner optimizer (so to every level), then this level's defaults, checked."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        for key in self._group_keys:
            if key in param_group:
                self._check_group_value(key, param_group[key], f"param_group[{key!r}]", self.defaults[key])
        self.inner.add_param_group(param_group)
        for key in self._group_keys:
            self.param_groups[-1].setdefault(key, self.defaults[key])

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the hooks (a torch optimizer drops them too) and methods patched on the instance (a
        torch LR scheduler wraps `step`, bound to this very object: a copy must step itself)."""
        cls = type(self)
        return {k: v for k, v in self.__dict__.items()
                if k not in self._torch_bookkeeping and k != "_kexue_state_dict_hooks" and not hasattr(cls, k)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        defaults = dict(state["defaults"])
        super().__setstate__(state)                                   # torch re-creates its hooks
        self.defaults = defaults
        self.param_groups = self.inner.param_groups
        self._follow_inner()

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
        self.check_stack_groups()
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

    # ------------------------------------------------------------------ reset (restart)
    def reset_state(self) -> None:
        """Clear the state of this wrapper and of every level inside it (see `kexue.optim.base.reset_state`)."""
        reset_state(self.inner)
        self._reset_own_state()

    def _reset_own_state(self) -> None:
        """Override: clear this level's state (default: the per-parameter dict)."""
        self.state.clear()

    # ------------------------------------------------------------------ checkpoints
    def hparams(self) -> dict[str, Any]:
        """Override: the constructor hyperparameters that fix what this level's state means (recorded in
        `state_dict()['stack']`; a checkpoint loads only into the same stack)."""
        return {}

    # keys of `_extra_state()` that are always / sometimes present
    _extra_keys: ClassVar[tuple[str, ...]] = ()
    _optional_extra_keys: ClassVar[tuple[str, ...]] = ()
    # per-parameter state keys and their types (None: not checked, e.g. a user subclass)
    _state_kinds: ClassVar[dict[str, type] | None] = None

    def _extra_state(self) -> dict[str, Any]:
        """Override: scalars (counters) saved next to the per-parameter state."""
        return {}

    def _check_group_value(self, key: str, value: Any, at: str, default: Any) -> None:
        """Override for keys that are not a flag or a number >= 0: raise a ValueError naming `at` if `value`
        cannot stand for this level's group key `key` (default `default`)."""
        if isinstance(default, bool):
            check_bool(at, value)
        elif isinstance(default, (int, float)):
            check_float(at, value, low=0.0)

    def check_groups(self, groups: list[dict[str, Any]] | None = None, where: str = "param_groups",
                     allow_missing: bool = False) -> None:
        """Every group holds this level's keys with valid values (run before each step: a user or a scheduler
        may have written a bad value into a group). `allow_missing`: a key may be absent (a checkpoint of the
        same stack saved by an older kexue; loading fills in the default, as torch does for new hyperparameters)."""
        for i, group in enumerate(self.param_groups if groups is None else groups):
            for key in self._group_keys:
                at = f"{where}[{i}][{key!r}]"
                if key not in group and allow_missing:
                    continue
                if key not in group:
                    raise ValueError(f"{at} is missing: {type(self).__name__} needs it (the state comes from "
                                     f"another stack)")
                self._check_group_value(key, group[key], at, self.defaults[key])

    def check_stack_groups(self) -> None:
        """`check_groups` of every level of the stack, and finite lrs: run first by `step()`, so a bad value
        that a user or a scheduler wrote into a group is refused before any level changes anything."""
        check_group_hyperparameters(self.param_groups, "param_groups", ("lr",))   # a scheduler may set nan
        level: Optimizer = self
        while isinstance(level, DerivedOptimizer):
            level.check_groups()
            level = level.inner

    def _check_group_defaults(self, state_dict: dict[str, Any], where: str) -> None:
        """The group keys this wrapper added (`weight_decay_rate`, `lazy`, ...) are in the saved base groups."""
        if not self._group_keys:
            return
        base_sd, path = state_dict, where
        while isinstance(base_sd, dict) and "inner" in base_sd:
            base_sd, path = base_sd["inner"], f"{path}['inner']"
        self.check_groups(base_sd["param_groups"], f"{path}['param_groups']", allow_missing="stack" in state_dict)

    def _check_param_state(self, saved: dict[int, dict[str, Any]], where: str) -> None:
        """Override: raise a ValueError if the per-parameter state is incomplete (called first)."""

    def _check_extra_state(self, extra: dict[str, Any], where: str) -> None:
        """Override: raise a ValueError if `extra` cannot be loaded by `_load_extra_state` (called first)."""

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Override: restore what `_extra_state` saved."""

    # ------------------------------------------------------------------ state-dict hooks (torch's public API)
    def _hooks(self, kind: str) -> OrderedDict:
        hooks = self.__dict__.setdefault("_kexue_state_dict_hooks", {})
        return hooks.setdefault(kind, OrderedDict())

    def _add_hook(self, kind: str, hook: Callable, prepend: bool) -> RemovableHandle:
        hooks = self._hooks(kind)
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        if prepend:
            hooks.move_to_end(handle.id, last=False)
        return handle

    def register_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """`hook(optimizer)` before `state_dict()` (as torch.optim; the wrapper's dict has its own format)."""
        return self._add_hook("state_dict_pre", hook, prepend)

    def register_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """`hook(optimizer, state_dict) -> state_dict or None` after `state_dict()` (as torch.optim)."""
        return self._add_hook("state_dict_post", hook, prepend)

    def register_load_state_dict_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """`hook(optimizer, state_dict) -> state_dict or None` before `load_state_dict` checks it."""
        return self._add_hook("load_state_dict_pre", hook, prepend)

    def register_load_state_dict_post_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """`hook(optimizer)` after `load_state_dict` (as torch.optim)."""
        return self._add_hook("load_state_dict_post", hook, prepend)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        for hook in list(self._hooks("state_dict_pre").values()):
            hook(self)
        index = {p: i for i, p in enumerate(self._all_params())}
        per_param = {index[p]: {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in s.items()}
                     for p, s in self.state.items() if s and p in index}
        out = {"inner": self.inner.state_dict(), "outer": {"state": per_param, **self._extra_state()},
               "stack": describe_stack(self)}
        for hook in list(self._hooks("state_dict_post").values()):
            result = hook(self, out)
            out = out if result is None else result
        return out

    def _check_state_dict(self, state_dict: Any, where: str) -> None:
        """Validate the whole dict, every level, before anything is changed."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or not {"inner", "outer"} <= set(state_dict) <= {"inner", "outer",
                                                                                              "stack"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{where} must be a {name}.state_dict() with keys ['inner', 'outer'] (and 'stack'), "
                             f"got {got}")
        mine = describe_stack(self)
        if "stack" in state_dict:
            try:
                saved = [(n, hp) for n, hp in state_dict["stack"]]
            except (TypeError, ValueError):
                raise ValueError(f"{where}['stack'] must be a list of (class name, hyperparameters) pairs, got "
                                 f"{state_dict['stack']!r:.200}") from None
            if not _same_record(saved, mine):
                raise ValueError(f"optimizer stack mismatch: {where} was saved from {_stack_str(saved)} but this "
                                 f"optimizer is {_stack_str(mine)}; load it into the same wrappers (same order and "
                                 f"hyperparameters) around the same base optimizer")
        inner_sd = state_dict["inner"]
        if isinstance(self.inner, DerivedOptimizer):
            self.inner._check_state_dict(inner_sd, f"{where}['inner']")
        else:
            if isinstance(inner_sd, dict) and {"inner", "outer"} <= set(inner_sd):
                raise ValueError(f"{where}['inner'] holds the state of another wrapper but this optimizer is "
                                 f"{_stack_str(mine)}")
            check_torch_state_dict(self.inner, inner_sd, f"{where}['inner']")
        outer = state_dict["outer"]
        if not isinstance(outer, dict):
            raise ValueError(f"{where}['outer'] must be a dict, got {type(outer).__name__}")
        keys = set(outer) - {"state"}
        missing, unknown = set(self._extra_keys) - keys, keys - set(self._extra_keys) - set(self._optional_extra_keys)
        if missing or unknown:
            raise ValueError(f"{where}['outer'] does not hold {name} state: missing {sorted(missing)}, unexpected "
                             f"{sorted(unknown)}")
        params = self._all_params()
        saved = outer.get("state", {})
        if not isinstance(saved, dict):
            raise ValueError(f"{where}['outer']['state'] must be a dict, got {type(saved).__name__}")
        for i, entry in saved.items():
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(params):
                raise ValueError(f"{where}['outer']['state'] has parameter index {i!r} but {name} has "
                                 f"{len(params)} parameters")
            if not isinstance(entry, dict):
                raise ValueError(f"{where}['outer']['state'][{i}] must be a dict, got {type(entry).__name__}")
            for key, value in entry.items():
                at = f"{where}['outer']['state'][{i}][{key!r}]"
                kinds = self._state_kinds
                if kinds is not None and (key not in kinds or not isinstance(value, kinds[key])
                                          or (kinds[key] is not bool and isinstance(value, bool))):
                    expected = kinds[key].__name__ if kinds is not None and key in kinds else f"one of {sorted(kinds)}"
                    raise ValueError(f"{at} is not {name} state: expected {expected}, got {type(value).__name__}")
                strict = kinds is not None                              # kexue's own per-parameter tensors
                if isinstance(value, Tensor) and (value.dim() > 0 or strict) and value.shape != params[i].shape:
                    raise ValueError(f"{at} has shape {tuple(value.shape)} but the parameter has shape "
                                     f"{tuple(params[i].shape)}")
                if isinstance(value, Tensor) and value.is_floating_point() and not bool(value.isfinite().all()):
                    raise ValueError(f"{at} holds non-finite values (a poisoned checkpoint)")
        self._check_param_state(saved, f"{where}['outer']['state']")
        self._check_group_defaults(state_dict, where)
        self._check_extra_state({k: outer[k] for k in keys}, f"{where}['outer']")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load a `state_dict()` of the same stack; raises a ValueError and changes nothing if it does not fit."""
        for hook in list(self._hooks("load_state_dict_pre").values()):
            result = hook(self, state_dict)
            state_dict = state_dict if result is None else result
        self._check_state_dict(state_dict, "state_dict")
        self._apply_state_dict(state_dict)
        for hook in list(self._hooks("load_state_dict_post").values()):
            hook(self)

    def _apply_state_dict(self, state_dict: dict[str, Any]) -> None:
        if isinstance(self.inner, DerivedOptimizer):
            self.inner._apply_state_dict(state_dict["inner"])
        else:                                       # torch keeps the given tensors: copy, never alias the dict
            self.inner.load_state_dict(_clone_tensors(state_dict["inner"]))
        self.param_groups = self.inner.param_groups
        for group in self.param_groups:             # keys an older checkpoint of this stack lacks: the defaults
            for key in self._group_keys:
                group.setdefault(key, self.defaults[key])
        outer = dict(state_dict["outer"])
        params = self._all_params()
        saved = outer.pop("state", {})
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
