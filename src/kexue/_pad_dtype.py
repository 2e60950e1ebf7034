"""The dtype rule of the padding helpers (`ops.sequence_padding`, `data.sequence_padding_nd`,
`data.collate_padded`): a padded batch keeps its inputs' dtype, and the pad value must fit it.

Python ints give int64, Python floats torch's default float (float64 in numpy), arrays and tensors keep
their own dtype, mixed rows are promoted (int + float -> float, never the first row's dtype), and an
empty row does not vote: `[]` carries no values, although torch would call it float32 and numpy float64.
"""
from __future__ import annotations

import functools
import numbers
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["common_torch_dtype", "common_numpy_dtype", "check_pad_value"]


def _voters(raw: Sequence, converted: Sequence) -> list:
    """The rows whose dtype counts: the non-empty ones; if all are empty, those with a dtype of their own."""
    full = [c for c in converted if c.size != 0] if isinstance(converted[0], np.ndarray) else \
        [c for c in converted if c.numel() != 0]
    if full:
        return full
    return [c for r, c in zip(raw, converted) if isinstance(r, (np.ndarray, torch.Tensor))]


def common_torch_dtype(raw: Sequence, tensors: Sequence[torch.Tensor]) -> torch.dtype:
    """Promoted dtype of `tensors` (converted from `raw` without a dtype); int64 when no row votes."""
    voters = _voters(raw, tensors)
    return functools.reduce(torch.promote_types, (t.dtype for t in voters)) if voters else torch.int64


def common_numpy_dtype(raw: Sequence, arrays: Sequence[np.ndarray]) -> np.dtype:
    """Promoted dtype of `arrays` (converted from `raw` without a dtype); int64 when no row votes."""
    voters = _voters(raw, arrays)
    return np.result_type(*voters) if voters else np.dtype(np.int64)


def check_pad_value(name: str, value: Any, dtype) -> None:
    """Refuse a pad value that the (torch or numpy) dtype would silently change: 0.5 in an int tensor,
    300 or -1 in uint8, 2 in bool. Non-numeric numpy dtypes (strings, objects) are not checked."""
    if isinstance(dtype, torch.dtype):
        if dtype.is_floating_point or dtype.is_complex:
            kind = "f"
        else:
            kind = "b" if dtype == torch.bool else "i"
            info = None if kind == "b" else torch.iinfo(dtype)
    else:
        dtype = np.dtype(dtype)
        kind = dtype.kind
        if kind not in "biufc":
            return
        info = np.iinfo(dtype) if kind in "iu" else None
    if isinstance(value, (str, bytes)) or not isinstance(value, numbers.Number):
        raise TypeError(f"{name} must be a number that fits the padded dtype {dtype}, got {value!r} "
                        f"({type(value).__name__})")
    if kind in "fc":
        return
    if isinstance(value, numbers.Complex) and not isinstance(value, numbers.Real):
        fits = False
    elif kind == "b":
        fits = value in (0, 1)
    else:
        fits = float(value).is_integer() and info.min <= value <= info.max
    if not fits:
        what = "0 or 1" if kind == "b" else f"an integer in [{info.min}, {info.max}]"
        raise ValueError(f"{name}={value!r} cannot be stored in the padded dtype {dtype} (the inputs' dtype): "
                         f"expected {what}, or pass a dtype that holds it")
