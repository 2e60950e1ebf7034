"""Synchronous bidirectional beam search over paired L2R / R2L decoders (https://kexue.fm/archives/6877).

Every step scores all k x k pairs (L_i, R_j) at once, marginalises the partner beam (mean or max), and
extends each direction like `AutoRegressiveDecoder.beam_search`: cumulative log-probs, beams shrink as
hypotheses finish, finished ones are kept. L2R ends with EOS, R2L with BOS. The search returns the
direction whose best finished hypothesis is settled (it beats its own live beams) and scores at least as
high as anything the other direction holds; the R2L answer is reversed. When a direction runs out of
live beams, its best finished hypothesis (padded, masked) stays the partner of the other.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

from .._validate import check_choice, check_int
from .limits import check_fits_memory, check_length_penalty, check_token_id, check_token_ids

__all__ = ["make_r2l_targets", "SyncBidirectionalBeamSearch"]

NEG_INF = float("-inf")


def make_r2l_targets(ids: Sequence[int], bos: int, eos: int) -> list[int]:
    """`[BOS] y [EOS]` -> `[EOS] reversed(y) [BOS]`: reverse BEFORE padding so step t aligns in both."""
    ids = list(ids)
    if len(ids) < 2 or ids[0] != bos or ids[-1] != eos:
        raise ValueError(f"ids must be an unpadded L2R target [bos={bos}, ..., eos={eos}], got {ids}")
    return ids[::-1]


class _Side:
    """One direction's beam: k token rows, live scores, the best finished hypothesis."""

    def __init__(self, k: int, start: int, stop: int, max_len: int, pad: int, banned, device):
        self.k, self.stop, self.pad, self.banned = k, stop, pad, list(banned)
        self.ids = torch.full((k, max_len + 1), pad, dtype=torch.long, device=device)
        self.ids[:, 0] = start
        self.scores = torch.full((k,), NEG_INF, device=device)
        self.scores[0] = 0.0                                  # the k start rows are identical: expand one
        self.width = k
        self.best, self.best_ids = NEG_INF, None

    def partners(self, t: int) -> tuple[Tensor, Tensor]:
        """Rows [k, t] offered to the other direction and their weights (live rows, else the finished best)."""
        live = torch.isfinite(self.scores)
        if live.any() or self.best_ids is None:
            return self.ids[:, :t], live
        rows = self.ids[:, :t].clone()
        n = min(t, self.best_ids.numel())
        rows[0, :n] = self.best_ids[:n]
        rows[0, n:] = self.pad
        return rows, torch.arange(self.k, device=rows.device) == 0

    def extend(self, logp: Tensor, t: int, length_penalty: float) -> None:
        """logp [k, V] for each row's next token (position t); keep the top `width` candidates."""
        V = logp.shape[-1]
        logp = logp.clone()
        logp[:, self.banned] = NEG_INF
        cand = (self.scores[:, None] + logp).view(-1)                                    # [k*V]
        top, idx = cand.topk(self.k)
        top[self.width:] = NEG_INF
        self.ids = self.ids[idx // V]
        self.ids[:, t] = idx % V
        ended = (self.ids[:, t] == self.stop) & torch.isfinite(top)
        norm = top.double() / float(t) ** length_penalty                                 # fp64: no overflow
        if ended.any():
            j = int(norm.masked_fill(~ended, NEG_INF).argmax())
            if float(norm[j]) > self.best:
                self.best, self.best_ids = float(norm[j]), self.ids[j, :t + 1].clone()
        self.width -= int(ended.sum())
        self.scores = top.masked_fill(ended, NEG_INF)
        self.live_best = float((self.scores.double() / float(t) ** length_penalty).max())

    def settled(self) -> bool:
        return self.best_ids is not None and self.best >= self.live_best

    def overall(self) -> float:
        return max(self.best, self.live_best)

    def final(self, t: int) -> tuple[float, Tensor]:
        """Best of finished and live rows after the last step."""
        j = int(self.scores.argmax())
        if self.best_ids is None or self.live_best > self.best:
            return self.live_best, self.ids[j, :t + 1]
        return self.best, self.best_ids


class SyncBidirectionalBeamSearch:
    """Joint k x k beam search of a model with `encode(src) -> state` (rows gathered by
    `state.index_select`) and `step(state, l2r [N, t], r2l [N, t]) -> (probs_l2r, probs_r2l)` [N, V]."""

    def __init__(self, model, bos_id: int, eos_id: int, beam_size: int = 3, max_len: int = 64,
                 banned_l2r: Sequence[int] | None = None, banned_r2l: Sequence[int] | None = None,
                 partner_reduce: Literal["mean", "max"] = "mean", length_penalty: float = 0.0,
                 pad_id: int = 0):
        beam_size, max_len = check_int("beam_size", beam_size, 1), check_int("max_len", max_len, 1)
        check_choice("partner_reduce", partner_reduce, ("mean", "max"))
        length_penalty = check_length_penalty(length_penalty, max_len)
        bos_id, eos_id, pad_id = (check_token_id(n, v, None, allow_none=False)        # < V: checked at step 1
                                  for n, v in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)))
        if bos_id == eos_id:
            raise ValueError(f"bos_id and eos_id must differ (L2R ends with eos, R2L with bos), got {bos_id}")
        self.model, self.bos, self.eos, self.pad = model, bos_id, eos_id, pad_id
        self.k, self.max_len, self.reduce, self.length_penalty = beam_size, max_len, partner_reduce, length_penalty
        # L2R never emits PAD or BOS; R2L never emits PAD or EOS (its terminator is BOS)
        self.banned_l2r = [pad_id, bos_id] if banned_l2r is None else check_token_ids("banned_l2r", banned_l2r, None)
        self.banned_r2l = [pad_id, eos_id] if banned_r2l is None else check_token_ids("banned_r2l", banned_r2l, None)

    def _check_step(self, p_l: Tensor, p_r: Tensor, n: int) -> int:
        """Both directions' probabilities [n, V], finite and >= 0; the special / banned ids inside V."""
        for name, p in (("l2r", p_l), ("r2l", p_r)):
            if not isinstance(p, Tensor) or p.dim() != 2 or p.shape[0] != n or not p.is_floating_point():
                raise ValueError(f"model.step must return float probabilities [{n}, V] for {name}, got "
                                 f"{getattr(p, 'dtype', type(p).__name__)} {tuple(getattr(p, 'shape', ()))}")
            if not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
                raise ValueError(f"model.step returned NaN, inf or negative {name} probabilities")
        if p_l.shape != p_r.shape:
            raise ValueError(f"model.step returned l2r {tuple(p_l.shape)} and r2l {tuple(p_r.shape)} probabilities")
        V = p_l.shape[-1]
        for name, v in (("bos_id", self.bos), ("eos_id", self.eos), ("pad_id", self.pad)):
            check_token_id(name, v, V)
        check_token_ids("banned_l2r", self.banned_l2r, V)
        check_token_ids("banned_r2l", self.banned_r2l, V)
        return V

    def _marginal(self, p: Tensor, weight: Tensor, dim: int) -> Tensor:
        """p [k, k, V] over pairs (i, j); average (or max) over the partner axis `dim` with weights [k]."""
        shape = [1, 1, 1]
        shape[dim] = -1
        w = weight.view(shape)
        if self.reduce == "max":
            return p.masked_fill(~w, 0.0).amax(dim)
        return (p * w).sum(dim) / w.sum().clamp_min(1)

    def _strip(self, ids: Tensor, reverse: bool) -> list[int]:
        out = ids.tolist()[::-1] if reverse else ids.tolist()
        return [i for i in out if i not in (self.bos, self.eos, self.pad)]

    @torch.no_grad()
    def __call__(self, src_ids, return_details: bool = False):
        """src_ids: 1-D ids of one source -> output tokens (specials stripped, L2R order)."""
        src = torch.as_tensor(src_ids)
        if src.is_floating_point() or src.is_complex() or src.dtype == torch.bool:
            raise TypeError(f"src_ids must be integer token ids, got {src.dtype}")
        src = src.long()
        if src.dim() != 1 or src.numel() == 0:
            raise ValueError(f"src_ids must be a non-empty 1-D id sequence, got shape {tuple(src.shape)}")
        k = self.k
        check_fits_memory(f"beam_size={k} with max_len={self.max_len}", 8 * (k * k + 2 * k) * (self.max_len + 1),
                          src.device)                                    # token rows of both sides and all pairs
        enc = self.model.encode(src[None])
        enc = enc.index_select(torch.zeros(k * k, dtype=torch.long, device=src.device))
        L = _Side(k, self.bos, self.eos, self.max_len, self.pad, self.banned_l2r, src.device)
        R = _Side(k, self.eos, self.bos, self.max_len, self.pad, self.banned_r2l, src.device)
        for t in range(1, self.max_len + 1):
            l_rows, l_w = L.partners(t)
            r_rows, r_w = R.partners(t)
            pairs_l = l_rows.repeat_interleave(k, 0)                                      # pair i*k + j: L_i
            pairs_r = r_rows.repeat(k, 1)                                                 #             R_j
            p_l, p_r = self.model.step(enc, pairs_l, pairs_r)                             # [k*k, V] each
            V = self._check_step(p_l, p_r, k * k) if t == 1 else p_l.shape[-1]
            if t > 1 and not bool(torch.isfinite(p_l).all() & torch.isfinite(p_r).all()):
                raise ValueError(f"model.step returned NaN or inf probabilities at step {t}")
            pl = self._marginal(p_l.view(k, k, V), r_w, dim=1)                            # [k, V] per L_i
            pr = self._marginal(p_r.view(k, k, V), l_w, dim=0)                            # [k, V] per R_j
            if torch.isfinite(L.scores).any():
                L.extend(pl.clamp_min(0).log(), t, self.length_penalty)
            if torch.isfinite(R.scores).any():
                R.extend(pr.clamp_min(0).log(), t, self.length_penalty)
            if L.settled() and L.best >= R.overall():
                winner = ("l2r", L.best, L.best_ids)
                break
            if R.settled() and R.best >= L.overall():
                winner = ("r2l", R.best, R.best_ids)
                break
        else:
            (sl, il), (sr, ir) = L.final(self.max_len), R.final(self.max_len)
            winner = ("l2r", sl, il) if sl >= sr else ("r2l", sr, ir)
        side, score, ids = winner
        tokens = self._strip(ids, reverse=side == "r2l")
        return (tokens, side, score) if return_details else tokens
