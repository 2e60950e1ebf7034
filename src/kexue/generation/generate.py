"""Model-level generation with a pre-allocated KV cache: `lm` decoders (GPT, GPT-2, BERT/NEZHA with
application="lm"), UniLM seq2seq (https://kexue.fm/archives/6933) and T5 encoder-decoders.

The step function plugs the model into `AutoRegressiveDecoder`: the prompt is left-aligned (padding moved to
the front, position ids = cumsum(mask) - 1) and run once into a static cache; every later step feeds one token
per row. Beams reorder the cache in place; T5's encoder runs once and its cross-attention K/V stay in the
cache. `use_cache=False` recomputes the whole sequence every step (the bert4keras way), for checks and timing.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .._cpu import warn_if_bf16_weights_on_cpu
from .._validate import check_bool, check_float, check_int
from .decoder import AutoRegressiveDecoder
from .limits import (check_fits_memory, check_length_penalty, check_positions, check_token_id,
                     check_token_ids)

__all__ = ["generate", "left_align"]


def left_align(mask: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Move padding to the front of each row (stable): mask [B, n] and every [B, n] tensor, same permutation."""
    order = mask.long().argsort(dim=1, stable=True)                                  # pads (0) first
    return tuple(t.gather(1, order) for t in (mask, *tensors))


class _ModelDecoder(AutoRegressiveDecoder):
    """predict() for one model kind; rows of `inputs` are already expanded to beams / samples."""

    def __init__(self, model, kind: str, use_cache: bool, new_segment: int | None, cache_len: int,
                 pos_offset: int = 0, **kw):
        super().__init__(**kw)
        self.model, self.kind, self.use_cache = model, kind, use_cache
        self.new_segment, self.cache_len, self.pos_offset = new_segment, cache_len, pos_offset

    def predict(self, inputs, output_ids, states):
        if self.kind == "t5":
            return self._predict_t5(inputs, output_ids, states)
        ids, mask, seg = inputs                                                     # [N, n] each (seg may be empty)
        seg = seg if seg.numel() else None
        N, t = output_ids.shape
        new_seg = None if seg is None else self._new_segments(seg, N)               # [N, 1]
        if not self.use_cache:                                                      # recompute everything
            full = torch.cat([ids, output_ids], 1)
            full_mask = torch.cat([mask, torch.ones_like(output_ids, dtype=mask.dtype)], 1)
            pos = (full_mask.long().cumsum(1) - 1).clamp_min(0) + self.pos_offset
            full_seg = None if seg is None else torch.cat([seg, new_seg.expand(N, t)], 1)
            out = self.model(full, segment_ids=full_seg, attention_mask=full_mask, position_ids=pos)
            return out.logits[:, -1]
        if states is None:                                                          # prefill the prompt
            cache = self.model.make_cache(N, self.cache_len)
            pos = (mask.long().cumsum(1) - 1).clamp_min(0) + self.pos_offset        # [N, n]
            out = self.model(ids, segment_ids=seg, attention_mask=mask, position_ids=pos, cache=cache,
                             logits_to_keep=1)
            return out.logits[:, -1], (cache, pos[:, -1:] + 1)
        cache, pos = states
        last = output_ids[:, -1:]                                                   # [N, 1], always real tokens
        out = self.model(last, segment_ids=new_seg, attention_mask=torch.ones_like(last), position_ids=pos,
                         cache=cache)
        return out.logits[:, -1], (cache, pos + 1)

    def _new_segments(self, seg: Tensor, N: int) -> Tensor:
        """Generated tokens' segment ids [N, 1]: `new_segment`, or the prompt's last segment (HF's rule)."""
        if self.new_segment is not None:
            return torch.full((N, 1), self.new_segment, dtype=seg.dtype, device=seg.device)
        return seg[:, -1:]

    def _predict_t5(self, inputs, output_ids, states):
        enc, mask = inputs                                                          # [N, n, C], [N, n]
        if not self.use_cache:
            return self.model.decode(output_ids, enc, mask).logits[:, -1]
        if states is None:
            cache = self.model.make_cache(output_ids.shape[0], self.cache_len)
            return self.model.decode(output_ids, enc, mask, cache=cache).logits[:, -1], cache
        return self.model.decode(output_ids[:, -1:], enc, mask, cache=states).logits[:, -1], states


def _kind(model) -> str:
    if hasattr(model, "encode") and hasattr(model, "decode"):
        return "t5"
    app = getattr(model, "application", None)
    if app not in ("lm", "unilm"):
        raise ValueError(f"generate needs a model built with application='lm' or 'unilm' (or an encoder-decoder), "
                         f"got application={app!r}")
    if getattr(model, "mlm", True) is None:
        raise ValueError("generate needs a model with a language-model head: build it with with_mlm=True "
                         "(its forward returns no logits)")
    return app


