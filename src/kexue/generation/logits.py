"""Next-token score processing shared by every decoding strategy (https://kexue.fm/archives/7630).

All functions take float scores [N, V] (logits or log-probabilities) and return a new tensor of the same
shape; a removed token gets exactly -inf, so its probability after softmax is exactly 0.  They are the
torch forms of bert4keras `random_sample`'s top-k / top-p filters and of the usual repetition penalty.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["apply_temperature", "top_k_filter", "top_p_filter", "repetition_penalty", "ban_tokens",
           "restrict_tokens"]

NEG_INF = float("-inf")


def apply_temperature(scores: Tensor, temperature: float) -> Tensor:
    """scores / T: softmax(scores / T) is the tempered distribution (probas**(1/T) renormalised)."""
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    return scores if temperature == 1 else scores / temperature


def top_k_filter(scores: Tensor, k: int | None) -> Tensor:
    """Keep the k highest scores of each row, -inf elsewhere (k = None or k >= V keeps all)."""
    if k is None:
        return scores
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"topk must be an int >= 1 or None, got {k!r}")
    if k >= scores.shape[-1]:
        return scores
    kth = scores.topk(k, dim=-1).values[..., -1:]                        # [N, 1]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores: Tensor, p: float | None) -> Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose total probability reaches p,
    including the token that crosses p (bert4keras / HF `TopPLogitsWarper` semantics; >= 1 token kept)."""
    if p is None:
        return scores
    if not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ValueError(f"topp must be a float in (0, 1] or None, got {p!r}")
    if p == 1:
        return scores
    sorted_scores, order = scores.sort(dim=-1, descending=True)                 # [N, V]
    cum = sorted_scores.float().softmax(-1).cumsum(-1)                           # [N, V]
    # token i is removed when the tokens before it already reach p
    remove_sorted = torch.zeros_like(cum, dtype=torch.bool)
    remove_sorted[..., 1:] = cum[..., :-1] >= p
    remove = remove_sorted.scatter(-1, order, remove_sorted)                     # back to vocab order
    return scores.masked_fill(remove, NEG_INF)


def repetition_penalty(scores: Tensor, previous_ids: Tensor, penalty: float) -> Tensor:
    """CTRL repetition penalty (arXiv:1909.05858, as HF `RepetitionPenaltyLogitsProcessor`): every token
    already in previous_ids [N, t] gets its logit divided by `penalty` if positive, multiplied if negative."""
    if not isinstance(penalty, (int, float)) or not penalty > 0:
        raise ValueError(f"repetition_penalty must be a number > 0, got {penalty!r}")
    if penalty == 1 or previous_ids.shape[-1] == 0:
        return scores
    seen = scores.gather(-1, previous_ids)                                       # [N, t]
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(-1, previous_ids, seen)


def ban_tokens(scores: Tensor, banned_ids: Sequence[int] | Tensor | None) -> Tensor:
    """Set the scores of banned token ids to -inf in every row."""
    if banned_ids is None or len(banned_ids) == 0:
        return scores
    idx = torch.as_tensor(banned_ids, dtype=torch.long, device=scores.device)
    V = scores.shape[-1]
    if idx.dim() != 1 or (idx < 0).any() or (idx >= V).any():
        raise ValueError(f"banned_ids must be token ids in [0, {V}), got {idx.tolist()}")
    out = scores.clone()
    out[..., idx] = NEG_INF
    return out


def restrict_tokens(scores: Tensor, allowed: Tensor) -> Tensor:
    """Keep only the tokens where the bool mask `allowed` [N, V] is True; a row with nothing allowed is an error."""
    if allowed.shape != scores.shape or allowed.dtype != torch.bool:
        raise ValueError(f"allowed mask must be a bool tensor of shape {tuple(scores.shape)}, "
                         f"got {allowed.dtype} {tuple(allowed.shape)}")
    return scores.masked_fill(~allowed, NEG_INF)
