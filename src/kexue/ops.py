"""Small functional helpers shared by several subpackages: masked reductions (pooling, the CLI, the
bidirectional seq2seq), the piecewise-linear schedule (the one schedule function, see docs/naming.md) and
`sequence_padding` (data, tokenizers, generation).

Masks follow one convention everywhere: bool (or 0/1) tensors, True = real token / allowed.
Reductions never use +-1e10 constants, so they are safe in bf16 and fp16; a fully masked row
gives zeros, never NaN.  (https://kexue.fm/archives/6810)
"""
from __future__ import annotations

import bisect
from typing import Sequence

import torch
from torch import Tensor

from ._validate import check_float, check_int

__all__ = ["masked_mean", "masked_max", "masked_softmax", "check_schedule", "piecewise_linear", "sequence_padding"]


def _broadcast_mask(mask: Tensor, x: Tensor, axes: int | Sequence[int]) -> Tensor:
    """Put the [B, n] mask on `axes` of x (batch on axis 0) and broadcast the rest."""
    axes = [axes] if isinstance(axes, int) else list(axes)
    axes = [a % x.dim() for a in axes]
    if mask.dim() != 1 + len(axes):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit axes {axes} of x {tuple(x.shape)}")
    shape = [1] * x.dim()
    shape[0] = mask.shape[0]
    for i, a in enumerate(axes):
        shape[a] = mask.shape[1 + i]
    return mask.bool().reshape(shape)


def masked_mean(x: Tensor, mask: Tensor | None, dim: int = 1, eps: float = 1e-6) -> Tensor:
    """Mean of x over `dim` counting only real positions; x [B, n, ...], mask [B, n]."""
    if mask is None:
        return x.mean(dim)
    m = _broadcast_mask(mask, x, dim).to(x.dtype)
    return (x * m).sum(dim) / (m.sum(dim) + eps)


def masked_max(x: Tensor, mask: Tensor | None, dim: int = 1) -> Tensor:
    """Max over real positions only; a fully masked row gives 0."""
    if mask is None:
        return x.amax(dim)
    m = _broadcast_mask(mask, x, dim)
    out = x.masked_fill(~m, torch.finfo(x.dtype).min).amax(dim)
    return out.masked_fill(~m.any(dim), 0.0)


def masked_softmax(logits: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    """Softmax over `dim` restricted to mask; masked entries and fully masked rows are exactly 0."""
    if mask is None:
        return logits.softmax(dim)
    mask = mask.bool()
    probs = logits.masked_fill(~mask, torch.finfo(logits.dtype).min).softmax(dim)
    return probs.masked_fill(~mask, 0.0)


def check_schedule(name: str, schedule, low: float | None = None) -> list[tuple[int, float]]:
    """A non-empty {int step >= 0: finite value (>= low)} dict as sorted (step, value) points, or an error that
    names `name` and the bad entry."""
    if not isinstance(schedule, dict):
        raise TypeError(f"{name} must be a {{step: value}} dict, got {type(schedule).__name__}")
    if not schedule:
        raise ValueError(f"{name} must contain at least one {{step: value}} point, got {{}}")
    return sorted((check_int(f"{name} key {k!r}", k, low=0), check_float(f"{name}[{k!r}]", v, low=low))
                  for k, v in schedule.items())


def piecewise_linear(step: int | float | Tensor, schedule: dict[int, float], from_zero: bool = True):
    """bert4keras `piecewise_linear`: linear interpolation through {step: value}; (0, 0) is prepended when
    the first key is not 0 and `from_zero`; constant after the last key. (https://kexue.fm/archives/7094)

    The one schedule function of kexue: `kexue.optim.PiecewiseLinearScheduler` (the torch LR scheduler) and every
    alias listed in docs/naming.md evaluate it."""
    points = check_schedule("schedule", schedule)
    if from_zero and points[0][0] != 0:
        points.insert(0, (0, 0.0))
    xs = [p[0] for p in points]
    if isinstance(step, Tensor):
        if step.is_floating_point() and not bool(step.isfinite().all()):
            raise ValueError(f"step must be finite, got a tensor with non-finite values: {step.tolist()}")
        x = torch.tensor(xs, dtype=torch.float64, device=step.device)
        y = torch.tensor([p[1] for p in points], dtype=torch.float64, device=step.device)
        s = step.to(torch.float64).clamp(x[0], x[-1])
        i = torch.searchsorted(x, s, right=True).clamp(1, len(xs) - 1)
        x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
        w = ((s - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
        return torch.where(s >= x[-1], y[-1], y0 + w * (y1 - y0))
    step = check_float("step", step) if not isinstance(step, int) else step
    if step >= xs[-1]:
        return points[-1][1]
    if step <= xs[0]:
        return points[0][1]
    i = bisect.bisect_right(xs, step)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (step - x0) / (x1 - x0) * (y1 - y0)


def sequence_padding(inputs: Sequence[Sequence[int]] | Sequence[Tensor], length: int | None = None,
                     value: int | float = 0, dtype: torch.dtype | None = None) -> Tensor:
    """Right-pad (or truncate) a list of 1-D sequences to one [B, length] tensor (bert4keras `sequence_padding`).

    The result keeps the inputs' dtype (Python ints -> int64, floats -> torch's default float, arrays and
    tensors their own, mixed rows promoted, empty rows not counted; see `kexue._pad_dtype`) unless `dtype`
    is given; `value` must fit that dtype exactly."""
    from kexue._pad_dtype import check_pad_value, common_torch_dtype

    if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__len__"):
        raise TypeError(f"inputs must be a sequence of rows (a list, tuple or tensor), got {type(inputs).__name__}")
    if len(inputs) == 0:
        raise ValueError("inputs must hold at least one sequence, got an empty list")
    if length is not None:
        length = check_int("length", length, low=0)
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or None, got {dtype!r}")
    seqs = []
    for k, s in enumerate(inputs):
        try:
            t = torch.as_tensor(s)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"inputs[{k}] must be a 1-D sequence of numbers, got {type(s).__name__}: {e}") from e
        if t.dim() != 1:
            raise ValueError(f"inputs[{k}] must be a 1-D sequence, got shape {tuple(t.shape)}: {repr(s)[:60]}")
        seqs.append(t)
    dtype = common_torch_dtype(inputs, seqs) if dtype is None else dtype
    check_pad_value("value", value, dtype)
    seqs = [s.to(dtype) for s in seqs]
    length = max(len(s) for s in seqs) if length is None else length
    out = torch.full((len(seqs), length), value, dtype=dtype)
    for i, s in enumerate(seqs):
        s = s[:length]
        out[i, : len(s)] = s
    return out
