"""Size checks run before decoding allocates anything: the memory of the device (the model's position table
is checked by the model, `kexue.models.decoding.check_decoding_positions`). A request that cannot fit is
refused at once, naming the argument, instead of failing deep in the allocator (or after minutes of decoding).
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import torch

from .._validate import check_float, check_int

__all__ = ["available_bytes", "check_fits_memory", "check_token_id", "check_token_ids", "check_length_penalty"]

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