def _check_prompt(input_ids, attention_mask, V: int, model=None) -> Tensor:
    """input_ids [B, n] integer ids in [0, V); attention_mask [B, n] of 0/1 with a real token in every row.
    Returns the mask on input_ids' device; when none is given, the model's own default (encoder-side and UniLM
    models mask the config's pad id, as their forward does; causal LMs see every token)."""
    if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.numel() == 0:
        raise ValueError(f"input_ids must be a non-empty [B, n] tensor, got {getattr(input_ids, 'shape', input_ids)}")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
    lo, hi = int(input_ids.min()), int(input_ids.max())
    if lo < 0 or hi >= V:
        raise ValueError(f"input_ids contain ids in [{lo}, {hi}], outside the vocabulary [0, {V})")
    if attention_mask is None:
        default = getattr(model, "default_attention_mask", None)
        attention_mask = default(input_ids) if default is not None else None
        if attention_mask is None:
            return torch.ones_like(input_ids)
    if not isinstance(attention_mask, Tensor):
        raise TypeError(f"attention_mask must be a tensor [B, n] or None, got {type(attention_mask).__name__}")
    mask = attention_mask.to(input_ids.device)
    if tuple(mask.shape) != tuple(input_ids.shape):
        raise ValueError(f"attention_mask has shape {tuple(mask.shape)}; expected {tuple(input_ids.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        bad = mask[(mask != 0) & (mask != 1)][:4].tolist()
        raise ValueError(f"attention_mask must hold 0 (padding) or 1 (real token), got values such as {bad}")
    empty = (mask == 0).all(1)
    if bool(empty.any()):
        raise ValueError(f"attention_mask rows {empty.nonzero().flatten().tolist()} have no real token: an empty "
                         "prompt has nothing to condition on (give each row at least one token, e.g. a BOS)")
    return mask.long()


def _segment_limit(model) -> int | None:
    """Segment ids the model can embed: its segment table, or the word table for GPT-style models."""
    emb = getattr(model, "embeddings", None)
    if emb is None:
        return None
    if getattr(emb, "segment_via_word", False):
        return model.config.vocab_size
    table = getattr(emb, "segment", None)
    return None if table is None else table.num_embeddings


def _check_segments(segment_ids, shape, limit: int | None) -> None:
    if not isinstance(segment_ids, Tensor) or segment_ids.is_floating_point() or segment_ids.dtype == torch.bool:
        raise TypeError(f"segment_ids must be an integer tensor [B, n], got "
                        f"{getattr(segment_ids, 'dtype', type(segment_ids).__name__)}")
    if tuple(segment_ids.shape) != tuple(shape):
        raise ValueError(f"segment_ids has shape {tuple(segment_ids.shape)}; expected {tuple(shape)}")
    lo, hi = int(segment_ids.min()), int(segment_ids.max())
    if lo < 0 or (limit is not None and hi >= limit):
        raise ValueError(f"segment_ids contain ids in [{lo}, {hi}], outside [0, {limit})")


def _cache_bytes_per_token(model) -> int:
    """Bytes one cached position of one row takes: K and V of every decoder layer, plus its mask entries."""
    cfg = model.config
    layers = (getattr(cfg, "num_decoder_layers", 0) or cfg.num_layers) if hasattr(model, "decode") else cfg.num_layers
    head_dim = cfg.head_dim or cfg.hidden_size // cfg.num_heads
    itemsize = next(model.parameters()).element_size()
    return 2 * layers * cfg.num_heads * head_dim * itemsize + 9


def generate(model, input_ids: Tensor, segment_ids: Tensor | None = None, attention_mask: Tensor | None = None, *,
             max_new_tokens: int = 32, min_new_tokens: int = 1, end_id: int | None = -1,
             decoder_start_id: int | None = None, num_beams: int = 1, do_sample: bool = False, num_samples: int = 1,
             topk: int | None = None, topp: float | None = None, temperature: float = 1.0,
             length_penalty: float = 0.0, repetition_penalty: float = 1.0, banned_ids: Sequence[int] | None = None,
             allowed_next: Callable | None = None, callback: Callable | None = None, min_ends: int = 1,
             new_segment: int | None = None, seed: int | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True, return_scores: bool = False):
    """Generate from a kexue model (https://kexue.fm/archives/6933).

    input_ids [B, n] prompt (any padding side, given by attention_mask [B, n], 1 = real); segment_ids [B, n]
    (UniLM: source 0; generated tokens get 1, or `new_segment`; lm models: the prompt's last segment).
    Greedy by default; `num_beams > 1` beam search; `do_sample` draws `num_samples` per input with top-k/top-p.
    end_id -1 means the config's eos_token_id; decoder_start_id (T5) defaults to the config's.
    Returns generated ids without the prompt: a list of B LongTensors (sampling: B lists of num_samples),
    plus scores (sum of token log-probs) with return_scores.
    """
    kind = _kind(model)
    warn_if_bf16_weights_on_cpu(model, "generate (bf16 weights)")
    cfg = model.config
    V = cfg.vocab_size
    mask = _check_prompt(input_ids, attention_mask, V, model)
    B, n = input_ids.shape
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1)
    min_new_tokens = check_int("min_new_tokens", min_new_tokens, 0, max_new_tokens)
    num_beams = check_int("num_beams", num_beams, 1)
    num_samples = check_int("num_samples", num_samples, 1)
    do_sample, use_cache = check_bool("do_sample", do_sample), check_bool("use_cache", use_cache)
    check_bool("return_scores", return_scores)
    if num_beams > 1 and do_sample:
        raise ValueError(f"choose beam search (num_beams={num_beams}) or sampling (do_sample=True), not both")
    topk = None if topk is None else check_int("topk", topk, 1)
    topp = None if topp is None else check_float("topp", topp, 0.0, 1.0, low_open=True)
    temperature = check_float("temperature", temperature, 0.0, low_open=True)
    length_penalty = check_length_penalty(length_penalty, max_new_tokens)
    repetition_penalty = check_float("repetition_penalty", repetition_penalty, 0.0, low_open=True)
    banned_ids = check_token_ids("banned_ids", banned_ids, V)
    min_ends = check_int("min_ends", min_ends, 1)
    if seed is not None:
        check_int("seed", seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    for name, fn in (("allowed_next", allowed_next), ("callback", callback)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be a callable or None, got {fn!r} ({type(fn).__name__})")
    if end_id == -1:
        end_id = check_token_id("end_id (the config's eos_token_id)", getattr(cfg, "eos_token_id", None), V)
    else:
        end_id = check_token_id("end_id", end_id, V)
    if kind == "unilm" and segment_ids is None:
        raise ValueError("a UniLM model needs segment_ids for the source (0) part of input_ids")
    seg_limit = _segment_limit(model)
    if segment_ids is not None:
        _check_segments(segment_ids, input_ids.shape, seg_limit)
    if kind == "unilm" and new_segment is None:
        if seg_limit is not None and seg_limit < 2:
            raise ValueError(f"a UniLM model gives generated tokens segment 1 (new_segment), but this model embeds "
                             f"only segments [0, {seg_limit}); pass new_segment or use type_vocab_size >= 2")
        new_segment = 1
    if new_segment is not None:
        new_segment = check_int("new_segment", new_segment, 0, None if seg_limit is None else seg_limit - 1)
    rows = B * (num_beams if num_beams > 1 else num_samples if do_sample else 1)
    if kind == "t5":
        start = getattr(cfg, "decoder_start_token_id", None) if decoder_start_id is None else decoder_start_id
        if start is None:
            raise ValueError("T5 generation needs decoder_start_id (the config has no decoder_start_token_id)")
        start = check_token_id("decoder_start_id", start, V, allow_none=False)
        cache_len, offset = max_new_tokens + 1, 0
    else:
        start = None
        offset = check_positions(model, n, max_new_tokens)          # before any cache exists
        cache_len = n + max_new_tokens
    if use_cache:
        check_fits_memory(f"max_new_tokens={max_new_tokens} with a prompt of length {n} over {rows} rows "
                          f"(batch {B} x num_beams/num_samples)", rows * cache_len * _cache_bytes_per_token(model),
                          input_ids.device)
    with torch.inference_mode():
        if kind == "t5":
            inputs = [model.encode(input_ids, mask), mask]                          # encoder runs once, [B, n, C]
        else:
            seg = segment_ids if segment_ids is not None else input_ids.new_zeros(input_ids.shape[0], 0)
            if segment_ids is not None:
                mask, ids, seg = left_align(mask, input_ids, seg.to(input_ids.device))
            else:
                mask, ids = left_align(mask, input_ids)
            inputs = [ids, mask, seg]
        dec = _ModelDecoder(model, kind, use_cache, new_segment, cache_len, pos_offset=offset, start_id=start,
                            end_id=end_id, maxlen=max_new_tokens, minlen=min_new_tokens, min_ends=min_ends)
        common = dict(banned_ids=banned_ids, repetition_penalty=repetition_penalty, allowed_next=allowed_next,
                      return_scores=return_scores)
        if do_sample:
            return dec.random_sample(inputs, num_samples, topk, topp, temperature=temperature, seed=seed,
                                     generator=generator, callback=callback, **common)
        if num_beams > 1:
            return dec.beam_search(inputs, num_beams, temperature=temperature, length_penalty=length_penalty,
                                   **common)
        return dec.greedy(inputs, callback=callback, **common)
