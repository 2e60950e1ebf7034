"""Size checks run before decoding allocates anything: the position table of the model and the memory of
the device. A request that cannot fit is refused at once, naming the argument, instead of failing deep in
the allocator (or after minutes of decoding) with "sequence length 65 exceeds".
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch

from .._validate import check_float, check_int

__all__ = ["available_bytes", "check_fits_memory", "check_positions", "check_token_id", "check_token_ids",
           "check_length_penalty", "position_offset"]

_LP_EXPONENT_LIMIT = 300.0      # |length_penalty| * ln(maxlen): maxlen**length_penalty stays in [1e-130, 1e130]


def available_bytes(device: torch.device | str | None) -> int:
    """Memory that a new allocation may take: free GPU memory (plus what torch holds unused), or the
    host's MemAvailable (all physical memory where /proc/meminfo is missing)."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits_memory(what: str, nbytes: int, device) -> None:
    """Refuse a request whose buffers alone (`nbytes`) exceed the device's available memory."""
    free = available_bytes(device)
    if nbytes > free:
        raise ValueError(f"{what} needs about {nbytes / 2**30:.3g} GiB for its decoding buffers, more than the "
                         f"{free / 2**30:.3g} GiB available on {torch.device(device or 'cpu')}; ask for fewer")


def position_offset(model) -> int:
    """The position id of a model's first token (RoBERTa counts from padding_idx + 1, others from 0)."""
    first = model.default_positions(None, 1, 0, torch.device("cpu"))
    return int(first.reshape(-1)[0])


def check_positions(model, prompt_len: int, max_new_tokens: int) -> int:
    """Prompt + generated tokens must fit the model's position table (learned or rotary), if it has one.

    The last generated token is never fed back, so a run uses prompt_len + max_new_tokens - 1 positions,
    starting at the model's `position_offset`. Returns that offset (0 for models without positions)."""
    offset = position_offset(model) if hasattr(model, "default_positions") else 0
    max_length = model.max_length() if hasattr(model, "max_length") else None
    if max_length is None:                              # relative / T5: no table to overflow
        return offset
    room = max_length - prompt_len + 1
    if max_new_tokens > room:
        raise ValueError(f"max_new_tokens={max_new_tokens} with a prompt of length {prompt_len} needs "
                         f"{prompt_len + max_new_tokens - 1} positions (from {offset}), but the model's position "
                         f"table holds max_position={max_length + offset}; use max_new_tokens <= {max(room, 0)}"
                         + (" or a shorter prompt" if room < 1 else ""))
    return offset


def check_token_id(name: str, value, vocab_size: int | None, *, allow_none: bool = True) -> int | None:
    """A token id: an int in [0, vocab_size) (None allowed where it means 'no such token')."""
    if value is None and allow_none:
        return None
    return check_int(name, value, 0, None if vocab_size is None else vocab_size - 1)


def check_token_ids(name: str, values: Sequence[int] | torch.Tensor | None, vocab_size: int | None) -> list[int] | None:
    """A flat list of token ids in [0, vocab_size): floats such as 1.5 are refused, not truncated to 1."""
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        if values.dim() != 1 or values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
            raise TypeError(f"{name} must be a 1-D integer tensor or a list of ints, got {values.dtype} "
                            f"of shape {tuple(values.shape)}")
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list of token ids, got {values!r}")
    return [check_token_id(f"{name}[{i}]", v, vocab_size, allow_none=False) for i, v in enumerate(values)]


def check_length_penalty(value, maxlen: int) -> float:
    """A finite length_penalty whose length normalisation L**length_penalty (L <= maxlen) stays finite
    and non-zero in float64 (so no ranking collapses to -inf or NaN)."""
    value = check_float("length_penalty", value)
    if maxlen > 1 and abs(value) * math.log(maxlen) > _LP_EXPONENT_LIMIT:
        bound = _LP_EXPONENT_LIMIT / math.log(maxlen)
        raise ValueError(f"length_penalty={value!r} is too large for maxlen={maxlen}: maxlen**length_penalty "
                         f"leaves the float range; use |length_penalty| <= {bound:.4g}")
    return value
