"""Batch-size-weighted running averages of losses and metrics, and small batch helpers for the Trainer
(https://kexue.fm/archives/6794: the mean over micro-batches must weight each by its size)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from .distributed import all_reduce_sum

__all__ = ["Meter", "batch_size_of", "to_device", "concat_outputs"]


class Meter:
    """sum_i n_i * v_i / sum_i n_i for every named value; sums stay on device until `result`."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor | float] = {}
        self.count = 0.0

    def add(self, n: int, values: Mapping[str, Tensor | float]) -> None:
        for k, v in values.items():
            v = v.detach().double() if isinstance(v, Tensor) else float(v)
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.count += n

    def result(self, reduce: bool = False) -> dict[str, float]:
        """Python floats; with `reduce`, sums and counts are added over ranks first."""
        keys = sorted(self.sums)
        if not keys:
            return {}
        if not reduce:                                  # one .item() per value, no stacking
            return {k: float(self.sums[k]) / self.count for k in keys}
        dev = next((v.device for v in self.sums.values() if isinstance(v, Tensor)), torch.device("cpu"))
        vec = torch.stack([torch.as_tensor(self.sums[k], dtype=torch.float64, device=dev).reshape(())
                           for k in keys] + [torch.tensor(self.count, dtype=torch.float64, device=dev)])
        if reduce:
            all_reduce_sum(vec)
        vals = vec.tolist()
        return {k: s / vals[-1] for k, s in zip(keys, vals[:-1])}

    def state_dict(self) -> dict:
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "count": self.count}

    @classmethod
    def from_state_dict(cls, state: dict, device: torch.device | None = None) -> "Meter":
        m = cls()
        m.sums = {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in state["sums"].items()}
        m.count = state["count"]
        return m


def _first_tensor(x: Any) -> Tensor | None:
    if isinstance(x, Tensor):
        return x
    items = x.values() if isinstance(x, Mapping) else x if isinstance(x, (tuple, list)) else ()
    for v in items:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def batch_size_of(batch: Any) -> int:
    """Leading dimension of the first tensor found in the batch."""
    t = _first_tensor(batch)
    if t is None or t.dim() == 0:
        raise ValueError(f"cannot find the batch size: the batch ({type(batch).__name__}) holds no tensor "
                         "with a batch dimension")
    if t.shape[0] == 0:
        raise ValueError("empty batch: the first tensor of the batch has batch size 0")
    return t.shape[0]


def to_device(x: Any, device: torch.device) -> Any:
    """Move every tensor of a nested tuple/list/dict batch to `device`; numpy arrays (not of strings or
    objects) become tensors first (`torch.as_tensor`, dtype kept: int64 ids stay int64)."""
    if isinstance(x, Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, np.ndarray) and x.dtype.kind in "biufc":
        return torch.as_tensor(x).to(device, non_blocking=True)
    if isinstance(x, Mapping):
        return type(x)({k: to_device(v, device) for k, v in x.items()}) if type(x) is not dict \
            else {k: to_device(v, device) for k, v in x.items()}
    if isinstance(x, tuple):
        return type(x)(*(to_device(v, device) for v in x)) if hasattr(x, "_fields") \
            else tuple(to_device(v, device) for v in x)
    if isinstance(x, list):
        return [to_device(v, device) for v in x]
    return x


def concat_outputs(outs: list) -> Any:
    """Concatenate per-batch outputs along dim 0, field by field for tuples and mappings."""
    if not outs:
        return []
    first = outs[0]
    if isinstance(first, Tensor):
        return torch.cat(outs) if first.dim() else torch.stack(outs)
    if isinstance(first, Mapping):
        return {k: concat_outputs([o[k] for o in outs]) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(concat_outputs(list(col)) for col in zip(*outs))
    return outs
