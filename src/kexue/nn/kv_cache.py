"""Pre-allocated key/value cache for incremental decoding (torchtune's KVCache idea, one object per model).

Buffers are allocated once, [B, H, S_max, D] per layer; each step writes the new keys in place and
attention reads a view of the filled prefix, so decoding never concatenates. Besides K/V the cache keeps,
per key position, whether it is a real token (`valid`) and its mask rank (`rank`): query i may see key j
iff rank[j] <= rank[i], which covers causal LMs (rank = index) and UniLM (rank = cumsum of segment ids).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._validate import check_int

__all__ = ["KVCache"]


class KVCache:
    """Static-shape cache for `num_layers` self-attention layers (and optional cross-attention K/V)."""

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        for name, value in (("num_layers", num_layers), ("batch_size", batch_size), ("num_heads", num_heads),
                            ("max_len", max_len), ("head_dim", head_dim)):
            check_int(name, value, low=1)
        shape = (batch_size, num_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)   # [B, S]
        self.rank = torch.zeros(batch_size, max_len, dtype=torch.long, device=device)    # [B, S]
        self.cross: list[tuple[Tensor, Tensor] | None] = [None] * num_layers           # T5 encoder K/V
        self.length = 0
        self.max_len = max_len
        self.batch_size = batch_size

    def check_fits(self, *, batch_size: int, num_layers: int, num_heads: int, head_dim: int, dtype: torch.dtype,
                   device: torch.device) -> None:
        """Raise a ValueError naming the cache when it was made for another batch, model, dtype or device."""
        remake = f"make it with model.make_cache({batch_size}, max_len)"
        if self.batch_size != batch_size:
            raise ValueError(f"cache was made for batch_size={self.batch_size} but the input has batch size "
                             f"{batch_size}; {remake}")
        have = (len(self.k), self.k[0].shape[1], self.k[0].shape[3])
        if have != (num_layers, num_heads, head_dim):
            raise ValueError(f"cache holds (layers, heads, head_dim) = {have} but this model has "
                             f"{(num_layers, num_heads, head_dim)}; {remake}")
        if self.k[0].dtype != dtype:
            raise ValueError(f"cache holds {self.k[0].dtype} keys but attention computes in {dtype}; "
                             f"make it with model.make_cache({batch_size}, max_len, dtype={dtype})")
        if self.k[0].device != device:
            raise ValueError(f"cache is on {self.k[0].device} but the input is on {device}; {remake} "
                             "after moving the model")

    def check_room(self, t: int) -> None:
        if self.length + t > self.max_len:
            raise ValueError(f"KVCache holds max_len={self.max_len} positions; {self.length} are filled and "
                             f"{t} more were given. Make the cache with a larger max_len.")

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v [B, H, t, D] at the current length; return views of all filled keys [B, H, L + t, D]."""
        end = self.length + k.shape[2]
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def write_masks(self, valid: Tensor, rank: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new keys' validity and rank [B, t]; return both for all filled keys [B, L + t]."""
        end = self.length + valid.shape[1]
        self.valid[:, self.length:end] = valid
        self.rank[:, self.length:end] = rank
        return self.valid[:, :end], self.rank[:, :end]

    def last_rank(self) -> Tensor:
        """Rank of the last filled position per row [B] (0 when empty)."""
        if self.length == 0:
            return self.rank.new_zeros(self.batch_size)
        return self.rank[:, self.length - 1]

    def advance(self, t: int) -> None:
        self.length += t

    def reorder(self, index: Tensor) -> None:
        """Gather rows along the batch axis in place (beam search): row b becomes old row index[b]."""
        if not isinstance(index, Tensor) or index.dim() != 1 or index.shape[0] != self.batch_size \
                or index.is_floating_point() or index.dtype == torch.bool:
            got = f"{index.dtype} {tuple(index.shape)}" if isinstance(index, Tensor) else type(index).__name__
            raise ValueError(f"index must be a 1-D integer tensor of length batch_size={self.batch_size}, got {got}")
        lo, hi = index.aminmax()
        if int(lo) < 0 or int(hi) >= self.batch_size:
            raise ValueError(f"index must hold rows in [0, {self.batch_size}), got [{int(lo)}, {int(hi)}]")
        if torch.equal(index, torch.arange(self.batch_size, device=index.device)):
            return                                                     # beams kept their rows: nothing to move
        L = self.length
        for buf in self.k + self.v:
            buf[:, :, :L] = buf[:, :, :L].index_select(0, index)
        self.valid[:, :L] = self.valid[:, :L].index_select(0, index)
        self.rank[:, :L] = self.rank[:, :L].index_select(0, index)
        self.cross = [None if kv is None else (kv[0].index_select(0, index), kv[1].index_select(0, index))
                      for kv in self.cross]

    def reset(self) -> None:
        self.length = 0
        self.valid.zero_()
        self.rank.zero_()
        self.cross = [None] * len(self.cross)
