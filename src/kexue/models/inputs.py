"""Checks on the tensors a model forward takes: each bad argument raises an error that names it, the bad value
and what was expected, before the model computes anything.

Type, shape and device checks cost nothing. The value checks (ids inside their table, masks holding only 0/1)
need the data: they are collected in a `ValueChecks` and read back to the host in one sync per forward.

Under torch.compile a host sync would break the graph, so `ValueChecks.run` keeps the checks inside it as
`torch._assert_async` asserts: no graph break, no sync, and a bad value still stops the forward, with a
RuntimeError whose message names the argument and the expected range (the bad value itself is only in the
eager-mode ValueError, which needs the sync).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["type_name", "check_ids", "check_mask", "check_same_shape", "check_embeds", "check_bias", "compute_dtype",
           "ValueChecks"]

ID_DTYPES = (torch.int64, torch.int32)          # what nn.Embedding indexes with


def type_name(x: Any) -> str:
    """`numpy.ndarray`, `list`, `torch.Tensor`: the qualified name a user recognises."""
    t = type(x)
    mod = t.__module__.split(".")[0]
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def _tensor(name: str, x: Any, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        hint = " (convert it with torch.as_tensor)" if hasattr(x, "__array__") or isinstance(x, (list, tuple)) else ""
        raise TypeError(f"{name} must be a torch.Tensor of {what}, got {type_name(x)}{hint}")
    return x


def check_ids(name: str, x: Any, shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """x: a non-empty int64/int32 tensor [B, n] (exactly `shape` when given) -> (B, n)."""
    x = _tensor(name, x, "integer ids [B, n]")
    if x.dtype not in ID_DTYPES:
        raise TypeError(f"{name} must hold integer ids (int64 or int32), got dtype {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape [B, n], got {tuple(x.shape)}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [B, n] = {list(shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}; expected B >= 1 and n >= 1")
    return tuple(x.shape)


def check_mask(name: str, x: Any, shapes: tuple[tuple[int, ...], ...], device: torch.device) -> Tensor:
    """x: a bool, integer or float mask whose shape is one of `shapes` (its 0/1 values are checked by
    `ValueChecks.binary`)."""
    x = _tensor(name, x, "0/1 values (1 = real token)")
    if x.is_complex():
        raise TypeError(f"{name} must be bool, integer or float 0/1 values, got dtype {x.dtype}")
    if tuple(x.shape) not in [tuple(s) for s in shapes]:
        expected = " or ".join(str(list(s)) for s in shapes)
        raise ValueError(f"{name} has shape {tuple(x.shape)}; expected {expected} (the shape of the ids)")
    check_device(name, x, device)
    return x


def check_same_shape(name: str, x: Any, shape: tuple[int, int], device: torch.device) -> Tensor:
    """Integer ids (segment_ids, position_ids) of exactly `shape` [B, n] on `device`."""
    check_ids(name, x, shape)
    check_device(name, x, device)
    return x


def check_device(name: str, x: Tensor, device: torch.device) -> None:
    if x.device != device:
        raise ValueError(f"{name} is on {x.device} but the ids are on {device}; put them on one device")


def check_embeds(name: str, x: Any, width: int) -> tuple[int, int]:
    """x: a non-empty float tensor [B, n, width] -> (B, n)."""
    x = _tensor(name, x, f"float vectors [B, n, {width}]")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor [B, n, {width}], got dtype {x.dtype}")
    if x.dim() != 3 or x.shape[2] != width:
        raise ValueError(f"{name} must have shape [B, n, {width}] (the embedding width), got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}; expected B >= 1 and n >= 1")
    return x.shape[0], x.shape[1]


def check_bias(name: str, x: Any, full: tuple[int, ...]) -> None:
    """A float additive bias broadcastable to `full` = [B, H, n, m] without growing it."""
    x = _tensor(name, x, f"float scores broadcastable to {list(full)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got dtype {x.dtype}")
    ok = x.dim() <= len(full) and all(a in (1, b) for a, b in zip(x.shape[::-1], full[::-1]))
    if not ok:
        raise ValueError(f"{name} has shape {tuple(x.shape)}; expected a shape broadcastable to "
                         f"[B, H, n, m] = {list(full)}")


def compute_dtype(weight: Tensor, device: torch.device) -> torch.dtype:
    """The dtype a layer with this weight computes in on `device`: the autocast dtype when autocast is on."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return weight.dtype


class ValueChecks:
    """Data-dependent checks, gathered so that one host sync answers all of them (`run`)."""

    def __init__(self) -> None:
        self._ranges: list[tuple[str, Tensor, int, int, str]] = []
        self._binary: list[tuple[str, Tensor]] = []

    def in_range(self, name: str, x: Tensor, low: int, high: int, what: str) -> None:
        """Every value of the integer tensor x in [low, high) (`what` names the table)."""
        self._ranges.append((name, x, low, high, what))

    def binary(self, name: str, x: Tensor) -> None:
        """Every value of x exactly 0 or 1 (bool masks always are)."""
        if x.dtype != torch.bool:
            self._binary.append((name, x))

    def run(self) -> None:
        if torch.compiler.is_compiling():
            self._assert_in_graph()
            return
        stats = []
        for _, x, *_ in self._ranges:
            stats += [x.min().long(), x.max().long()]
        for _, x in self._binary:
            stats.append(((x != 0) & (x != 1)).any().long())
        if not stats:
            return
        values = torch.stack([s.to(stats[0].device) for s in stats]).tolist()    # the one sync
        for i, (name, _, low, high, what) in enumerate(self._ranges):
            lo, hi = values[2 * i], values[2 * i + 1]
            if lo < low or hi >= high:
                raise ValueError(f"{name} contain ids in [{lo}, {hi}], outside {what} [{low}, {high})")
        for j, (name, x) in enumerate(self._binary):
            if values[2 * len(self._ranges) + j]:
                bad = x[(x != 0) & (x != 1)].flatten()[0].item()
                raise ValueError(f"{name} must hold only 0 and 1 (1 = real token, 0 = padding) or be bool; "
                                 f"got the value {bad!r}")

    def _assert_in_graph(self) -> None:
        """The same checks as traced asserts (torch.compile): RuntimeError naming the argument when one fails."""
        for name, x, low, high, what in self._ranges:
            torch._assert_async((x.min() >= low) & (x.max() < high),
                                f"{name} contain ids outside {what} [{low}, {high})")
        for name, x in self._binary:
            torch._assert_async(((x == 0) | (x == 1)).all(),
                                f"{name} must hold only 0 and 1 (1 = real token, 0 = padding) or be bool")
