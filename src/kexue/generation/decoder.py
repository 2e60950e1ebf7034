"""Autoregressive decoding on a user step function: greedy, beam search and random sampling
(https://kexue.fm/archives/5861; bert4keras `AutoRegressiveDecoder`).

The user supplies `predict(inputs, output_ids, states)`; the engine owns everything else. It is batched:
`inputs` is a list of tensors whose first axis is the batch B; each strategy works on N static rows
(B greedy rows, B*num_beams beams, B*n samples) that always belong to input `row // width`, so `inputs` are
expanded once and never reindexed. Finished rows keep a filler token until every row is done. `states`
(e.g. a KV cache) are reordered for beams by `reorder_states`. Returned sequences hold the generated
tokens only (no start token), including the final end token, as bert4keras does (lists of 1-D tensors;
`kexue.generation.generate` returns one padded `GenerationOutput` instead).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .._validate import check_bool, check_choice, check_float, check_int
from .limits import check_fits_memory, check_length_penalty, check_token_id, check_token_ids
from .logits import (apply_temperature, ban_tokens, repetition_penalty, restrict_tokens, top_k_filter,
                     top_p_filter)

__all__ = ["AutoRegressiveDecoder"]

PredictFn = Callable[[list, Tensor, Any], "Tensor | tuple[Tensor, Any]"]


def _check_callable(name: str, value) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, got {value!r} ({type(value).__name__})")


class AutoRegressiveDecoder:
    """Greedy / beam search / top-k-top-p sampling around one `predict` step (https://kexue.fm/archives/5861).

    Args: start_id (None: start from nothing), end_id (None: run to maxlen), maxlen (max generated tokens),
    minlen (end_id is banned before this many tokens), min_ends (a row ends at its min_ends-th end_id),
    predict (a callable, or override the method), rtype ("logits" or "probas": what predict returns).
    Hooks on every strategy: banned_ids, repetition_penalty (over the generated tokens, not the prompt),
    allowed_next(output_ids [N, t], batch_index [N]) -> bool [N, V]; greedy / sampling also take a streaming
    callback(step, tokens [N], finished [N]).
    """

    def __init__(self, start_id: int | None, end_id: int | None, maxlen: int, minlen: int = 1,
                 min_ends: int = 1, predict: PredictFn | None = None, rtype: str = "logits"):
        self.start_id = check_token_id("start_id", start_id, None)         # < V is checked at the first step
        self.end_id = check_token_id("end_id", end_id, None)
        self.maxlen = check_int("maxlen", maxlen, 1)
        self.minlen = check_int("minlen", minlen, 0, self.maxlen)
        self.min_ends = check_int("min_ends", min_ends, 1)
        self.rtype = check_choice("rtype", rtype, ("logits", "probas"))
        _check_callable("predict", predict)
        self._predict = predict

    # ----------------------------------------------------------------------------------- user hooks
    def predict(self, inputs: list[Tensor], output_ids: Tensor, states: Any):
        """One step: inputs (rows aligned with output_ids [N, t]) -> scores [N, V] (or [N, t', V]),
        optionally with new states as `(scores, states)`."""
        if self._predict is None:
            raise TypeError("AutoRegressiveDecoder needs a step: pass predict=callable or override predict()")
        return self._predict(inputs, output_ids, states)

    def reorder_states(self, states: Any, index: Tensor) -> Any:
        """Gather states along the row axis: objects with `.reorder(index)` (KV caches) in place,
        tensors by indexing, containers recursively."""
        if states is None:
            return None
        if hasattr(states, "reorder"):
            states.reorder(index)
            return states
        if isinstance(states, Tensor):
            return states.index_select(0, index)
        if isinstance(states, (list, tuple)):
            return type(states)(self.reorder_states(s, index) for s in states)
        if isinstance(states, dict):
            return {k: self.reorder_states(v, index) for k, v in states.items()}
        raise TypeError(f"cannot reorder states of type {type(states).__name__}; override reorder_states")

    # ------------------------------------------------------------------------------------ internals
    @staticmethod
    def _as_inputs(inputs) -> list[Tensor]:
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        if not inputs or not all(isinstance(x, Tensor) for x in inputs):
            raise TypeError(f"inputs must be a tensor or a non-empty list of tensors, got {type(inputs).__name__}")
        B = inputs[0].shape[0] if inputs[0].dim() else 0
        if B < 1 or any(x.dim() == 0 or x.shape[0] != B for x in inputs):
            raise ValueError(f"inputs need one shared batch axis B >= 1, got shapes {[tuple(x.shape) for x in inputs]}")
        return inputs

    def _start(self, N: int, device) -> tuple[Tensor, int]:
        """Pre-allocated output buffer [N, off + maxlen]; off = 1 when a start token leads."""
        off = int(self.start_id is not None)
        check_fits_memory(f"maxlen={self.maxlen} over {N} rows", 8 * N * (off + self.maxlen), device)
        buf = torch.zeros(N, off + self.maxlen, dtype=torch.long, device=device)
        if off:
            buf[:, 0] = self.start_id
        return buf, off

    def _scores(self, inputs, output_ids, states, step, batch_index, live, *, temperature=1.0,
                banned_ids=None, rep_penalty=1.0, allowed_next=None):
        """Run predict and apply every constraint: returns processed logits [N, V] (fp32) and states."""
        out = self.predict(inputs, output_ids, states)
        if isinstance(out, tuple) and len(out) != 2:
            raise ValueError(f"predict must return scores or (scores, states), got a tuple of {len(out)} items")
        scores, states = out if isinstance(out, tuple) else (out, states)
        if not isinstance(scores, Tensor):
            raise TypeError(f"predict must return a tensor of scores [N, V], got {type(scores).__name__}")
        if scores.dim() == 3:
            scores = scores[:, -1]
        N = output_ids.shape[0]
        if scores.dim() != 2 or scores.shape[0] != N:
            raise ValueError(f"predict must return scores [N={N}, V] (or [N, t, V]), got {tuple(scores.shape)}")
        if not scores.is_floating_point():
            raise TypeError(f"predict must return floating-point scores, got {scores.dtype}")
        scores = scores.float()
        if self.rtype == "probas":
            if bool(torch.isnan(scores).any() | torch.isinf(scores).any()):
                raise ValueError(f"predict returned NaN or inf probabilities at step {step}")
            scores = scores.clamp_min(0).log()
        elif bool(torch.isnan(scores).any() | torch.isposinf(scores).any()):
            raise ValueError(f"predict returned NaN or +inf scores at step {step} (rtype='logits' allows finite "
                             "values and -inf)")
        if step == 0:
            self._check_vocab(scores.shape[-1])
        if rep_penalty != 1:
            scores = repetition_penalty(scores, output_ids[:, int(self.start_id is not None):], rep_penalty)
        scores = ban_tokens(scores, banned_ids)
        if self.end_id is not None and step + 1 < self.minlen:
            scores = ban_tokens(scores, [self.end_id])
        if allowed_next is not None:
            allowed = allowed_next(output_ids, batch_index)
            if not isinstance(allowed, Tensor) or allowed.dtype != torch.bool or allowed.shape != scores.shape:
                raise ValueError(f"allowed_next must return a bool tensor of shape {tuple(scores.shape)}, got "
                                 f"{getattr(allowed, 'dtype', type(allowed).__name__)} "
                                 f"{tuple(getattr(allowed, 'shape', ()))}")
            scores = restrict_tokens(scores, allowed)
        scores = apply_temperature(scores, temperature)
        dead = torch.isneginf(scores).all(-1) & live
        if dead.any():
            raise ValueError(f"every token is banned for rows {dead.nonzero().flatten().tolist()} at step {step}; "
                             "check banned_ids / allowed_next / minlen")
        return scores, states

    def _check_vocab(self, V: int) -> None:
        """start_id / end_id must be tokens of the vocabulary that predict scores (V = scores.shape[-1])."""
        check_token_id("start_id", self.start_id, V)
        check_token_id("end_id", self.end_id, V)

    @staticmethod
    def _check_hooks(banned_ids, repetition_penalty, allowed_next, callback, return_scores):
        """Validate the hooks shared by every strategy before anything is allocated."""
        banned_ids = check_token_ids("banned_ids", banned_ids, None)
        repetition_penalty = check_float("repetition_penalty", repetition_penalty, 0.0, low_open=True)
        _check_callable("allowed_next", allowed_next)
        _check_callable("callback", callback)
        check_bool("return_scores", return_scores)
        return banned_ids, repetition_penalty

    def _is_end(self, tok: Tensor, end_counts: Tensor) -> tuple[Tensor, Tensor]:
        if self.end_id is None:
            return torch.zeros_like(tok, dtype=torch.bool), end_counts
        end_counts = end_counts + (tok == self.end_id)
        return (tok == self.end_id) & (end_counts >= self.min_ends), end_counts

    def _filler(self) -> int:
        return self.end_id if self.end_id is not None else 0

    # ----------------------------------------------------------------------------------- strategies
    def greedy(self, inputs, states=None, *, banned_ids: Sequence[int] | None = None,
               repetition_penalty: float = 1.0, allowed_next: Callable | None = None,
               callback: Callable | None = None, return_scores: bool = False):
        """Argmax decoding of every input row; returns a list of B 1-D LongTensors (and scores [B])."""
        banned_ids, repetition_penalty = self._check_hooks(banned_ids, repetition_penalty, allowed_next, callback,
                                                           return_scores)
        out = self._sample_loop(inputs, 1, states, pick=None, temperature=1.0, banned_ids=banned_ids,
                                rep_penalty=repetition_penalty, allowed_next=allowed_next, callback=callback)
        return self._as_lists(out, return_scores)

    @staticmethod
    def _as_lists(out: tuple[Tensor, Tensor, Tensor], return_scores: bool):
        """(tokens [N, maxlen], lengths [N], scores [N]) -> bert4keras's list of N 1-D LongTensors."""
        tokens, lengths, scores = out
        seqs = [tokens[i, :int(n)].clone() for i, n in enumerate(lengths.tolist())]
        return (seqs, scores) if return_scores else seqs

    def random_sample(self, inputs, n: int, topk: int | None = None, topp: float | None = None, states=None,
                      temperature: float = 1.0, *, seed: int | None = None, generator: torch.Generator | None = None,
                      banned_ids: Sequence[int] | None = None, repetition_penalty: float = 1.0,
                      allowed_next: Callable | None = None, callback: Callable | None = None,
                      return_scores: bool = False):
        """n samples per input from softmax(logits / T) after top-k then top-p filtering (bert4keras order);
        returns a list of B lists of n 1-D LongTensors (and scores [B, n] under the filtered distribution)."""
        n = check_int("n", n, 1)
        topk = None if topk is None else check_int("topk", topk, 1)
        topp = None if topp is None else check_float("topp", topp, 0.0, 1.0, low_open=True)
        temperature = check_float("temperature", temperature, 0.0, low_open=True)
        banned_ids, repetition_penalty = self._check_hooks(banned_ids, repetition_penalty, allowed_next, callback,
                                                           return_scores)
        if seed is not None:
            check_int("seed", seed)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if generator is None and seed is not None:
            generator = torch.Generator(device=self._as_inputs(inputs)[0].device).manual_seed(seed)

        out = self._sample_loop(inputs, n, states, pick=self._sample_picker(topk, topp, generator),
                                temperature=temperature, banned_ids=banned_ids,
                                rep_penalty=repetition_penalty, allowed_next=allowed_next, callback=callback)
        seqs = self._as_lists(out, False)
        grouped = [seqs[b * n:(b + 1) * n] for b in range(len(seqs) // n)]
        return (grouped, out[2].view(-1, n)) if return_scores else grouped

    def _sample_picker(self, topk, topp, generator):
        def pick(scores: Tensor) -> tuple[Tensor, Tensor]:
            scores = top_p_filter(top_k_filter(scores, topk), topp)                      # [N, V]
            tok = torch.multinomial(scores.softmax(-1), 1, generator=generator)[:, 0]   # [N]
            return tok, scores
        return pick

    def _sample_loop(self, inputs, n, states, *, pick, temperature, banned_ids, rep_penalty, allowed_next,
                     callback):
        """Shared loop of greedy (pick=None) and sampling: N = B*n rows, each picks one token per step.
        Returns (tokens [N, maxlen], lengths [N], scores [N]); tokens after a row's length are filler."""
        inputs = self._as_inputs(inputs)
        if n > 1:
            inputs = [x.repeat_interleave(n, 0) for x in inputs]
        N, device = inputs[0].shape[0], inputs[0].device
        batch_index = torch.arange(N, device=device) // n
        buf, off = self._start(N, device)
        finished = torch.zeros(N, dtype=torch.bool, device=device)
        lengths = torch.full((N,), self.maxlen, dtype=torch.long, device=device)
        end_counts = torch.zeros(N, dtype=torch.long, device=device)
        total = torch.zeros(N, dtype=torch.float32, device=device)
        for step in range(self.maxlen):
            scores, states = self._scores(inputs, buf[:, :off + step], states, step, batch_index, ~finished,
                                          temperature=temperature, banned_ids=banned_ids,
                                          rep_penalty=rep_penalty, allowed_next=allowed_next)
            scores = scores.masked_fill(finished[:, None], 0.0)                          # done rows: any token
            if pick is None:
                tok = scores.argmax(-1)                                                   # [N]
            else:
                tok, scores = pick(scores)
            logp = scores.log_softmax(-1).gather(1, tok[:, None])[:, 0]                   # [N]
            tok = tok.masked_fill(finished, self._filler())
            total += logp.masked_fill(finished, 0.0)
            buf[:, off + step] = tok
            ended, end_counts = self._is_end(tok, end_counts)
            ended &= ~finished
            lengths = torch.where(ended, step + 1, lengths)
            finished |= ended
            if callback is not None:
                callback(step, tok, finished)
            if bool(finished.all()):
                break
        return buf[:, off:], lengths, total

    def beam_search(self, inputs, num_beams: int | None = None, states=None, temperature: float = 1.0, *,
                    length_penalty: float = 0.0, banned_ids: Sequence[int] | None = None,
                    repetition_penalty: float = 1.0, allowed_next: Callable | None = None,
                    return_scores: bool = False, topk: int | None = None):
        """Beam search with cumulative log-probs; beams shrink as hypotheses finish (bert4keras). Finished
        hypotheses are kept and the search stops once the best of them beats every live beam, so with a wide
        enough beam it is exact (the reference drops them). Ranking uses score / length**length_penalty;
        the returned score is the raw sum of log-probs. Returns a list of B LongTensors (and scores [B]).
        num_beams is the beam width (`topk` is bert4keras's name for it, kept as an alias)."""
        if topk is not None and num_beams is not None:
            raise ValueError(f"pass the beam width once: num_beams={num_beams!r} or its bert4keras alias "
                             f"topk={topk!r}, not both")
        if topk is None and num_beams is None:
            raise TypeError("beam_search needs the beam width num_beams (bert4keras: topk)")
        K = check_int("topk", topk, 1) if topk is not None else check_int("num_beams", num_beams, 1)
        check_bool("return_scores", return_scores)
        return self._as_lists(self._beam_search(inputs, K, states, temperature, length_penalty=length_penalty,
                                                banned_ids=banned_ids, repetition_penalty=repetition_penalty,
                                                allowed_next=allowed_next), return_scores)

    def _beam_search(self, inputs, K: int, states, temperature: float, *, length_penalty, banned_ids,
                     repetition_penalty, allowed_next):
        """beam_search's loop -> (best tokens [B, maxlen], lengths [B], raw scores [B])."""
        temperature = check_float("temperature", temperature, 0.0, low_open=True)
        length_penalty = check_length_penalty(length_penalty, self.maxlen)
        banned_ids, repetition_penalty = self._check_hooks(banned_ids, repetition_penalty, allowed_next, None,
                                                           False)
        inputs = [x.repeat_interleave(K, 0) for x in self._as_inputs(inputs)]
        N, device = inputs[0].shape[0], inputs[0].device
        B = N // K
        batch_index = torch.arange(N, device=device) // K
        base = (torch.arange(B, device=device) * K)[:, None]                             # [B, 1]
        slot = torch.arange(K, device=device)[None]                                      # [1, K]
        buf, off = self._start(N, device)
        beam = torch.full((B, K), float("-inf"), device=device)
        beam[:, 0] = 0.0                                                                  # step 0: one live beam
        width = torch.full((B,), K, device=device)
        end_counts = torch.zeros(N, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        best_norm = torch.full((B,), float("-inf"), dtype=torch.float64, device=device)   # ranking key, fp64
        best_raw = torch.full((B,), float("-inf"), device=device)
        best_len = torch.zeros(B, dtype=torch.long, device=device)
        best_ids = torch.zeros(B, self.maxlen, dtype=torch.long, device=device)
        for step in range(self.maxlen):
            live = torch.isfinite(beam).view(N)
            scores, states = self._scores(inputs, buf[:, :off + step], states, step, batch_index, live,
                                          temperature=temperature, banned_ids=banned_ids,
                                          rep_penalty=repetition_penalty, allowed_next=allowed_next)
            V = scores.shape[-1]
            scores = scores.masked_fill(~live[:, None], 0.0)                               # no NaN on dead rows
            cand = (beam.view(N, 1) + scores.log_softmax(-1)).view(B, K * V)             # [B, K*V]
            top, idx = cand.topk(K, dim=1)                                               # [B, K]
            top = top.masked_fill((slot >= width[:, None]) | done[:, None], float("-inf"))
            rows = (base + idx // V).view(N)                                             # parent rows
            tok = (idx % V).view(N)
            buf = buf.index_select(0, rows)
            buf[:, off + step] = tok
            states = self.reorder_states(states, rows)
            ended, end_counts = self._is_end(tok, end_counts.index_select(0, rows))
            ended = ended.view(B, K) & torch.isfinite(top)
            norm = top.double() / float(step + 1) ** length_penalty                      # [B, K]
            m, j = norm.masked_fill(~ended, float("-inf")).max(1)                        # best finished now
            better = m > best_norm
            if bool(better.any()):
                pick = base[:, 0] + j
                best_norm = torch.where(better, m, best_norm)
                best_raw = torch.where(better, top.gather(1, j[:, None])[:, 0], best_raw)
                best_len = torch.where(better, step + 1, best_len)
                best_ids[better] = buf[pick[better], off:]
            width = width - ended.sum(1)
            beam = top.masked_fill(ended, float("-inf"))
            live_best = (beam.double() / float(step + 1) ** length_penalty).max(1).values
            done |= (best_norm >= live_best) | (width <= 0)
            if bool(done.all()):
                break
        # inputs still open at maxlen: their best live beam competes with the finished ones
        live_norm, j = (beam.double() / float(self.maxlen) ** length_penalty).max(1)
        take = (live_norm > best_norm) & ~done
        if bool(take.any()):
            best_raw = torch.where(take, beam.gather(1, j[:, None])[:, 0], best_raw)
            best_len = torch.where(take, self.maxlen, best_len)
            best_ids[take] = buf[(base[:, 0] + j)[take], off:]
        return best_ids, best_len, best_raw
