"""Capsules: squash, dynamic routing as clustering, margin loss, and EM routing
(https://kexue.fm/archives/4819, https://kexue.fm/archives/5112, https://kexue.fm/archives/5155).

Su's routing (5112): b = 0; repeat r times: c = softmax_j(b); o_j = sum_i c_ij u_hat_{j|i}; unless last:
b_ij = <o_j / |o_j|, u_hat_{j|i}> (replaced, not accumulated); output squash(o_j). Hinton's routing
accumulates b_ij += <u_hat_{j|i}, squash(s_j)>.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.nn._reduce import mean_or_zero

__all__ = ["squash", "Capsule", "capsule_lengths", "margin_loss", "EMRouting", "em_m_step"]


def squash(x: Tensor, dim: int = -1, eps: float = 1e-7, variant: str = "hinton", k: float | None = None) -> Tensor:
    """|x|^2 / (k + |x|^2) * x / |x|; k = 1 ("hinton") or 0.5 ("su"). eps keeps the gradient finite at 0."""
    check_choice("variant", variant, ("hinton", "su"))
    k = (1.0 if variant == "hinton" else 0.5) if k is None else check_float("k", k, 0.0, low_open=True)
    eps = check_float("eps", eps, 0.0)
    s2 = x.pow(2).sum(dim, keepdim=True)
    norm = torch.sqrt((s2 + eps).clamp_min(torch.finfo(x.dtype).tiny))    # k > 0, norm > 0: the zero vector -> 0
    return x * (s2 / (k + s2) / norm)


def capsule_lengths(v: Tensor) -> Tensor:
    """Capsule lengths |v_j| (class scores): [..., J, D] -> [..., J]."""
    return v.norm(dim=-1)


def margin_loss(lengths: Tensor, targets: Tensor, m_pos: float = 0.9, m_neg: float = 0.1, lam: float = 0.25,
                reduction: str = "mean") -> Tensor:
    """T max(0, m+ - |v|)^2 + lam (1 - T) max(0, |v| - m-)^2, summed over classes. targets: class ids [B]
    or multi-hot [B, C]."""
    if targets.dim() == lengths.dim() - 1:
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise TypeError(f"targets as class ids must be an integer tensor, got dtype {targets.dtype}")
        if targets.numel() and (targets.min() < 0 or targets.max() >= lengths.shape[-1]):
            raise ValueError(f"targets (class ids) must lie in [0, {lengths.shape[-1]}), got range "
                             f"[{int(targets.min())}, {int(targets.max())}]")
        targets = F.one_hot(targets.long(), lengths.shape[-1])
    if targets.shape != lengths.shape:
        raise ValueError(f"targets must be class ids [B] or multi-hot {tuple(lengths.shape)}, got {tuple(targets.shape)}")
    t = targets.to(lengths.dtype)
    loss = (t * F.relu(m_pos - lengths) ** 2 + lam * (1 - t) * F.relu(lengths - m_neg) ** 2).sum(-1)
    if reduction == "none":
        return loss
    if reduction in ("mean", "sum"):
        return mean_or_zero(loss) if reduction == "mean" else loss.sum()   # an empty batch: 0, not NaN
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


class Capsule(nn.Module):
    """Capsule layer with dynamic routing (https://kexue.fm/archives/5112): u [B, N_in, in_features] ->
    v [B, num_capsule, dim_capsule]. Shared weights (W_j u_i) accept any number of input capsules."""

    def __init__(self, in_features: int, num_capsule: int, dim_capsule: int, routings: int = 3,
                 share_weights: bool = True, num_in_capsule: int | None = None, routing: str = "su",
                 activation: str | Callable[[Tensor], Tensor] = "squash_su"):
        super().__init__()
        check_choice("routing", routing, ("su", "hinton"))
        in_features, routings = check_int("in_features", in_features, 1), check_int("routings", routings, 1)
        num_capsule, dim_capsule = check_int("num_capsule", num_capsule, 1), check_int("dim_capsule", dim_capsule, 1)
        share_weights = check_bool("share_weights", share_weights)
        if not share_weights and num_in_capsule is None:
            raise ValueError(f"num_in_capsule is required when share_weights=False, got {num_in_capsule!r}")
        if num_in_capsule is not None:
            num_in_capsule = check_int("num_in_capsule", num_in_capsule, 1)
        if isinstance(activation, str):
            if activation not in ("squash_su", "squash_hinton"):
                raise ValueError(f"activation must be 'squash_su', 'squash_hinton' or a callable, got {activation!r}")
            variant = activation.split("_")[1]
            activation = lambda x: squash(x, variant=variant)                 # noqa: E731
        self.num_capsule, self.dim_capsule, self.routings, self.routing = num_capsule, dim_capsule, routings, routing
        self.activation, self.share_weights = activation, share_weights
        out = num_capsule * dim_capsule
        shape = (in_features, out) if share_weights else (num_in_capsule, in_features, out)
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.xavier_uniform_(self.weight.view(-1, in_features, num_capsule * dim_capsule))
        self.last_coupling: Tensor | None = None

    def forward(self, u: Tensor) -> Tensor:
        in_features = self.weight.shape[-2]
        if u.dim() != 3 or u.shape[-1] != in_features:
            raise ValueError(f"u must be [B, N_in, in_features={in_features}], got shape {tuple(u.shape)}")
        B, N, _ = u.shape
        if self.share_weights:
            u_hat = u @ self.weight                                          # [B, N, J*D]
        else:
            if N != self.weight.shape[0]:
                raise ValueError(f"u must have num_in_capsule={self.weight.shape[0]} capsules, got {N}")
            u_hat = torch.einsum("bni,nio->bno", u, self.weight)             # [B, N, J*D]
        u_hat = u_hat.view(B, N, self.num_capsule, self.dim_capsule).transpose(1, 2)   # [B, J, N, D]
        b = torch.zeros(B, self.num_capsule, N, dtype=u.dtype, device=u.device)        # [B, J, N]
        for it in range(self.routings):
            c = b.softmax(1)                                                 # over output capsules j
            o = torch.einsum("bjn,bjnd->bjd", c, u_hat)                      # [B, J, D]
            if it == self.routings - 1:
                break
            if self.routing == "su":
                b = torch.einsum("bjd,bjnd->bjn", F.normalize(o, dim=-1), u_hat)
            else:
                b = b + torch.einsum("bjd,bjnd->bjn", self.activation(o), u_hat)
        self.last_coupling = c.detach()
        return self.activation(o)


def em_m_step(votes: Tensor, a_in: Tensor, R: Tensor, beta_u: Tensor, beta_a: Tensor, inverse_temp: float,
              use_last_activation_in_cost: bool = True, min_var: float = 1e-4):
    """M-step of EM routing (https://kexue.fm/archives/5155): votes [B, N_in, J, P], a_in [B, N_in],
    R [B, N_in, J] -> mu, var [B, J, P], a_out [B, J]."""
    Ra = R * a_in[..., None]                                                 # [B, N_in, J]
    r = Ra / Ra.sum(1, keepdim=True).clamp_min(1e-12)                       # normalised over inputs i
    mu = torch.einsum("bij,bijp->bjp", r, votes)
    var = torch.einsum("bij,bijp->bjp", r, (votes - mu[:, None]) ** 2).clamp_min(min_var)
    mass = (Ra if use_last_activation_in_cost else R).sum(1)                # [B, J]
    cost = ((beta_u[:, None] + 0.5 * torch.log(var)) * mass[..., None]).sum(-1)   # sum_h (beta_u + ln sigma_h)
    a_out = torch.sigmoid(inverse_temp * (beta_a - cost))
    return mu, var, a_out


class EMRouting(nn.Module):
    """Matrix-capsule EM routing (https://kexue.fm/archives/5155): a diagonal-Gaussian mixture fitted to the
    votes, output capsules = components. votes [B, N_in, J, P], a_in [B, N_in] -> (poses [B, J, P], a [B, J]).
    The inverse temperature ramps linearly to `final_inverse_temp` over the iterations."""

    def __init__(self, num_out: int, pose_dim: int = 16, iters: int = 3, final_inverse_temp: float = 0.01,
                 use_last_activation_in_cost: bool = True):
        super().__init__()
        num_out, pose_dim, iters = check_int("num_out", num_out, 1), check_int("pose_dim", pose_dim, 1), check_int("iters", iters, 1)
        final_inverse_temp = check_float("final_inverse_temp", final_inverse_temp)
        self.num_out, self.pose_dim, self.iters = num_out, pose_dim, iters
        self.final_inverse_temp, self.use_last = final_inverse_temp, use_last_activation_in_cost
        self.beta_u = nn.Parameter(torch.zeros(num_out))
        self.beta_a = nn.Parameter(torch.zeros(num_out))

    def forward(self, votes: Tensor, a_in: Tensor) -> tuple[Tensor, Tensor]:
        B, N, J, P = votes.shape
        if (J, P) != (self.num_out, self.pose_dim) or a_in.shape != (B, N):
            raise ValueError(f"votes must be [B, N_in, {self.num_out}, {self.pose_dim}] and a_in [B, N_in], got "
                             f"{tuple(votes.shape)} and {tuple(a_in.shape)}")
        R = votes.new_full((B, N, J), 1.0 / J)
        for it in range(self.iters):
            lam = self.final_inverse_temp * (it + 1) / self.iters
            mu, var, a_out = em_m_step(votes, a_in, R, self.beta_u, self.beta_a, lam, self.use_last)
            if it == self.iters - 1:
                break
            log_p = -0.5 * (((votes - mu[:, None]) ** 2 / var[:, None]) + torch.log(2 * math.pi * var[:, None])).sum(-1)
            R = (torch.log(a_out.clamp_min(1e-12))[:, None] + log_p).softmax(-1)   # E-step over outputs j
        return mu, a_out
