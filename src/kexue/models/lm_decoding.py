"""The decoding protocol (`models/decoding.py`) for the single-stack Transformer: causal LMs (GPT, GPT-2,
BERT/NEZHA/RoFormer with application="lm") and UniLM seq2seq (https://kexue.fm/archives/6933).

The prompt is left-aligned (padding moved to the front; position ids = cumsum(mask) - 1 + offset) and run once
into the static cache; every later step feeds one real token per row at `cache.next_position`, with segment
`cache.next_segment` (UniLM: 1, or `new_segment`; other models: the prompt's last segment, as transformers;
`new_segment` may also be a tensor [B], one id per row, e.g. a dialogue's speaker flip, https://kexue.fm/archives/7718).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .decoding import CachedDecodingMixin, DecodingPrompt, check_decoding_positions, left_align

__all__ = ["TransformerDecoding"]


class TransformerDecoding(CachedDecodingMixin):
    """`prepare_decoding` / `prefill` / `decode_step` / `logits_without_cache` of `Transformer`."""

    def _segment_limit(self) -> int | None:
        """Segment ids the model can embed: its segment table, or the word table for GPT-style models."""
        if self.embeddings.segment_via_word:
            return self.config.vocab_size
        table = self.embeddings.segment
        return None if table is None else table.num_embeddings

    def prepare_decoding(self, input_ids: Tensor, attention_mask: Tensor, segment_ids: Tensor | None = None, *,
                         max_new_tokens: int, new_segment: int | Tensor | None = None,
                         decoder_start_id: int | None = None) -> DecodingPrompt:
        """Checks what only this model knows, then left-aligns the prompt (rows: input_ids, attention_mask,
        segment_ids and next_segment [B, 1] when segments are used)."""
        from .._validate import check_int
        if self.application not in ("lm", "unilm"):
            raise ValueError(f"generate needs a model built with application='lm' or 'unilm' (or an "
                             f"encoder-decoder), got application={self.application!r}")
        if self.mlm is None:
            raise ValueError("generate needs a model with a language-model head: build it with with_mlm=True "
                             "(its forward returns no logits)")
        if decoder_start_id is not None:
            raise ValueError(f"decoder_start_id={decoder_start_id!r} is for encoder-decoders; this model "
                             "continues its prompt (leave decoder_start_id unset)")
        unilm = self.application == "unilm"
        if unilm and segment_ids is None:
            raise ValueError("a UniLM model needs segment_ids for the source (0) part of input_ids")
        limit = self._segment_limit()
        if segment_ids is not None:
            _check_segments(segment_ids, input_ids.shape, limit)
        if unilm and new_segment is None:
            if limit is not None and limit < 2:
                raise ValueError(f"a UniLM model gives generated tokens segment 1 (new_segment), but this model "
                                 f"embeds only segments [0, {limit}); pass new_segment or use type_vocab_size >= 2")
            new_segment = 1
        if isinstance(new_segment, Tensor):                                # per row, e.g. a dialogue's speaker flip
            if segment_ids is None:
                raise ValueError("new_segment given per row needs segment_ids for the prompt (a model fed no "
                                 "segments has none to continue)")
            _check_segments(new_segment, input_ids.shape[:1], limit, "new_segment")
        elif new_segment is not None:
            new_segment = check_int("new_segment", new_segment, 0, None if limit is None else limit - 1)
        offset = check_decoding_positions(self, input_ids.shape[1], max_new_tokens)   # before any cache exists
        rows = {}
        if segment_ids is not None:
            seg = segment_ids.to(input_ids.device).long()
            mask, ids, seg = left_align(attention_mask, input_ids, seg)
            nxt = (seg[:, -1:] if new_segment is None else torch.full_like(seg[:, -1:], new_segment)
                   if not isinstance(new_segment, Tensor) else new_segment.to(seg.device).long()[:, None])
            rows.update(segment_ids=seg, next_segment=nxt)
        else:
            mask, ids = left_align(attention_mask, input_ids)
        rows.update(input_ids=ids, attention_mask=mask)
        return DecodingPrompt(rows, start_id=None, decoder_len=input_ids.shape[1], extra={"offset": offset})

    def _positions(self, mask: Tensor, offset: int) -> Tensor:
        return (mask.long().cumsum(1) - 1).clamp_min(0) + offset                       # [N, n]

    def prefill(self, rows: dict[str, Tensor], output_ids: Tensor, extra: dict[str, Any]) -> Tensor:
        """Run the prompt into `self.kv_cache` (checked like any forward) -> logits of its last token [N, V]."""
        cache = self._cache()
        mask, seg = rows["attention_mask"], rows.get("segment_ids")
        pos = self._positions(mask, extra["offset"])
        out = self(rows["input_ids"], segment_ids=seg, attention_mask=mask, position_ids=pos, cache=cache,
                   logits_to_keep=1)
        cache.next_position.copy_(pos[:, -1:] + 1)
        cache.with_segments = seg is not None
        if seg is not None:
            cache.next_segment.copy_(rows["next_segment"])
        return out.logits[:, -1]

    def decode_step(self, tokens: Tensor) -> Tensor:
        """tokens [N, 1] (generated, so real and in the vocabulary) -> logits [N, V]. No checks, no host sync:
        the shapes are those of the static cache, so torch.compile compiles this once."""
        cache = self.kv_cache
        pos = cache.next_position                                                    # [N, 1]
        seg = cache.next_segment if cache.with_segments else None
        x = self.apply_embeddings(tokens, seg, pos)                                  # [N, 1, C]
        bias, empty = self.attention_bias(None, seg, batch_size=tokens.shape[0], length=1, device=tokens.device,
                                          cache=cache)
        x, _, _ = self.apply_main_layers(x, attention_bias=bias, empty_rows=empty, positions=pos, cache=cache)
        cache.advance(1)
        cache.next_position.add_(1)
        return self.apply_final_layers(x).logits[:, -1]

    def logits_without_cache(self, rows: dict[str, Tensor], output_ids: Tensor, extra: dict[str, Any]) -> Tensor:
        """Recompute prompt + output_ids [N, t] in full (bert4keras) -> logits of the last token [N, V]."""
        ids, mask, seg = rows["input_ids"], rows["attention_mask"], rows.get("segment_ids")
        N, t = output_ids.shape
        full = torch.cat([ids, output_ids], 1)
        full_mask = torch.cat([mask, torch.ones_like(output_ids, dtype=mask.dtype)], 1)
        full_seg = None if seg is None else torch.cat([seg, rows["next_segment"].expand(N, t)], 1)
        out = self(full, segment_ids=full_seg, attention_mask=full_mask,
                   position_ids=self._positions(full_mask, extra["offset"]), logits_to_keep=1)
        return out.logits[:, -1]


def _check_segments(segment_ids, shape, limit: int | None, name: str = "segment_ids") -> None:
    if not isinstance(segment_ids, Tensor) or segment_ids.is_floating_point() or segment_ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor {'[B]' if len(shape) == 1 else '[B, n]'}, got "
                        f"{getattr(segment_ids, 'dtype', type(segment_ids).__name__)}")
    if tuple(segment_ids.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(segment_ids.shape)}; expected {tuple(shape)}")
    lo, hi = int(segment_ids.min()), int(segment_ids.max())
    if lo < 0 or (limit is not None and hi >= limit):
        raise ValueError(f"{name} contain ids in [{lo}, {hi}], outside [0, {limit})")
