"""Checks on a plain `torch.optim.Optimizer` and its `state_dict`, run BEFORE anything is changed.

`torch.optim.Optimizer.load_state_dict` checks the group count and sizes but then takes whatever groups it is
given: Adam's state loads into SGD and fails later with `KeyError: 'momentum'`, a NaN learning rate loads and
poisons every weight. These checks make such a load a clear `ValueError` that changes nothing.
"""
from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from kexue._validate import check_float

__all__ = ["check_group_hyperparameters", "check_torch_state_dict", "required_group_keys"]

# optimizers whose per-parameter state tensors are all scalars or of the parameter's shape
_PARAM_SHAPED_STATE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
                       torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta,
                       torch.optim.ASGD, torch.optim.Rprop)


# ranges of common torch hyperparameters that torch checks at construction only (or not at all: dampening)
_DOMAINS = {"lr": (0.0, None), "weight_decay": (0.0, None), "momentum": (0.0, None), "dampening": (0.0, 1.0)}


def _reals(value: Any) -> list[float]:
    """The real numbers held by a group value: a number, a one-element tensor, or a tuple/list of numbers."""
    if isinstance(value, bool):
        return []
    if isinstance(value, numbers.Real):
        return [value]
    if isinstance(value, Tensor) and value.numel() == 1 and value.device.type == "cpu":
        return [float(value)]
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _reals(item)]
    return []


def check_group_hyperparameters(groups: list[dict[str, Any]], where: str = "param_groups",
                                keys: tuple[str, ...] | None = None) -> None:
    """Every real-valued hyperparameter of every group (only `keys` when given) is finite: lr=nan is refused."""
    for i, group in enumerate(groups):
        for key, value in group.items():
            if key == "params" or (keys is not None and key not in keys):
                continue
            for v in _reals(value):
                if not math.isfinite(float(v)):
                    check_float(f"{where}[{i}][{key!r}]", float(v))


def _same_kind(default: Any, value: Any, tensor_ok: bool = False) -> bool:
    """`value` can stand where the optimizer's default `default` stands (a number for a number, ...); a
    one-element tensor only where torch documents one (`tensor_ok`: lr, betas)."""
    if default is None:                                                 # foreach, fused, line_search_fn, ...
        return value is None or isinstance(value, (bool, str, numbers.Real))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, numbers.Real):
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)) or \
            (tensor_ok and isinstance(value, Tensor) and value.numel() == 1)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list)) and len(value) == len(default) and \
            all(_same_kind(d, v, tensor_ok) for d, v in zip(default, value))
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def required_group_keys(optimizer: Optimizer) -> set[str]:
    """Group keys that `optimizer.step()` reads and that its `__setstate__` does not fill in by default.

    Found by running the class's own `__setstate__` on a probe group, so it follows the installed torch."""
    probe: dict[str, Any] = {"params": []}
    fake = object.__new__(type(optimizer))
    try:
        type(optimizer).__setstate__(fake, {"defaults": dict(optimizer.defaults), "state": {}, "param_groups": [probe]})
    except Exception:                                                   # an exotic optimizer: check nothing
        return set()
    return set(optimizer.defaults) - set(probe) - {"params"}


def _probe_state(optimizer: Optimizer, group: dict[str, Any], like: Tensor, where: str) -> dict[str, Tensor] | None:
    """The per-parameter state one step of `type(optimizer)` creates with the saved group's hyperparameters
    on a 2-element probe parameter of `like`'s device and dtype; the constructor and the step also check the
    hyperparameters (betas < 1, eps >= 0, capturable only where supported, ...)."""
    if type(optimizer) not in _PARAM_SHAPED_STATE:
        return None
    accepted = set(inspect.signature(type(optimizer).__init__).parameters) - {"self", "params"}
    hyper = {k: v for k, v in group.items() if k in accepted}
    probe = torch.zeros(2, device=like.device, dtype=like.dtype, requires_grad=True)
    try:
        opt = type(optimizer)([probe], **hyper)
        probe.grad = torch.ones_like(probe)
        opt.step()
    except (ValueError, TypeError, RuntimeError, AssertionError) as e:
        raise ValueError(f"{where} holds hyperparameters that {type(optimizer).__name__} refuses: "
                         f"{type(e).__name__}: {e}") from None
    return dict(opt.state[probe])


