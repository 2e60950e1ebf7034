"""Model-level generation over the decoding protocol (`kexue.models.decoding`): causal LMs, UniLM seq2seq
(https://kexue.fm/archives/6933) and encoder-decoders alike, without knowing which.

The model prepares the prompt once (its own checks, left alignment, T5's encoder pass), owns a static KV
cache, prefills it and then runs `decode_step` once per token; beams reorder the cache in place.
`use_cache=False` recomputes the whole sequence every step (the bert4keras way), for checks and timing.
`compile=True` compiles the decode step with torch.compile (static shapes: once per batch x cache size).
Every check runs before the loop, so the compiled step has no graph break.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .._cpu import warn_if_bf16_weights_on_cpu
from .._validate import check_bool, check_float, check_int
from ..models.decoding import DecodingModel, left_align
from .decoder import AutoRegressiveDecoder
from .limits import check_fits_memory, check_length_penalty, check_token_id, check_token_ids
from .output import GenerationOutput

__all__ = ["generate", "GenerationOutput", "left_align"]


class _ModelDecoder(AutoRegressiveDecoder):
    """predict() over the protocol; rows of `inputs` are already expanded to beams / samples."""

    def __init__(self, model, keys: list[str], extra: dict, use_cache: bool, cache_len: int, step: Callable, **kw):
        super().__init__(**kw)
        self.model, self.keys, self.extra, self.use_cache = model, keys, extra, use_cache
        self.cache_len, self.step = cache_len, step

    def predict(self, inputs, output_ids, states):
        rows = dict(zip(self.keys, inputs))
        if not self.use_cache:
            return self.model.logits_without_cache(rows, output_ids, self.extra)
        if states is None:
            cache = self.model.setup_caches(output_ids.shape[0], self.cache_len)
            return self.model.prefill(rows, output_ids, self.extra), cache
        return self.step(output_ids[:, -1:]), states                     # the last token is always real


def _check_prompt(input_ids, attention_mask, V: int, model) -> Tensor:
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
        attention_mask = model.default_attention_mask(input_ids)
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


def _end_id(end_id, stop_at_eos: bool, cfg, V: int) -> int | None:
    """end_id None: the config's eos_token_id (none in the config: run to max_new_tokens)."""
    if not stop_at_eos:
        if end_id is not None:
            raise ValueError(f"end_id={end_id!r} with stop_at_eos=False: pass one of them (stop_at_eos=False "
                             "runs every row to max_new_tokens)")
        return None
    if end_id is None:
        return check_token_id("end_id (the config's eos_token_id)", getattr(cfg, "eos_token_id", None), V)
    if end_id == -1 and isinstance(end_id, int) and not isinstance(end_id, bool):
        raise ValueError("end_id=-1 no longer means the config's eos id: pass end_id=None for the config's, or "
                         f"a token id in [0, {V})")
    return check_token_id("end_id", end_id, V, allow_none=False)


def _step(model, tokens: Tensor) -> Tensor:
    return model.decode_step(tokens)


_compiled_step = torch.compile(_step, dynamic=False, fullgraph=True)


def _decode_step(model, compile: bool) -> Callable:
    """The model's decode step, or its compiled form: one torch.compile'd function for every model (nothing
    is stored on the model, so copies and pickles stay clean); dynamo specialises on the model and on the
    static cache's shapes (one graph per model x batch x cache size; fullgraph: a graph break is an error)."""
    if not compile:
        return model.decode_step
    return lambda tokens: _compiled_step(model, tokens)


