"""Checks on a plain `torch.optim.Optimizer` and its `state_dict`, run BEFORE anything is changed.

`torch.optim.Optimizer.load_state_dict` checks the group count and sizes but then takes whatever groups it is
given: Adam's state loads into SGD and fails later with `KeyError: 'momentum'`, a NaN learning rate loads and
poisons every weight. These checks make such a load a clear `ValueError` that changes nothing.
"""
from __future__ import annotations

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


def _same_kind(default: Any, value: Any) -> bool:
    """`value` can stand where the optimizer's default `default` stands (a number for a number, ...)."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, numbers.Real):
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)) or \
            (isinstance(value, Tensor) and value.numel() == 1)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list)) and len(value) == len(default) and \
            all(_same_kind(d, v) for d, v in zip(default, value))
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


def check_torch_state_dict(optimizer: Optimizer, state_dict: Any, where: str = "state_dict") -> None:
    """Raise a ValueError naming the mismatch if `state_dict` cannot be loaded into `optimizer` exactly.

    Checked: the format, the group count and sizes, the group keys the optimizer needs (Adam's state has no
    'momentum' for SGD, SGD's no 'betas' for Adam), finite hyperparameters, the state's parameter indices and,
    for the torch optimizers whose state is per-element, the shape of every state tensor."""
    name = type(optimizer).__name__
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
        got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise ValueError(f"{where} must be a {name}.state_dict() with keys ['param_groups', 'state'], got {got}")
    saved_groups, state = state_dict["param_groups"], state_dict["state"]
    if not isinstance(saved_groups, list) or not all(isinstance(g, dict) and "params" in g for g in saved_groups):
        raise ValueError(f"{where}['param_groups'] must be a list of dicts with 'params', got {saved_groups!r:.200}")
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f"{where} holds {len(saved_groups)} param groups but this {name} has "
                         f"{len(optimizer.param_groups)}")
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
            if key in g and not _same_kind(default, g[key]):
                raise ValueError(f"{where}['param_groups'][{i}][{key!r}] must be like {name}'s default "
                                 f"{default!r}, got {g[key]!r:.100}")
    check_group_hyperparameters(saved_groups, f"{where}['param_groups']")
    if not isinstance(state, dict):
        raise ValueError(f"{where}['state'] must be a dict, got {type(state).__name__}")
    params = {pid: p for g, mg in zip(saved_groups, optimizer.param_groups) for pid, p in zip(g["params"], mg["params"])}
    for pid, entry in state.items():
        if pid not in params:
            raise ValueError(f"{where}['state'] has an entry for parameter id {pid!r} that no param group lists")
        if not isinstance(entry, dict):
            raise ValueError(f"{where}['state'][{pid!r}] must be a dict, got {type(entry).__name__}")
        for key, value in entry.items():
            at = f"{where}['state'][{pid!r}][{key!r}]"
            if isinstance(value, Tensor) and value.is_floating_point() and not bool(value.isfinite().all()):
                raise ValueError(f"{at} holds non-finite values (a poisoned checkpoint)")
            if type(optimizer) not in _PARAM_SHAPED_STATE:
                continue
            if not (isinstance(value, Tensor) or value is None or (key == "step" and isinstance(value, numbers.Real)
                                                                   and not isinstance(value, bool))):
                raise ValueError(f"{at} must be a tensor, got {type(value).__name__}")
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != params[pid].shape:
                raise ValueError(f"{at} has shape {tuple(value.shape)} but the parameter has shape "
                                 f"{tuple(params[pid].shape)}")
