"""Input noise and the gradient penalty it amounts to (https://kexue.fm/archives/7466).

E_eps[l(f(x + eps), y)] ~ l + sigma^2/2 * Laplacian_x l; replacing the target by
l(f(x), y) + l(f(x + eps), f(x)) gives the label-free first-order penalty
sigma^2/2 * sum_i lambda_i ||grad_x f_i||^2, estimated cheaply with Rademacher vectors.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from kexue._validate import check_float

__all__ = ["gaussian_noise", "GaussianNoise", "output_gradient_penalty"]


def gaussian_noise(x: Tensor, sigma: float, training: bool = True, generator: torch.Generator | None = None) -> Tensor:
    """x + N(0, sigma^2) noise while training; x unchanged otherwise."""
    sigma = check_float("sigma", sigma, 0.0)
    if not training or sigma == 0:
        return x
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return x + sigma * noise


class GaussianNoise(nn.Module):
    """Module form of `gaussian_noise`, active only in train mode (Keras GaussianNoise)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        sigma = check_float("sigma", sigma, 0.0)
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_noise(x, self.sigma, self.training)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


def output_gradient_penalty(fn: Callable[[Tensor], Tensor], x: Tensor, kind: str = "mse",
                            estimator: str = "rademacher", n_samples: int = 1,
                            generator: torch.Generator | None = None) -> Tensor:
    """Batch mean of sum_i w_i ||grad_x g_i(x_b)||^2, differentiable (create_graph=True).

    kind="mse": g = fn(x), the penalty of l(f(x+eps), f(x)) = ||.||^2 is sigma^2 * this value.
    kind="kl":  g = 2 sqrt(softmax(fn(x))), i.e. sum_i p_i ||grad log p_i||^2 (the KL case).
    estimator="exact" loops over the C outputs; "rademacher" averages n_samples draws of
    ||grad_x (eta . g)||^2, eta uniform on {-1, +1}^C (unbiased). fn must treat samples independently.
    x: [B, ...] -> returns a scalar.
    """
    if kind not in ("mse", "kl"):
        raise ValueError(f"kind must be 'mse' or 'kl', got {kind!r}")
    if estimator not in ("rademacher", "exact"):
        raise ValueError(f"estimator must be 'rademacher' or 'exact', got {estimator!r}")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    out = fn(x)                                                              # [B, C]
    if out.dim() != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"fn(x) must have shape [B, C] with B={x.shape[0]}, got {tuple(out.shape)}")
    g = out if kind == "mse" else 2.0 * out.float().softmax(-1).clamp_min(1e-30).sqrt()
    B, C = g.shape
    total = g.new_zeros(())
    if estimator == "exact":
        for i in range(C):
            (gx,) = torch.autograd.grad(g[:, i].sum(), x, create_graph=True)   # [B, ...]
            total = total + gx.pow(2).sum()
        return total / max(B, 1)  # an empty batch: 0, not 0 / 0
    for _ in range(n_samples):
        eta = torch.randint(0, 2, (B, C), generator=generator, device=g.device).to(g.dtype) * 2 - 1
        (gx,) = torch.autograd.grad((g * eta).sum(), x, create_graph=True)   # [B, ...]
        total = total + gx.pow(2).sum()
    return total / (max(B, 1) * n_samples)
