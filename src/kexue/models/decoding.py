"""The decoding protocol: what a model offers so that `kexue.generation` can generate from it without knowing
its family (as torchtune's `setup_caches` / `caches_are_enabled` / `reset_caches`).

A generating model
  - validates and prepares a prompt once (`prepare_decoding`: model-specific checks, left alignment, T5's
    encoder pass) into a `DecodingPrompt` of batch-first row tensors that the engine may expand to beams;
  - owns one static KV cache (`setup_caches(batch_size, max_len, dtype)`, `caches_are_enabled`,
    `reset_caches`, `reorder_caches`, `teardown_caches`), registered as the submodule `kv_cache`;
  - runs the prompt into it (`prefill`) and then one token per row (`decode_step`: no input checks, no host
    sync, static shapes, so `torch.compile` compiles it once per shape);
  - recomputes everything without a cache (`logits_without_cache`, the bert4keras way).
Generation also reads `config.vocab_size`, `config.eos_token_id`, `config.pad_token_id`,
`default_attention_mask`, `max_length()` and `position_offset()`.

Shapes: B inputs, N = B x beams (or samples) rows, n prompt length, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..nn.kv_cache import KVCache

__all__ = ["DecodingModel", "DecodingPrompt", "CachedDecodingMixin", "check_decoding_positions", "left_align"]


def left_align(mask: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Move padding to the front of each row (stable): mask [B, n] and every [B, n] tensor, same permutation."""
    order = mask.long().argsort(dim=1, stable=True)                                  # pads (0) first
    return tuple(t.gather(1, order) for t in (mask, *tensors))


@dataclass
class DecodingPrompt:
    """A validated prompt: `rows` are batch-first tensors [B, ...] (the engine repeats each row for its beams
    or samples, copies of one input adjacent);
    `start_id` opens the output (T5's decoder start token; None: the prompt itself leads); `decoder_len`
    tokens enter the decoder before the first generated one, so a run needs decoder_len + max_new_tokens
    cache slots; `extra` holds Python settings of the model (e.g. whether steps carry segment ids)."""
    rows: dict[str, Tensor]
    start_id: int | None
    decoder_len: int
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class DecodingModel(Protocol):
    """What `kexue.generation.generate` needs from a model (see the module docstring)."""

    config: Any

    def default_attention_mask(self, input_ids: Tensor) -> Tensor | None: ...

    def max_length(self) -> int | None: ...

    def position_offset(self) -> int: ...

    def prepare_decoding(self, input_ids: Tensor, attention_mask: Tensor, segment_ids: Tensor | None = None, *,
                         max_new_tokens: int, new_segment: int | None = None,
                         decoder_start_id: int | None = None) -> DecodingPrompt: ...

    def cache_nbytes(self, batch_size: int, max_len: int) -> int: ...

    def setup_caches(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache: ...

    def caches_are_enabled(self) -> bool: ...

    def reset_caches(self) -> None: ...

    def reorder_caches(self, index: Tensor) -> None: ...

    def prefill(self, rows: dict[str, Tensor], output_ids: Tensor, extra: dict[str, Any]) -> Tensor: ...

    def decode_step(self, tokens: Tensor) -> Tensor: ...

    def logits_without_cache(self, rows: dict[str, Tensor], output_ids: Tensor, extra: dict[str, Any]) -> Tensor: ...


def check_decoding_positions(model, prompt_len: int, max_new_tokens: int) -> int:
    """Prompt + generated tokens must fit the model's position table (learned or rotary), if it has one.

    The last generated token is never fed back, so a run uses prompt_len + max_new_tokens - 1 positions,
    starting at `model.position_offset()`. Returns that offset."""
    offset = model.position_offset()
    max_length = model.max_length()
    if max_length is None:                              # relative / T5: no table to overflow
        return offset
    room = max_length - prompt_len + 1
    if max_new_tokens > room:
        raise ValueError(f"max_new_tokens={max_new_tokens} with a prompt of length {prompt_len} needs "
                         f"{prompt_len + max_new_tokens - 1} positions (from {offset}), but the model's position "
                         f"table holds max_position={max_length + offset}; use max_new_tokens <= {max(room, 0)}"
                         + (" or a shorter prompt" if room < 1 else ""))
    return offset


class CachedDecodingMixin:
    """The cache half of the protocol, shared by every family: one `KVCache` registered as `self.kv_cache`
    (moves with `.to()`, never saved). The family supplies `make_cache`, `prepare_decoding`, `prefill`,
    `decode_step` and `logits_without_cache`."""

    def make_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        """The family's cache layout (layers, heads, head_dim, cross-attention): every family overrides this."""
        raise NotImplementedError(f"{type(self).__name__} uses CachedDecodingMixin but does not define "
                                  "make_cache(batch_size, max_len, dtype), the layout of its KV cache")

    def cache_nbytes(self, batch_size: int, max_len: int) -> int:
        """Bytes `setup_caches(batch_size, max_len)` allocates (checked against free memory before)."""
        probe = self.make_cache(1, 1)
        return KVCache.nbytes(probe.num_layers, batch_size, probe.num_heads, max_len, probe.head_dim, probe.dtype)

    def setup_caches(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        """Allocate `self.kv_cache` (or reset the existing one when it has this shape, dtype and device, so a
        compiled decode step is reused)."""
        cache = self._modules.get("kv_cache")
        p = next(self.parameters())
        if cache is not None and (cache.batch_size, cache.max_len, cache.dtype, cache.device,
                                  cache.k_0.is_inference()) == \
                (batch_size, max_len, dtype or p.dtype, p.device, torch.is_inference_mode_enabled()):
            cache.reset()
        else:
            self.kv_cache = None                        # free the old buffers before allocating new ones
            self.kv_cache = self.make_cache(batch_size, max_len, dtype)
        return self.kv_cache

    def caches_are_enabled(self) -> bool:
        return self._modules.get("kv_cache") is not None

    def _cache(self) -> KVCache:
        if not self.caches_are_enabled():
            raise RuntimeError("no KV cache is set up: call model.setup_caches(batch_size, max_len) first")
        return self.kv_cache

    def reset_caches(self) -> None:
        """Forget every cached token (buffers stay allocated)."""
        self._cache().reset()

    def reorder_caches(self, index: Tensor) -> None:
        """Row b of the cache becomes old row index[b] (beam search)."""
        self._cache().reorder(index)

    def teardown_caches(self) -> None:
        """Free the cache buffers."""
        self.kv_cache = None

    def generate(self, input_ids: Tensor, **kwargs: Any):
        """Convenience wrapper for `kexue.generation.generate(self, input_ids, ...)` -> GenerationOutput."""
        from ..generation import generate
        return generate(self, input_ids, **kwargs)
