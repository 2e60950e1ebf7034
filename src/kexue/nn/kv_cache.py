"""Pre-allocated key/value cache for incremental decoding, an `nn.Module` (torchtune's `KVCache` is the model).

Every buffer is allocated once (`register_buffer(..., persistent=False)`: it moves with `model.to()` and is
never saved) and keeps its shape for the whole generation, so a compiled decode step sees the same shapes at
every step. The filled prefix is read through masks over the full buffer, never through a growing view.

Layout (S = max_len slots per row; slot s holds the s-th token fed to the decoder, padding included):
    k_0, v_0, ...   [B, H, S, D] per layer self-attention keys / values (one buffer per layer, so a compiled
                                           step writes each in place instead of copying a stacked buffer)
    valid           [B, S] bool            the slot holds a real token (False: padding or not written yet)
    rank            [B, S] long            mask rank: query i sees key j iff rank[j] <= rank[i]
                                           (causal LM: slot index; UniLM: cumsum of segment ids,
                                           https://kexue.fm/archives/6933)
    cache_pos       [] long                filled slots; the next write starts here (updated in place)
    next_position   [B, 1] long            position id of the next token (decoding state of `generate`)
    next_segment    [B, 1] long            segment id of the next token
    cross_k/cross_v [layers, B, H, S_enc, D] T5 cross-attention K/V of the encoder output, written by the
                                           decoder's first cached call (`set_cross`)
    encoder_out     [B, S_enc, C]          T5 encoder output and its padding mask encoder_mask [B, S_enc]
                                           (`set_encoder`, at prefill)

Shape, dtype and device checks (`check_fits`, `check_room`) read Python values and run before a step, at
setup or prefill; `update`, `write_masks`, `last_rank` and `advance` are pure tensor code.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_int

__all__ = ["KVCache"]


class KVCache(nn.Module):
    """Static-shape cache for `num_layers` self-attention layers (and optional cross-attention K/V)."""

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        for name, value in (("num_layers", num_layers), ("batch_size", batch_size), ("num_heads", num_heads),
                            ("max_len", max_len), ("head_dim", head_dim)):
            check_int(name, value, low=1)
        shape = (batch_size, num_heads, max_len, head_dim)
        for i in range(num_layers):
            self.register_buffer(f"k_{i}", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
            self.register_buffer(f"v_{i}", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("valid", torch.zeros(batch_size, max_len, dtype=torch.bool, device=device),
                             persistent=False)
        self.register_buffer("rank", torch.zeros(batch_size, max_len, dtype=torch.long, device=device),
                             persistent=False)
        self.register_buffer("cache_pos", torch.zeros((), dtype=torch.long, device=device), persistent=False)
        self.register_buffer("next_position", torch.zeros(batch_size, 1, dtype=torch.long, device=device),
                             persistent=False)
        self.register_buffer("next_segment", torch.zeros(batch_size, 1, dtype=torch.long, device=device),
                             persistent=False)
        self.register_buffer("cross_k", None, persistent=False)
        self.register_buffer("cross_v", None, persistent=False)
        self.register_buffer("encoder_out", None, persistent=False)     # T5: [B, S_enc, C], set by prefill
        self.register_buffer("encoder_mask", None, persistent=False)    # T5: [B, S_enc] (1 = real)
        self.cross_written = [False] * num_layers           # Python flags, set once per source (prefill)
        self.with_segments = False                          # decode steps carry next_segment (set by prefill)
        self.num_layers, self.batch_size, self.max_len = num_layers, batch_size, max_len
        self.num_heads, self.head_dim = num_heads, head_dim

    @staticmethod
    def nbytes(num_layers: int, batch_size: int, num_heads: int, max_len: int, head_dim: int,
               dtype: torch.dtype) -> int:
        """Bytes the buffers of such a cache take (for the memory check made before allocating it)."""
        itemsize = torch.empty((), dtype=dtype).element_size()
        return batch_size * max_len * (2 * num_layers * num_heads * head_dim * itemsize + 9) + 16 * batch_size

    def keys(self, layer: int) -> Tensor:
        return getattr(self, f"k_{layer}")                                                      # [B, H, S, D]

    def values(self, layer: int) -> Tensor:
        return getattr(self, f"v_{layer}")

    @property
    def dtype(self) -> torch.dtype:
        return self.k_0.dtype

    @property
    def device(self) -> torch.device:
        return self.k_0.device

    # ---- checks (run before a step: they read Python values) -------------------------------------------------
    @property
    def length(self) -> int:
        """Filled slots as a Python int (one host sync; for checks and reports, never inside a compiled step)."""
        return int(self.cache_pos)

    def check_fits(self, *, batch_size: int, num_layers: int, num_heads: int, head_dim: int, dtype: torch.dtype,
                   device: torch.device) -> None:
        """Raise a ValueError naming the cache when it was made for another batch, model, dtype or device."""
        remake = f"make it with model.make_cache({batch_size}, max_len)"
        if self.batch_size != batch_size:
            raise ValueError(f"cache was made for batch_size={self.batch_size} but the input has batch size "
                             f"{batch_size}; {remake}")
        have = (self.num_layers, self.num_heads, self.head_dim)
        if have != (num_layers, num_heads, head_dim):
            raise ValueError(f"cache holds (layers, heads, head_dim) = {have} but this model has "
                             f"{(num_layers, num_heads, head_dim)}; {remake}")
        if self.dtype != dtype:
            raise ValueError(f"cache holds {self.dtype} keys but attention computes in {dtype}; "
                             f"make it with model.make_cache({batch_size}, max_len, dtype={dtype})")
        if self.device != device:
            raise ValueError(f"cache is on {self.device} but the input is on {device}; {remake} "
                             "after moving the model")

    def check_room(self, t: int) -> None:
        length = self.length
        if length + t > self.max_len:
            raise ValueError(f"KVCache holds max_len={self.max_len} positions; {length} are filled and "
                             f"{t} more were given. Make the cache with a larger max_len.")

    # ---- tensor updates (static shapes, no host sync) --------------------------------------------------------
    def _slots(self, t: int) -> Tensor:
        return self.cache_pos + torch.arange(t, device=self.cache_pos.device)                  # [t]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v [B, H, t, D] at slots cache_pos..cache_pos+t-1; return the full buffers [B, H, S, D]
        (slots not written yet are hidden by `valid`)."""
        slots = self._slots(k.shape[2])
        keys, values = self.keys(layer), self.values(layer)
        keys.index_copy_(2, slots, k)
        values.index_copy_(2, slots, v)
        return keys, values

    def write_masks(self, valid: Tensor, rank: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new keys' validity and rank [B, t]; return both over every slot [B, S]."""
        slots = self._slots(valid.shape[1])
        self.valid.index_copy_(1, slots, valid.to(torch.bool))
        self.rank.index_copy_(1, slots, rank.to(torch.long))
        return self.valid, self.rank

    def last_rank(self) -> Tensor:
        """Rank of the last filled slot per row [B] (0 when empty)."""
        last = (self.cache_pos - 1).clamp_min(0).expand(self.batch_size, 1)                    # [B, 1]
        return self.rank.gather(1, last)[:, 0] * (self.cache_pos > 0)

    def advance(self, t: int) -> None:
        self.cache_pos.add_(t)

    # ---- T5 cross-attention ----------------------------------------------------------------------------------
    def has_cross(self, layer: int) -> bool:
        return self.cross_written[layer]

    def cross_kv(self, layer: int) -> tuple[Tensor, Tensor]:
        return self.cross_k[layer], self.cross_v[layer]                                        # [B, H, S_enc, D]

    def cross_length(self) -> int | None:
        """Length of the encoder output whose K/V are held (None before the first decoder call)."""
        return None if self.cross_k is None or not any(self.cross_written) else self.cross_k.shape[3]

    def set_cross(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Keep layer's cross-attention K/V [B, H, S_enc, D] (allocated on the first layer's call)."""
        shape = (self.num_layers, *k.shape)
        if self.cross_k is None or tuple(self.cross_k.shape) != shape or self.cross_k.dtype != k.dtype:
            self.cross_k = k.new_zeros(shape)
            self.cross_v = v.new_zeros(shape)
        self.cross_k[layer].copy_(k)
        self.cross_v[layer].copy_(v)
        self.cross_written[layer] = True

    def set_encoder(self, states: Tensor, mask: Tensor) -> None:
        """Keep the encoder output [B, S_enc, C] and its mask [B, S_enc] that the decoder attends to."""
        self.encoder_out, self.encoder_mask = states, mask

    # ---- beams and reuse -------------------------------------------------------------------------------------
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
        index = index.to(self.device)
        L = self.length                                                # only the filled slots move
        for layer in range(self.num_layers):
            for buf in (self.keys(layer), self.values(layer)):
                buf[:, :, :L] = buf[:, :, :L].index_select(0, index)
        for buf in (self.valid, self.rank, self.next_position, self.next_segment):
            buf.copy_(buf.index_select(0, index))
        if self.encoder_out is not None:
            self.encoder_out = self.encoder_out.index_select(0, index)
            self.encoder_mask = self.encoder_mask.index_select(0, index)
        if self.cross_k is not None:
            self.cross_k.copy_(self.cross_k.index_select(1, index))
            self.cross_v.copy_(self.cross_v.index_select(1, index))

    def reset(self) -> None:
        """Forget every token (the buffers stay allocated, so a compiled step can be reused)."""
        self.cache_pos.zero_()
        self.valid.zero_()
        self.rank.zero_()
        self.next_position.zero_()
        self.next_segment.zero_()
        self.cross_written = [False] * self.num_layers
        self.encoder_out = self.encoder_mask = None