def _check_groups(optimizer: Optimizer, saved_groups: Any, where: str) -> None:
    name = type(optimizer).__name__
    if not isinstance(saved_groups, list) or not all(isinstance(g, dict) and "params" in g for g in saved_groups):
        raise ValueError(f"{where}['param_groups'] must be a list of dicts with 'params', got {saved_groups!r:.200}")
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f"{where} holds {len(saved_groups)} param groups but this {name} has "
                         f"{len(optimizer.param_groups)}")
    ids = [pid for g in saved_groups for pid in (g["params"] if isinstance(g["params"], list) else [None])]
    if any(isinstance(pid, bool) or not isinstance(pid, int) for pid in ids) or len(set(ids)) != len(ids):
        raise ValueError(f"{where}['param_groups'] 'params' must be lists of distinct int ids, got "
                         f"{[g['params'] for g in saved_groups]!r:.200}")
    sizes = [len(g["params"]) for g in saved_groups]
    mine = [len(g["params"]) for g in optimizer.param_groups]
    if sizes != mine:
        raise ValueError(f"{where} param group sizes {sizes} do not match this {name}'s {mine}")
    required = required_group_keys(optimizer)
    for i, g in enumerate(saved_groups):
        missing = sorted(required - set(g))
        if missing:
            raise ValueError(f"{where}['param_groups'][{i}] lacks {missing} that {name} needs (it holds "
                             f"{sorted(k for k in g if k != 'params')}): the state comes from another optimizer")
        for key, default in optimizer.defaults.items():
            if key in g and not _same_kind(default, g[key], key in ("lr", "betas")):
                raise ValueError(f"{where}['param_groups'][{i}][{key!r}] must be like {name}'s default "
                                 f"{default!r}, got {g[key]!r:.100}")
    check_group_hyperparameters(saved_groups, f"{where}['param_groups']")
    for i, g in enumerate(saved_groups):
        for key, (low, high) in _DOMAINS.items():
            for v in _reals(g.get(key)):
                check_float(f"{where}['param_groups'][{i}][{key!r}]", float(v), low, high)


def _check_entry(entry: Any, param: Tensor, reference: dict[str, Tensor] | None, at: str) -> None:
    """One parameter's saved state against the state the optimizer itself creates (`reference`)."""
    if not isinstance(entry, dict):
        raise ValueError(f"{at} must be a dict, got {type(entry).__name__}")
    if reference is not None and entry and set(entry) != set(reference):
        raise ValueError(f"{at} holds keys {sorted(entry)} but this optimizer keeps {sorted(reference)}")
    for key, value in entry.items():
        if isinstance(value, Tensor) and value.is_floating_point() and not bool(value.isfinite().all()):
            raise ValueError(f"{at}[{key!r}] holds non-finite values (a poisoned checkpoint)")
        ref = None if reference is None else reference[key]
        if key == "step" and (isinstance(value, numbers.Real) and not isinstance(value, bool)
                              or isinstance(value, Tensor) and value.numel() == 1):
            step = float(value)
            if not (math.isfinite(step) and step >= 0 and step == int(step)):
                raise ValueError(f"{at}['step'] must be a whole number >= 0, got {step!r}")
            continue
        if ref is None and reference is None:
            continue
        if not isinstance(value, Tensor) and not (value is None and ref is None):
            raise ValueError(f"{at}[{key!r}] must be a tensor, got {type(value).__name__}")
        if isinstance(ref, Tensor) and isinstance(value, Tensor):
            shape = param.shape if ref.dim() > 0 else ref.shape
            if value.shape != shape or value.is_floating_point() != ref.is_floating_point():
                raise ValueError(f"{at}[{key!r}] must be a tensor of shape {tuple(shape)}, got "
                                 f"{tuple(value.shape)} {value.dtype}")


def check_torch_state_dict(optimizer: Optimizer, state_dict: Any, where: str = "state_dict") -> None:
    """Raise a ValueError naming the mismatch if `state_dict` cannot be loaded into `optimizer` exactly.

    Checked: the format, the group count and sizes, the group keys the optimizer needs (Adam's state has no
    'momentum' for SGD, SGD's no 'betas' for Adam) and their kinds, finite hyperparameters, the state's
    parameter ids and, for the torch optimizers whose state is per-element, every state entry against the
    state one step of the optimizer creates (keys, shapes; a whole `step` >= 0), no NaN/inf anywhere."""
    name = type(optimizer).__name__
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
        got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise ValueError(f"{where} must be a {name}.state_dict() with keys ['param_groups', 'state'], got {got}")
    saved_groups, state = state_dict["param_groups"], state_dict["state"]
    _check_groups(optimizer, saved_groups, where)
    if not isinstance(state, dict):
        raise ValueError(f"{where}['state'] must be a dict, got {type(state).__name__}")
    owner = {pid: (i, p) for i, (g, mg) in enumerate(zip(saved_groups, optimizer.param_groups))
             for pid, p in zip(g["params"], mg["params"])}
    references: dict[int, dict[str, Tensor] | None] = {}
    for pid, entry in state.items():
        if isinstance(pid, bool) or pid not in owner:
            raise ValueError(f"{where}['state'] has an entry for parameter id {pid!r} that no param group lists")
        i, param = owner[pid]
        if i not in references:
            references[i] = _probe_state(optimizer, saved_groups[i], param, f"{where}['param_groups'][{i}]")
        _check_entry(entry, param, references[i], f"{where}['state'][{pid!r}]")
