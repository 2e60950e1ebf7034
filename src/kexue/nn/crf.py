"""Linear-chain CRF: log-likelihood by the forward algorithm and Viterbi decoding (https://kexue.fm/archives/5542).

score(y) = start[y_1] + sum_t E[t, y_t] + sum_{t>1} A[y_{t-1}, y_t] + end[y_L]  over the real (unpadded) steps;
log p(y | x) = score(y) - log Z,  log Z = logsumexp over all tag paths, computed by the forward recursion
(an RNN over time, vectorised over the batch). Masks are right-padding prefixes, True = real token.

bert4keras conveniences: `ViterbiDecoder(trans, starts, ends)` and `decode(..., starts=, ends=)` restrict the
first / last tag of a path (e.g. a BIO path may not start with I-); `sparse_loss` / `sparse_accuracy` take
integer tags as bert4keras's `ConditionalRandomField.sparse_loss` / `sparse_accuracy`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from kexue._validate import check_bool, check_int

__all__ = ["CRF", "ViterbiDecoder"]


def _allowed(name: str, tags, num_tags: int) -> list[int] | None:
    """`starts` / `ends` as a sorted list of tag ids in [0, num_tags), or None (every tag allowed)."""
    if tags is None:
        return None
    if isinstance(tags, (str, bytes)) or not hasattr(tags, "__iter__"):
        raise TypeError(f"{name} must hold tag ids (a list of ints) or be None, got {type(tags).__name__}")
    tags = list(tags.tolist() if hasattr(tags, "tolist") else tags)
    if any(isinstance(t, bool) or not isinstance(t, int) for t in tags):
        raise TypeError(f"{name} must hold integer tag ids, got {tags}")
    if not tags or any(not 0 <= t < num_tags for t in tags):
        raise ValueError(f"{name} must hold tag ids in [0, {num_tags}) (at least one), got {tags}")
    return sorted(set(tags))


def _boundary(scores, allowed: list[int] | None, like: Tensor) -> Tensor | float:
    """start/end scores [T] (or 0.0) with -inf on the tags a path may not start / end with."""
    if allowed is None:
        return scores
    bias = torch.full((like.shape[-1],), float("-inf"), dtype=like.dtype, device=like.device)
    bias[allowed] = 0.0
    return bias + scores


def viterbi_paths(emissions: Tensor, transitions: Tensor, mask: Tensor, start: Tensor | float = 0.0,
                  end: Tensor | float = 0.0) -> tuple[Tensor, Tensor]:
    """Max-product recursion: emissions [B, n, T], transitions [T, T], mask [B, n] (right-padding prefix)
    -> best paths [B, n] (pads repeat the last real tag) and their scores [B]."""
    B, n, T = emissions.shape
    delta = start + emissions[:, 0]                                           # [B, T]
    identity = torch.arange(T, device=emissions.device).expand(B, T)
    backptr = []
    for t in range(1, n):
        best, arg = (delta[:, :, None] + transitions).max(1)                  # [B, T] each
        delta = torch.where(mask[:, t, None], best + emissions[:, t], delta)
        backptr.append(torch.where(mask[:, t, None], arg, identity))          # pads pass the tag through
    best_score, tag = (delta + end).max(-1)                                   # [B]
    path = [tag]
    for bp in reversed(backptr):
        tag = bp.gather(1, tag[:, None])[:, 0]
        path.append(tag)
    return torch.stack(path[::-1], 1), best_score


def _refuse_impossible(best: Tensor, mask: Tensor, starts, ends, what: str = "emissions") -> None:
    """A NaN best score (NaN scores in) or -inf (no path meets starts / ends) would give a meaningless path."""
    if torch.isnan(best).any():
        row = int(torch.isnan(best).nonzero()[0, 0])
        raise ValueError(f"{what} hold NaN (sequence {row}): the Viterbi path would be meaningless")
    bad = torch.isneginf(best)
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"no tag path meets starts={starts} and ends={ends} for sequence {row} (real length "
                         f"{int(mask[row].sum())}): a length 1 sequence needs a tag in both")


class CRF(nn.Module):
    """Linear-chain CRF over `num_tags` tags (https://kexue.fm/archives/5542).

    transitions[i, j] scores tag i followed by tag j. `include_start_end=False` gives bert4keras's
    `ConditionalRandomField` (transitions only); the default adds start/end scores as in pytorch-crf.
    Masks hold only 0/1 (bool, int or float) as a right-padding prefix with >= 1 real step per row; tags
    are integers in [0, num_tags). A batch of size 0 has loss 0 ("mean" and "sum"), never NaN.
    """

    def __init__(self, num_tags: int, include_start_end: bool = True, **kwargs):
        super().__init__()
        if "lr_multiplier" in kwargs:       # the bert4keras keyword: in torch the optimizer's param groups own the lr
            raise TypeError(
                f"CRF takes no lr_multiplier (got {kwargs['lr_multiplier']!r}): in PyTorch the learning rate "
                "belongs to the optimizer's parameter groups; use kexue.optim.param_groups_by_name(model, "
                "{r'crf\\.': {'lr_multiplier': 100}}, lr=base_lr) and pass the groups to the optimizer")
        if kwargs:
            raise TypeError(f"CRF got unexpected keyword arguments {sorted(kwargs)}")
        num_tags = check_int("num_tags", num_tags, 1)
        include_start_end = check_bool("include_start_end", include_start_end)
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))
        self.start_transitions = nn.Parameter(torch.zeros(num_tags)) if include_start_end else None
        self.end_transitions = nn.Parameter(torch.zeros(num_tags)) if include_start_end else None

    def _check(self, emissions: Tensor, tags: Tensor | None, mask: Tensor | None) -> Tensor:
        if not isinstance(emissions, Tensor) or not emissions.is_floating_point():
            raise TypeError(f"emissions must be a floating-point tensor [B, n, num_tags], got "
                            f"{type(emissions).__name__}" + (f" of dtype {emissions.dtype}"
                                                             if isinstance(emissions, Tensor) else ""))
        if tags is not None and not isinstance(tags, Tensor):
            raise TypeError(f"tags must be an integer tensor [B, n], got {type(tags).__name__}")
        if mask is not None and not isinstance(mask, Tensor):
            raise TypeError(f"mask must be a tensor [B, n] of 0/1 (True = real token), got {type(mask).__name__}")
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
    def viterbi(self, emissions: Tensor, mask: Tensor | None = None, *, starts=None,
                ends=None) -> tuple[Tensor, Tensor]:
        """Best paths [B, n] (pads filled with the last real tag, use `mask`) and their scores [B].
        starts / ends: the tag ids a path may begin / end with (None: any), as bert4keras's ViterbiDecoder."""
        starts, ends = _allowed("starts", starts, self.num_tags), _allowed("ends", ends, self.num_tags)
        mask = self._check(emissions, None, mask)
        paths, best = viterbi_paths(emissions, self.transitions, mask, _boundary(self._start(), starts, emissions),
                                    _boundary(self._end(), ends, emissions))
        _refuse_impossible(best, mask, starts, ends)
        return paths, best

    def decode(self, emissions: Tensor, mask: Tensor | None = None, *, starts=None,
               ends=None) -> list[list[int]]:
        """Viterbi paths as lists of tag ids, one per sequence, of the sequence's real length
        (restricted to begin with a tag of `starts` and end with one of `ends` when given)."""
        mask = self._check(emissions, None, mask)
        paths, _ = self.viterbi(emissions, mask, starts=starts, ends=ends)
        return [p[:L].tolist() for p, L in zip(paths, mask.sum(1).tolist())]

    def _sparse_tags(self, tags: Tensor, mask: Tensor | None) -> Tensor:
        """bert4keras's tags [B, n] or [B, n, 1]; with a mask, pad positions may hold any id (e.g. -100)."""
        if isinstance(tags, Tensor) and tags.dim() == 3 and tags.shape[-1] == 1:
            tags = tags[..., 0]
        if mask is not None and isinstance(tags, Tensor) and isinstance(mask, Tensor) and mask.shape == tags.shape:
            tags = tags.masked_fill(mask == 0, 0)
        return tags

    def sparse_loss(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None,
                    reduction: str = "mean") -> Tensor:
        """bert4keras's `sparse_loss`: -log p(tags | emissions) with integer tags [B, n] (or [B, n, 1]); the
        same as `forward`, except that padded positions (mask 0) may hold any id, such as -100."""
        return self(emissions, self._sparse_tags(tags, mask), mask, reduction)

    @torch.no_grad()
    def sparse_accuracy(self, emissions: Tensor, tags: Tensor, mask: Tensor | None = None,
                        viterbi: bool = False) -> Tensor:
        """bert4keras's `sparse_accuracy`: the share of real tokens whose tag is the argmax of the emissions
        (frame by frame, a cheap training-time signal); `viterbi=True` scores the decoded paths instead."""
        check_bool("viterbi", viterbi)
        tags = self._sparse_tags(tags, mask)
        mask = self._check(emissions, tags, mask)
        pred = self.viterbi(emissions, mask)[0] if viterbi else emissions.argmax(-1)     # [B, n]
        real = mask.sum()
        if real == 0:
            return emissions.new_zeros(())
        return ((pred == tags) & mask).sum().to(emissions.dtype) / real


class ViterbiDecoder:
    """bert4keras's `ViterbiDecoder(trans, starts=None, ends=None)`: `decode(nodes)` gives the best tag path
    of one sequence of emission scores nodes [n, T] under the transition matrix trans [T, T] (no start/end
    scores), beginning with a tag of `starts` and ending with one of `ends` when given. Accepts numpy arrays
    or tensors; returns a list of tag ids. (https://kexue.fm/archives/5542)"""

    def __init__(self, trans, starts=None, ends=None) -> None:
        trans = torch.as_tensor(trans)
        if trans.dim() != 2 or trans.shape[0] != trans.shape[1] or not trans.is_floating_point():
            raise ValueError(f"trans must be a square [T, T] float matrix of transition scores, got shape "
                             f"{tuple(trans.shape)} and dtype {trans.dtype}")
        self.trans, self.num_tags = trans.detach(), trans.shape[0]
        self.starts, self.ends = _allowed("starts", starts, self.num_tags), _allowed("ends", ends, self.num_tags)

    @torch.no_grad()
    def decode(self, nodes) -> list[int]:
        nodes = torch.as_tensor(nodes)
        if nodes.dim() != 2 or nodes.shape[1] != self.num_tags or nodes.shape[0] == 0:
            raise ValueError(f"nodes must be [n, {self.num_tags}] emission scores with n >= 1, got shape "
                             f"{tuple(nodes.shape)}")
        nodes = nodes.to(torch.promote_types(nodes.dtype, self.trans.dtype))
        mask = torch.ones(1, nodes.shape[0], dtype=torch.bool, device=nodes.device)
        paths, best = viterbi_paths(nodes[None], self.trans.to(nodes), mask,
                                    _boundary(0.0, self.starts, nodes), _boundary(0.0, self.ends, nodes))
        _refuse_impossible(best, mask, self.starts, self.ends, "nodes")
        return paths[0].tolist()
