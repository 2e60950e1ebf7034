"""Linear-chain CRF: log-likelihood by the forward algorithm and Viterbi decoding (https://kexue.fm/archives/5542).

score(y) = start[y_1] + sum_t E[t, y_t] + sum_{t>1} A[y_{t-1}, y_t] + end[y_L]  over the real (unpadded) steps;
log p(y | x) = score(y) - log Z,  log Z = logsumexp over all tag paths, computed by the forward recursion
(an RNN over time, vectorised over the batch). Masks are right-padding prefixes, True = real token.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from kexue._validate import check_bool, check_int

__all__ = ["CRF"]


class CRF(nn.Module):
    """Linear-chain CRF over `num_tags` tags (https://kexue.fm/archives/5542).

    transitions[i, j] scores tag i followed by tag j. `include_start_end=False` gives bert4keras's
    `ConditionalRandomField` (transitions only); the default adds start/end scores as in pytorch-crf.
    Masks hold only 0/1 (bool, int or float) as a right-padding prefix with >= 1 real step per row; tags
    are integers in [0, num_tags). A batch of size 0 has loss 0 ("mean" and "sum"), never NaN.
    """

    def __init__(self, num_tags: int, include_start_end: bool = True):
        super().__init__()
        num_tags = check_int("num_tags", num_tags, 1)
        include_start_end = check_bool("include_start_end", include_start_end)
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start_transitions = nn.Parameter(torch.zeros(num_tags)) if include_start_end else None
        self.end_transitions = nn.Parameter(torch.zeros(num_tags)) if include_start_end else None

    def _check(self, emissions: Tensor, tags: Tensor | None, mask: Tensor | None) -> Tensor:
        if emissions.dim() != 3 or emissions.shape[-1] != self.num_tags:
            raise ValueError(f"emissions must be [B, n, num_tags={self.num_tags}], got {tuple(emissions.shape)}")
        B, n, _ = emissions.shape
        if n == 0:
            raise ValueError("emissions must have at least one time step, got n = 0")
        if tags is not None:
            if tags.shape != (B, n):
                raise ValueError(f"tags must be [B, n] = {(B, n)}, got {tuple(tags.shape)}")
            if tags.is_floating_point() or tags.is_complex() or tags.dtype == torch.bool:
                raise TypeError(f"tags must be an integer tensor of tag ids, got dtype {tags.dtype}")
            if tags.numel() and (tags.min() < 0 or tags.max() >= self.num_tags):
                raise ValueError(f"tags must lie in [0, {self.num_tags}), got range "
                                 f"[{int(tags.min())}, {int(tags.max())}]")
        if mask is None:
            return torch.ones(B, n, dtype=torch.bool, device=emissions.device)
        if mask.shape != (B, n):
            raise ValueError(f"mask must be [B, n] = {(B, n)}, got {tuple(mask.shape)}")
        if mask.dtype != torch.bool:
            if ((mask != 0) & (mask != 1)).any():
                bad = mask[(mask != 0) & (mask != 1)][0].item()
                raise ValueError(f"mask must hold only 0/1 (True = real token), got the value {bad!r}")
            mask = mask.bool()
        lengths = mask.sum(1)
        if not torch.equal(mask, torch.arange(n, device=mask.device) < lengths[:, None]) or (lengths == 0).any():
            raise ValueError("mask must be a right-padding prefix (True then False) with at least one True per row")
        return mask

    def _start(self) -> Tensor | float:
        return 0.0 if self.start_transitions is None else self.start_transitions

    def _end(self) -> Tensor | float:
        return 0.0 if self.end_transitions is None else self.end_transitions

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None) -> Tensor:
        """Unnormalised score of the tag paths: emissions [B, n, T], tags [B, n] -> [B]."""
        mask = self._check(emissions, tags, mask)
        m = mask.to(emissions.dtype)
        emit = emissions.gather(-1, tags[..., None])[..., 0] * m                  # [B, n]
        trans = self.transitions[tags[:, :-1], tags[:, 1:]] * m[:, 1:]             # [B, n-1]
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1))[:, 0]              # [B]
        s = emit.sum(1) + trans.sum(1)
        if self.start_transitions is not None:
            s = s + self.start_transitions[tags[:, 0]] + self.end_transitions[last]
        return s

    def log_partition(self, emissions: Tensor, mask: Tensor | None = None) -> Tensor:
        """log Z by the forward algorithm: [B, n, T] -> [B]."""
        mask = self._check(emissions, None, mask)
        alpha = self._start() + emissions[:, 0]                                   # [B, T]
        for t in range(1, emissions.shape[1]):
            nxt = (alpha[:, :, None] + self.transitions).logsumexp(1) + emissions[:, t]   # [B, T]
            alpha = torch.where(mask[:, t, None], nxt, alpha)
        return (alpha + self._end()).logsumexp(-1)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None,
                       reduction: str = "none") -> Tensor:
        """log p(tags | emissions) per sequence ([B], or its 'sum'/'mean')."""
        ll = self.score(emissions, tags, mask) - self.log_partition(emissions, mask)
        if reduction == "none":
            return ll
        if reduction == "mean" and ll.numel() == 0:
            return ll.sum()  # no sequence: 0 with a graph to the parameters (a mean over nothing is NaN)
        if reduction in ("sum", "mean"):
            return getattr(ll, reduction)()
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")

    def forward(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None,
                reduction: str = "mean") -> Tensor:
        """Training loss: negative log-likelihood (mean over the batch by default)."""
        return -self.log_likelihood(emissions, tags, mask, reduction)

    @torch.no_grad()
    def viterbi(self, emissions: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Best paths [B, n] (pads filled with the last real tag, use `mask`) and their scores [B]."""
        mask = self._check(emissions, None, mask)
        B, n, T = emissions.shape
        delta = self._start() + emissions[:, 0]                                   # [B, T]
        identity = torch.arange(T, device=emissions.device).expand(B, T)
        backptr = []
        for t in range(1, n):
            best, arg = (delta[:, :, None] + self.transitions).max(1)             # [B, T] each
            delta = torch.where(mask[:, t, None], best + emissions[:, t], delta)
            backptr.append(torch.where(mask[:, t, None], arg, identity))          # pads pass the tag through
        best_score, tag = (delta + self._end()).max(-1)                           # [B]
        path = [tag]
        for bp in reversed(backptr):
            tag = bp.gather(1, tag[:, None])[:, 0]
            path.append(tag)
        return torch.stack(path[::-1], 1), best_score

    def decode(self, emissions: Tensor, mask: Tensor | None = None) -> list[list[int]]:
        """Viterbi paths as lists of tag ids, one per sequence, of the sequence's real length."""
        mask = self._check(emissions, None, mask)
        paths, _ = self.viterbi(emissions, mask)
        return [p[:L].tolist() for p, L in zip(paths, mask.sum(1).tolist())]
