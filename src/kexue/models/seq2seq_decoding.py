"""The decoding protocol (`models/decoding.py`) for encoder-decoders (T5): the encoder runs once on the
prompt (before rows are expanded to beams), the decoder starts from `decoder_start_token_id`, and the cache
keeps the encoder output, its mask and every layer's cross-attention K/V (`KVCache.set_encoder` / `set_cross`).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from .decoding import CachedDecodingMixin, DecodingPrompt

__all__ = ["EncoderDecoderDecoding"]


class EncoderDecoderDecoding(CachedDecodingMixin):
    """`prepare_decoding` / `prefill` / `decode_step` / `logits_without_cache` over `encode` and `decode`."""

    def max_length(self) -> int | None:
        """No position table bounds the decoder (relative position bias)."""
        return None

    def position_offset(self) -> int:
        return 0

    def prepare_decoding(self, input_ids: Tensor, attention_mask: Tensor, segment_ids: Tensor | None = None, *,
                         max_new_tokens: int, new_segment: int | None = None,
                         decoder_start_id: int | None = None) -> DecodingPrompt:
        """Encode the prompt once -> rows encoder_out [B, n, C] and encoder_mask [B, n]."""
        from .._validate import check_int
        for name, value in (("segment_ids", segment_ids), ("new_segment", new_segment)):
            if value is not None:
                raise ValueError(f"{name} is not used by an encoder-decoder; leave it unset")
        start = self.config.decoder_start_token_id if decoder_start_id is None else decoder_start_id
        if start is None:
            raise ValueError("encoder-decoder generation needs decoder_start_id (the config has no "
                             "decoder_start_token_id)")
        start = check_int("decoder_start_id", start, 0, self.config.vocab_size - 1)
        enc = self.encode(input_ids, attention_mask)                                   # [B, n, C]
        return DecodingPrompt({"encoder_out": enc, "encoder_mask": attention_mask}, start_id=start, decoder_len=1)

    def prefill(self, rows: dict[str, Tensor], output_ids: Tensor, extra: dict[str, Any]) -> Tensor:
        """Run the start token(s) output_ids [N, t] into the cache -> logits [N, V]."""
        cache = self._cache()
        cache.set_encoder(rows["encoder_out"], rows["encoder_mask"])
        return self.decode(output_ids, cache.encoder_out, cache.encoder_mask, cache=cache).logits[:, -1]

    def decode_step(self, tokens: Tensor) -> Tensor:
        """tokens [N, 1] -> logits [N, V] (cross-attention K/V come from the cache)."""
        cache = self.kv_cache
        return self.decode(tokens, cache.encoder_out, cache.encoder_mask, cache=cache).logits[:, -1]

    def logits_without_cache(self, rows: dict[str, Tensor], output_ids: Tensor, extra: dict[str, Any]) -> Tensor:
        return self.decode(output_ids, rows["encoder_out"], rows["encoder_mask"]).logits[:, -1]
