"""Open-set retrieval evaluation of sentence vectors: top-k accuracy of same-group neighbours by cosine
(https://kexue.fm/archives/5743, the evaluation used for the margin softmaxes of `kexue.nn.margin`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kexue._validate import check_int

__all__ = ["retrieval_topk_accuracy"]


@torch.no_grad()
def retrieval_topk_accuracy(vectors: Tensor, groups: Tensor, ks: tuple[int, ...] = (1, 5, 10),
                            exclude_self: bool = True, chunk: int = 4096) -> dict[int, float]:
    """The article's open-set evaluation: rank all sentences by cosine to each query and count the queries
    whose top-k neighbours hold a sentence of the same group.  vectors [N, D], groups [N].  Self-matches
    are excluded by index (not by dropping rank 0, which ties can break); computed `chunk` queries at a time."""
    if vectors.dim() != 2 or groups.shape != vectors.shape[:1]:
        raise ValueError(f"retrieval_topk_accuracy: expected vectors [N, D] and groups [N], got "
                         f"{tuple(vectors.shape)} and {tuple(groups.shape)}")
    N = vectors.shape[0]
    chunk = check_int("chunk", chunk, 1)
    if not ks:
        raise ValueError("retrieval_topk_accuracy: ks must hold at least one k, got ()")
    ks = tuple(check_int("ks", k, 1) for k in ks)
    kmax = max(ks)
    if kmax > N - int(exclude_self) or min(ks) < 1:
        raise ValueError(f"retrieval_topk_accuracy: ks={ks} must lie in [1, {N - int(exclude_self)}]")
    v = F.normalize(vectors.float(), dim=-1)
    hits = {k: 0 for k in ks}
    for start in range(0, N, chunk):
        sim = v[start:start + chunk] @ v.T  # [c, N]
        if exclude_self:
            rows = torch.arange(sim.shape[0])
            sim[rows, rows + start] = -float("inf")
        top = sim.topk(kmax, dim=1).indices  # [c, kmax]
        same = groups[top] == groups[start:start + chunk, None]  # [c, kmax]
        for k in ks:
            hits[k] += int(same[:, :k].any(1).sum())
    return {k: hits[k] / N for k in ks}
