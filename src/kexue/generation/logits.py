"""Next-token score processing shared by every decoding strategy (https://kexue.fm/archives/7630).

All functions take float scores [N, V] (logits or log-probabilities) and return a new tensor of the same
shape; a removed token gets exactly -inf, so its probability after softmax is exactly 0.  They are the
torch forms of bert4keras `random_sample`'s top-k / top-p filters and of the usual repetition penalty.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .._validate import check_float, check_int
from .limits import check_token_ids

__all__ = ["check_scores", "apply_temperature", "top_k_filter", "top_p_filter", "repetition_penalty", "ban_tokens",
           "restrict_tokens"]

NEG_INF = float("-inf")


def check_scores(scores: Tensor, name: str = "scores") -> Tensor:
    """Float scores [..., V] with no NaN and no +inf (-inf marks a removed token); anything else would turn
    into NaN probabilities and be sampled from silently."""
    if not isinstance(scores, Tensor) or not scores.is_floating_point() or scores.dim() < 1:
        raise TypeError(f"{name} must be a floating-point tensor [..., V], got "
                        f"{getattr(scores, 'dtype', type(scores).__name__)}")
    if scores.shape[-1] == 0:
        raise ValueError(f"{name} has an empty vocabulary axis: shape {tuple(scores.shape)}")
    if bool(torch.isnan(scores).any() | torch.isposinf(scores).any()):
        raise ValueError(f"{name} contain NaN or +inf values; expected finite scores (-inf for removed tokens)")
    return scores


def apply_temperature(scores: Tensor, temperature: float) -> Tensor:
    """scores / T: softmax(scores / T) is the tempered distribution (probas**(1/T) renormalised)."""
    temperature = check_float("temperature", temperature, 0.0, low_open=True)
    check_scores(scores)
    if temperature == 1:
        return scores
    out = scores / temperature
    if bool(torch.isposinf(out).any() | (torch.isneginf(out) & ~torch.isneginf(scores)).any()):
        raise ValueError(f"temperature={temperature!r} is too small for these scores: scores / temperature "
                         f"overflows {scores.dtype}; use a larger temperature (or greedy decoding)")
    return out


def top_k_filter(scores: Tensor, k: int | None) -> Tensor:
    """Keep the k highest scores of each row, -inf elsewhere (k = None or k >= V keeps all)."""
    if k is None:
        return scores
    k = check_int("topk", k, 1)
    check_scores(scores)
    if k >= scores.shape[-1]:
        return scores
    kth = scores.topk(k, dim=-1).values[..., -1:]                        # [N, 1]
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p_filter(scores: Tensor, p: float | None) -> Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose total probability reaches p,
    including the token that crosses p (bert4keras / HF `TopPLogitsWarper` semantics; >= 1 token kept)."""
    if p is None:
        return scores
    p = check_float("topp", p, 0.0, 1.0, low_open=True)
    check_scores(scores)
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
    penalty = check_float("repetition_penalty", penalty, 0.0, low_open=True)
    check_scores(scores)
    if penalty == 1 or previous_ids.shape[-1] == 0:
        return scores
    V = scores.shape[-1]
    if previous_ids.is_floating_point() or bool((previous_ids < 0).any() | (previous_ids >= V).any()):
        raise ValueError(f"previous_ids must be integer token ids in [0, {V}), got {previous_ids.dtype} values "
                         f"in [{previous_ids.min().item()}, {previous_ids.max().item()}]")
    seen = scores.gather(-1, previous_ids)                                       # [N, t]
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(-1, previous_ids, seen)


def ban_tokens(scores: Tensor, banned_ids: Sequence[int] | Tensor | None) -> Tensor:
    """Set the scores of banned token ids to -inf in every row."""
    V = scores.shape[-1]
    banned_ids = check_token_ids("banned_ids", banned_ids, V)
    if not banned_ids:
        return scores
    idx = torch.tensor(banned_ids, dtype=torch.long, device=scores.device)
    out = scores.clone()
    out[..., idx] = NEG_INF
    return out


def restrict_tokens(scores: Tensor, allowed: Tensor) -> Tensor:
    """Keep only the tokens where the bool mask `allowed` [N, V] is True; a row with nothing allowed is an error."""
    if allowed.shape != scores.shape or allowed.dtype != torch.bool:
        raise ValueError(f"allowed mask must be a bool tensor of shape {tuple(scores.shape)}, "
                         f"got {allowed.dtype} {tuple(allowed.shape)}")
    return scores.masked_fill(~allowed, NEG_INF)
