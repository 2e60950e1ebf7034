"""Small functional helpers shared by every subpackage: sequence masks, masked reductions,
attention masks for the application modes, and the piecewise-linear schedule.

Masks follow one convention everywhere: bool (or 0/1) tensors, True = real token / allowed.
Reductions never use +-1e10 constants, so they are safe in bf16 and fp16; a fully masked row
gives zeros, never NaN.  (https://kexue.fm/archives/6810)
"""
from __future__ import annotations

import bisect
from typing import Literal, Sequence

import torch
from torch import Tensor

from ._validate import check_int

__all__ = [
    "sequence_mask", "apply_mask", "masked_mean", "masked_max", "masked_softmax", "reverse_padded",
    "causal_mask", "unilm_mask", "combine_masks", "piecewise_linear", "sequence_padding",
]


def sequence_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """[B] lengths -> [B, max_len] bool mask, True on the first `lengths[b]` positions."""
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D [B], got shape {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    if (lengths < 0).any():
        raise ValueError(f"lengths must be >= 0, got {lengths.tolist()}")
    if max_len is None:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    max_len = check_int("max_len", max_len, low=0)
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


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


def apply_mask(x: Tensor, mask: Tensor | None, value: float | Literal["-inf", "+inf"] = 0.0,
               axes: int | Sequence[int] = 1) -> Tensor:
    """bert4keras `sequence_masking`: put `value` where mask is False. `value` may be '-inf'/'+inf'
    for the dtype's most negative/positive finite number (safe in half precision)."""
    if mask is None:
        return x
    if value in ("-inf", "+inf"):
        info = torch.finfo(x.dtype)
        value = info.min if value == "-inf" else info.max
    return x.masked_fill(~_broadcast_mask(mask, x, axes), value)


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


def reverse_padded(x: Tensor, mask: Tensor) -> Tensor:
    """Reverse the real steps (mask True) of each row of x [B, n, ...] among themselves; padding stays where it
    is, on either side or in between. With right padding: the first L_b = sum(mask[b]) steps are reversed."""
    if tuple(mask.shape) != tuple(x.shape[:2]):
        raise ValueError(f"mask has shape {tuple(mask.shape)}; expected x's first two dims {tuple(x.shape[:2])}")
    B, n = mask.shape
    real = mask.bool()
    lengths = real.long().sum(1, keepdim=True)                               # [B, 1]
    rank = real.long().cumsum(1) - 1                                         # [B, n] order among real steps
    real_pos = torch.argsort((~real).long(), dim=1, stable=True)             # [B, n] real positions first
    mirror = real_pos.gather(1, (lengths - 1 - rank).clamp(0, n - 1))         # [B, n] real partner
    pos = torch.arange(n, device=x.device).expand(B, n)
    idx = torch.where(real, mirror, pos)                                     # [B, n]
    idx = idx.reshape(B, n, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


def causal_mask(n: int, device: torch.device | None = None, m: int | None = None) -> Tensor:
    """[n, m] bool lower-triangular mask: query i sees keys j <= i + (m - n) (m = n by default)."""
    m = n if m is None else m
    return torch.ones(n, m, dtype=torch.bool, device=device).tril(m - n)


def unilm_mask(segment_ids: Tensor) -> Tensor:
    """UniLM seq2seq mask from segment ids [B, n] -> [B, n, n]:
    allowed(i, j) iff cumsum(seg)[j] <= cumsum(seg)[i]  (https://kexue.fm/archives/6933)."""
    c = segment_ids.long().cumsum(-1)
    return c[:, None, :] <= c[:, :, None]


def combine_masks(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of broadcastable bool masks, ignoring None."""
    out = None
    for m in masks:
        if m is None:
            continue
        m = m.bool()
        out = m if out is None else out & m
    return out


def piecewise_linear(step: int | float | Tensor, schedule: dict[int, float], from_zero: bool = True):
    """bert4keras `piecewise_linear`: linear interpolation through {step: value}; (0, 0) is prepended when
    the first key is not 0 and `from_zero`; constant after the last key. (https://kexue.fm/archives/7094)"""
    if not schedule:
        raise ValueError("schedule must contain at least one {step: value} point, got {}")
    points = sorted((int(k), float(v)) for k, v in schedule.items())
    if from_zero and points[0][0] != 0:
        points.insert(0, (0, 0.0))
    xs = [p[0] for p in points]
    if isinstance(step, Tensor):
        x = torch.tensor(xs, dtype=torch.float64, device=step.device)
        y = torch.tensor([p[1] for p in points], dtype=torch.float64, device=step.device)
        s = step.to(torch.float64).clamp(x[0], x[-1])
        i = torch.searchsorted(x, s, right=True).clamp(1, len(xs) - 1)
        x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
        w = ((s - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0, 1)
        return torch.where(s >= x[-1], y[-1], y0 + w * (y1 - y0))
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
    from kexue._validate import check_int

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
