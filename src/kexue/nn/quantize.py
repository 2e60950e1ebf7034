"""Vector quantisation of VQ-VAE: nearest codebook entry, straight-through gradient, codebook and
commitment losses, EMA codebook (online k-means) and dead-code restarts (https://kexue.fm/archives/6760).

    z_q = e_k, k = argmin_j |z - e_j|^2;   decoder input z + sg[z_q - z]  (value z_q, Jacobian I)
    loss = codebook_weight * |sg[z] - z_q|^2 + commitment_weight * |z - sg[z_q]|^2   (means over elements)
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_float, check_int

__all__ = ["straight_through", "code_perplexity", "VQOutput", "VectorQuantizer"]


def straight_through(x: Tensor, y: Tensor) -> Tensor:
    """x + sg[y - x]: the value of y with the gradient of x (https://kexue.fm/archives/6760)."""
    return x + (y - x).detach()


def code_perplexity(indices: Tensor, num_codes: int) -> Tensor:
    """exp(entropy of the code usage histogram): num_codes when uniform, 1 when collapsed."""
    p = torch.bincount(indices.flatten(), minlength=num_codes).float()
    p = p / p.sum().clamp_min(1)
    return torch.exp(-torch.special.xlogy(p, p).sum())


class VQOutput(NamedTuple):
    z_q_st: Tensor           # same shape as z: codebook vectors, straight-through gradient to z
    indices: Tensor          # z's shape without the channel dim, int64
    loss: Tensor             # codebook_weight * codebook_loss (loss mode only) + commitment_weight * commitment
    codebook_loss: Tensor    # mean (sg[z] - z_q)^2
    commitment_loss: Tensor  # mean (z - sg[z_q])^2
    perplexity: Tensor       # code_perplexity of this batch
    usage: Tensor            # [num_codes] fraction of this batch's vectors assigned to each code


def _all_reduce(t: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantiser over `embedding_size`-vectors (one codebook row each) found on `channel_dim`
    (-1 for token sequences [B, n, D], 1 for conv maps [B, D, H, W]).

    ema=False: the codebook is a Parameter trained by the codebook loss.  ema=True: a buffer updated in
    training mode by N_i <- decay N_i + (1 - decay) n_i, m_i <- decay m_i + (1 - decay) sum z, e_i = m_i / N_i
    with Laplace-smoothed N (the paper's appendix; same update as vector-quantize-pytorch); the codebook
    then gets no autograd gradient and only the commitment term is in `loss`.  Counts and sums are
    all-reduced under torch.distributed.  dead_code_threshold > 0: in training, codes whose running usage
    (expected vectors per batch, EMA with `decay`) falls below it are restarted at random batch vectors.
    init="kmeans": the first training batch initialises the codebook by 10 Lloyd iterations.
    Distances ||z||^2 + ||e||^2 - 2 z.e are computed in float32 even under autocast.

    An empty batch (no vector, e.g. everything masked out) is legitimate: its losses are 0 (with a graph
    to z, never NaN) and it leaves the codebook, the EMA statistics, the usage and the k-means
    initialisation untouched (under torch.distributed, a step is skipped only when all ranks are empty).
    """

    def __init__(self, num_codes: int = 512, embedding_size: int = 64, codebook_weight: float = 1.0,
                 commitment_weight: float = 0.25, ema: bool = False, decay: float = 0.99, eps: float = 1e-5,
                 channel_dim: int = -1, dead_code_threshold: float = 0.0, init: str = "uniform"):
        super().__init__()
        num_codes = check_int("num_codes", num_codes, 1)
        embedding_size = check_int("embedding_size", embedding_size, 1)
        channel_dim, ema = check_int("channel_dim", channel_dim), check_bool("ema", ema)
        decay = check_float("decay", decay, 0.0, 1.0, high_open=True)
        eps = check_float("eps", eps, 0.0, low_open=True)
        codebook_weight = check_float("codebook_weight", codebook_weight, 0.0)
        commitment_weight = check_float("commitment_weight", commitment_weight, 0.0)
        dead_code_threshold = check_float("dead_code_threshold", dead_code_threshold, 0.0)
        check_choice("init", init, ("uniform", "kmeans"))
        self.num_codes, self.embedding_size, self.channel_dim = num_codes, embedding_size, channel_dim
        self.codebook_weight, self.commitment_weight = float(codebook_weight), float(commitment_weight)
        self.ema, self.decay, self.eps = ema, float(decay), float(eps)
        self.dead_code_threshold, self.init = float(dead_code_threshold), init
        weight = torch.empty(num_codes, embedding_size).uniform_(-1.0 / num_codes, 1.0 / num_codes)  # [K, D]
        if ema:
            self.register_buffer("weight", weight)
            self.register_buffer("ema_count", torch.zeros(num_codes))   # N_i
            self.register_buffer("ema_sum", weight.clone())             # m_i
        else:
            self.weight = nn.Parameter(weight)
        self.register_buffer("usage_ema", torch.full((num_codes,), float("inf")))  # no restarts before data
        self.register_buffer("initialized", torch.tensor(init == "uniform"))

    @property
    def codebook(self) -> Tensor:
        """[num_codes, embedding_size] code vectors."""
        return self.weight

    def _flatten(self, z: Tensor) -> tuple[Tensor, torch.Size]:
        if z.dim() < 2 or z.shape[self.channel_dim] != self.embedding_size:
            raise ValueError(f"VectorQuantizer: expected size embedding_size={self.embedding_size} on "
                             f"channel_dim={self.channel_dim}, "
                             f"got z of shape {tuple(z.shape)}")
        zl = z.movedim(self.channel_dim, -1)  # [..., D]
        return zl.reshape(-1, self.embedding_size), zl.shape

    def distances(self, flat: Tensor) -> Tensor:
        """Squared distances |z|^2 + |e|^2 - 2 z.e [N, K] in float32, clamped at 0 (rounding can go below 0)."""
        f = flat.float()
        return (self._code_scores(f) + (f * f).sum(1, keepdim=True)).clamp_min_(0.0)

    def _code_scores(self, f: Tensor) -> Tensor:
        """|e|^2 - 2 z.e [N, K] as one matmul of augmented vectors [z, 1] . [-2e, |e|^2]: the distance minus
        the per-row constant |z|^2, enough for argmin and no extra passes over the [N, K] matrix."""
        e = self.weight.detach().float()
        e_aug = torch.cat([-2.0 * e, (e * e).sum(1, keepdim=True)], 1)  # [K, D + 1]
        f_aug = torch.cat([f, f.new_ones(f.shape[0], 1)], 1)  # [N, D + 1]
        return f_aug @ e_aug.T

    def lookup(self, indices: Tensor) -> Tensor:
        """Code ids [...] -> vectors with the channel dim at channel_dim (for sampling with a prior)."""
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"VectorQuantizer.lookup: indices must be in [0, {self.num_codes}), got range "
                             f"[{indices.min().item()}, {indices.max().item()}]")
        return F.embedding(indices, self.weight).movedim(-1, self.channel_dim)

    def forward(self, z: Tensor) -> VQOutput:
        flat, lshape = self._flatten(z)  # [N, D]
        if self.training and not bool(self.initialized) and flat.shape[0] > 0:  # empty batch: wait for data
            self._kmeans_init(flat.detach())
        with torch.autocast(device_type=flat.device.type, enabled=False):
            indices = self._code_scores(flat.detach().float()).argmin(1)  # [N], ties -> lowest index
        z_q = F.embedding(indices, self.weight).to(flat.dtype)  # [N, D]
        if flat.numel():
            codebook_loss = F.mse_loss(z_q, flat.detach())
            commitment_loss = F.mse_loss(flat, z_q.detach())
        else:  # empty batch: mean over no element is NaN; the loss is 0 and keeps the graph
            codebook_loss, commitment_loss = z_q.sum() * 0.0, flat.sum() * 0.0
        loss = self.commitment_weight * commitment_loss
        if not self.ema:
            loss = loss + self.codebook_weight * codebook_loss
        counts = torch.bincount(indices, minlength=self.num_codes).to(flat.dtype)  # [K]
        if self.training:
            self._update(flat.detach(), indices, counts)
        z_q_st = straight_through(flat, z_q).reshape(lshape).movedim(-1, self.channel_dim)
        usage = counts / counts.sum().clamp_min(1)
        return VQOutput(z_q_st, indices.reshape(lshape[:-1]), loss, codebook_loss, commitment_loss,
                        torch.exp(-torch.special.xlogy(usage, usage).sum()), usage)

    @torch.no_grad()
    def _update(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        counts = _all_reduce(counts.float().clone())
        if counts.sum() <= 0:  # no vector on any rank: decaying towards 0 would make N = 0 and e = m / 0
            return
        if self.ema:
            sums = _all_reduce(torch.zeros_like(self.ema_sum).index_add_(0, indices, flat.float()))  # [K, D]
            self.ema_count.lerp_(counts, 1 - self.decay)
            self.ema_sum.lerp_(sums, 1 - self.decay)
            n = self.ema_count.sum()  # >= (1 - decay) * batch size > 0: only non-empty batches get here
            eps = max(self.eps, torch.finfo(self.ema_count.dtype).tiny)  # an eps that rounds to 0 would give m / 0
            smoothed = (self.ema_count + eps) / (n + self.num_codes * eps) * n  # Laplace smoothing, > 0
            new = self.ema_sum / smoothed[:, None]
            # guard: a code whose vector would overflow (tiny smoothed count) keeps its previous vector
            self.weight.copy_(torch.where(torch.isfinite(new).all(1, keepdim=True), new, self.weight))
        if self.dead_code_threshold > 0:
            usage = torch.where(torch.isinf(self.usage_ema), counts, self.usage_ema)
            self.usage_ema.copy_(usage.lerp(counts, 1 - self.decay))
            self._restart_dead(flat)

    @torch.no_grad()
    def _restart_dead(self, flat: Tensor) -> None:
        dead = self.usage_ema < self.dead_code_threshold  # [K]
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        if flat.shape[0]:
            pick = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
            new = flat[pick].to(self.weight.dtype)  # [n_dead, D]
        else:  # this rank saw no vector (others did): keep the codes; rank 0's broadcast below decides
            new = self.weight[dead].clone()
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(new, 0)  # every rank restarts the same codes with the same vectors
        self.weight[dead] = new
        self.usage_ema[dead] = self.dead_code_threshold
        if self.ema:
            self.ema_count[dead] = self.dead_code_threshold
            self.ema_sum[dead] = new * self.dead_code_threshold

    @torch.no_grad()
    def _kmeans_init(self, flat: Tensor, iters: int = 10) -> None:
        if flat.shape[0] < self.num_codes:
            raise ValueError(f"VectorQuantizer(init='kmeans'): first batch has {flat.shape[0]} vectors, "
                             f"need >= num_codes={self.num_codes}")
        centers = flat[torch.randperm(flat.shape[0], device=flat.device)[: self.num_codes]].float()  # [K, D]
        for _ in range(iters):
            assign = torch.cdist(flat.float(), centers).argmin(1)
            counts = torch.bincount(assign, minlength=self.num_codes).float()
            sums = torch.zeros_like(centers).index_add_(0, assign, flat.float())
            centers = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centers)
        self.weight.copy_(centers.to(self.weight.dtype))
        if self.ema:
            self.ema_sum.copy_(centers)
        self.initialized.fill_(True)

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, embedding_size={self.embedding_size}, ema={self.ema}, "
                f"channel_dim={self.channel_dim}, commitment_weight={self.commitment_weight}")