def generate(model: DecodingModel, input_ids: Tensor, segment_ids: Tensor | None = None,
             attention_mask: Tensor | None = None, *, max_new_tokens: int = 32, min_new_tokens: int = 1,
             end_id: int | None = None, stop_at_eos: bool = True, decoder_start_id: int | None = None,
             num_beams: int = 1, do_sample: bool = False, num_samples: int = 1, topk: int | None = None,
             topp: float | None = None, temperature: float = 1.0, length_penalty: float = 0.0,
             repetition_penalty: float = 1.0, banned_ids: Sequence[int] | None = None,
             allowed_next: Callable | None = None, callback: Callable | None = None, min_ends: int = 1,
             new_segment: int | Tensor | None = None, seed: int | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True, compile: bool = False) -> GenerationOutput:
    """Generate from a model that implements the decoding protocol (https://kexue.fm/archives/6933).

    input_ids [B, n] prompt (any padding side, given by attention_mask [B, n], 1 = real; without one the
    model's `default_attention_mask`); segment_ids [B, n] (UniLM: source 0; generated tokens get 1, or
    `new_segment`, an int or a tensor [B] of one id per row, e.g. each dialogue row's speaker flip; lm models:
    the prompt's last segment). Greedy by default; `num_beams > 1` beam search
    (the best beam per input); `do_sample` draws `num_samples` per input with top-k / top-p.
    end_id: None means the config's eos_token_id (a config without one runs to max_new_tokens);
    stop_at_eos=False runs every row to max_new_tokens. decoder_start_id (encoder-decoders) defaults to the
    config's. compile=True compiles the decode step (same tokens as eager).
    Returns a `GenerationOutput` (sequences [R, T] padded with the pad id, lengths [R], scores [R]).
    """
    if not isinstance(model, DecodingModel):
        raise TypeError(f"generate needs a model implementing kexue.models.decoding.DecodingModel "
                        f"(setup_caches, prefill, decode_step, ...), got {type(model).__name__}")
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
    compile, stop_at_eos = check_bool("compile", compile), check_bool("stop_at_eos", stop_at_eos)
    if num_beams > 1 and do_sample:
        raise ValueError(f"choose beam search (num_beams={num_beams}) or sampling (do_sample=True), not both")
    if compile and not use_cache:
        raise ValueError("compile=True compiles the cached decode step; it needs use_cache=True")
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
    end_id = _end_id(end_id, stop_at_eos, cfg, V)
    pad = cfg.pad_token_id if getattr(cfg, "pad_token_id", None) is not None else 0
    width = num_beams if num_beams > 1 else num_samples if do_sample else 1
    with torch.inference_mode():
        prompt = model.prepare_decoding(input_ids, mask, segment_ids, max_new_tokens=max_new_tokens,
                                        new_segment=new_segment, decoder_start_id=decoder_start_id)
        cache_len = prompt.decoder_len + max_new_tokens
        if use_cache:
            check_fits_memory(f"max_new_tokens={max_new_tokens} with a prompt of length {n} over {B * width} rows "
                              f"(batch {B} x num_beams/num_samples)", model.cache_nbytes(B * width, cache_len),
                              input_ids.device)
        keys = list(prompt.rows)
        inputs = [prompt.rows[k] for k in keys]
        dec = _ModelDecoder(model, keys, prompt.extra, use_cache, cache_len, _decode_step(model, compile),
                            start_id=prompt.start_id, end_id=end_id, maxlen=max_new_tokens,
                            minlen=min_new_tokens, min_ends=min_ends)
        common = dict(banned_ids=banned_ids, rep_penalty=repetition_penalty, allowed_next=allowed_next)
        if num_beams > 1:
            out = dec._beam_search(inputs, num_beams, None, temperature, length_penalty=length_penalty,
                                   banned_ids=banned_ids, repetition_penalty=repetition_penalty,
                                   allowed_next=allowed_next)
        else:
            if do_sample and generator is None and seed is not None:
                generator = torch.Generator(device=input_ids.device).manual_seed(seed)
            pick = dec._sample_picker(topk, topp, generator) if do_sample else None
            out = dec._sample_loop(inputs, width, None, pick=pick, temperature=temperature if do_sample else 1.0,
                                   callback=callback, **common)
        return GenerationOutput.from_buffer(*out, pad_id=pad)
