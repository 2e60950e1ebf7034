"""Lipschitz constraints: spectral norm by power iteration, spectral-norm regularisation, spectral
normalisation (torch's parametrization), Lipschitz bounds, and the WGAN gradient penalty
(https://kexue.fm/archives/6051).

|W x| <= |W|_2 |x| with |W|_2 = sqrt(lambda_max(W^T W)) <= |W|_F, so weight decay is a coarse
L-constraint and lambda |W|_2^2 a sharp one.  Conv kernels are reshaped to (out, in * kh * kw): that
matrix norm is what torch's spectral_norm uses, and it is NOT the operator norm of the convolution
(see `conv_operator_norm`).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _torch_spectral_norm

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.nn._reduce import mean_or_zero

__all__ = [
    "spectral_norm_estimate", "conv_operator_norm", "SpectralNormRegularizer", "apply_spectral_norm",
    "project_spectral_norm_", "lipschitz_upper_bound", "empirical_lipschitz", "gradient_penalty", "wgan_critic_loss",
    "wgan_generator_loss",
]


def _as_matrix(weight: Tensor, layout: str) -> Tensor:
    if weight.dim() < 2:
        raise ValueError(f"spectral norm needs a weight with >= 2 dims, got shape {tuple(weight.shape)}")
    if layout == "torch":  # Linear (out, in), Conv (out, in, kh, kw)
        return weight.reshape(weight.shape[0], -1)
    if layout == "keras":  # Dense (in, out), Conv (kh, kw, in, out): output units last
        return weight.reshape(-1, weight.shape[-1]).T
    raise ValueError(f"layout must be 'torch' or 'keras', got {layout!r}")


def spectral_norm_estimate(weight: Tensor, iters: int = 5, u: Tensor | None = None, layout: str = "torch",
                           return_uv: bool = False, eps: float = 1e-12):
    """sigma_max of the weight matrix by power iteration v = W^T u / |.|, u = W v / |.|, sigma = u^T W v
    (https://kexue.fm/archives/6051).  u [out] warm-starts it (default: all ones, as the author's code);
    sigma is differentiable in W with u, v held fixed (d sigma / dW = u v^T).  Few iterations from a cold
    start underestimate sigma.  Returns sigma, or (sigma, u, v) with return_uv."""
    iters = check_int("iters", iters, 1)
    W = _as_matrix(weight, layout)  # [out, in]
    with torch.no_grad():
        u = torch.ones(W.shape[0], dtype=W.dtype, device=W.device) if u is None else u.to(W.dtype)
        if u.shape != W.shape[:1]:
            raise ValueError(f"spectral_norm_estimate: u must have shape ({W.shape[0]},), got {tuple(u.shape)}")
        u = F.normalize(u, dim=0, eps=eps)
        for _ in range(iters):
            v = F.normalize(W.T @ u, dim=0, eps=eps)  # [in]
            u = F.normalize(W @ v, dim=0, eps=eps)  # [out]
    sigma = u @ W @ v
    return (sigma, u, v) if return_uv else sigma


def conv_operator_norm(weight: Tensor, input_shape: tuple[int, int], iters: int = 100, stride: int = 1,
                       padding: int = 0, generator: torch.Generator | None = None) -> Tensor:
    """Operator norm of x -> conv2d(x, weight) on (C_in, H, W) inputs, by power iteration with conv2d and
    conv_transpose2d; generally differs from the reshape-based spectral_norm_estimate."""
    iters = check_int("iters", iters, 1)
    c_in = weight.shape[1]
    x = torch.randn(1, c_in, *input_shape, generator=generator, dtype=weight.dtype)
    with torch.no_grad():
        for _ in range(iters):
            x = x / x.norm()
            y = F.conv2d(x, weight, stride=stride, padding=padding)
            x = F.conv_transpose2d(y, weight, stride=stride, padding=padding,
                                   output_padding=_output_padding(input_shape, y.shape[-2:], weight, stride, padding))
        x = x / x.norm()
        return F.conv2d(x, weight, stride=stride, padding=padding).norm()


def _output_padding(input_shape, out_shape, weight, stride, padding) -> tuple[int, int]:
    return tuple(int(n - ((o - 1) * stride - 2 * padding + k))
                 for n, o, k in zip(input_shape, out_shape, weight.shape[-2:]))


def _collect_weights(modules_or_params) -> list[Tensor]:
    if isinstance(modules_or_params, (nn.Module, Tensor)):
        modules_or_params = [modules_or_params]
    out: list[Tensor] = []
    for item in modules_or_params:
        if isinstance(item, Tensor):
            out.append(item)
        elif isinstance(item, nn.Module):
            out += [m.weight for m in item.modules()
                    if isinstance(getattr(m, "weight", None), Tensor) and m.weight.dim() >= 2]
        else:
            raise TypeError(f"SpectralNormRegularizer: expected modules or tensors, got {type(item).__name__}")
    if not out:
        raise ValueError("SpectralNormRegularizer: no weight with >= 2 dims found")
    return out


class SpectralNormRegularizer(nn.Module):
    """coef * sum_W sigma(W)^2, the spectral replacement of L2's |W|_F^2 (https://kexue.fm/archives/6051,
    Yoshida & Miyato 2017).  persistent=True keeps u per weight as a buffer (saved in state_dict) so
    iters=1 converges over training steps; persistent=False restarts from all ones each call."""

    def __init__(self, modules_or_params, coef: float = 1e-2, iters: int = 1, persistent: bool = True,
                 layout: str = "torch"):
        super().__init__()
        coef, iters = check_float("coef", coef, 0.0), check_int("iters", iters, 1)
        check_choice("layout", layout, ("torch", "keras"))
        persistent = check_bool("persistent", persistent)
        self._weights = _collect_weights(modules_or_params)  # plain list: not re-registered as parameters
        self.coef, self.iters, self.persistent, self.layout = float(coef), iters, persistent, layout
        for i, w in enumerate(self._weights):
            rows = _as_matrix(w.detach(), layout).shape[0]
            self.register_buffer(f"u{i}", torch.ones(rows, dtype=w.dtype, device=w.device), persistent=persistent)

    def sigmas(self) -> list[Tensor]:
        out = []
        for i, w in enumerate(self._weights):
            u = getattr(self, f"u{i}") if self.persistent else None
            sigma, u_new, _ = spectral_norm_estimate(w, self.iters, u, self.layout, return_uv=True)
            if self.persistent:
                getattr(self, f"u{i}").copy_(u_new)
            out.append(sigma)
        return out

    def forward(self) -> Tensor:
        return self.coef * torch.stack([s.square() for s in self.sigmas()]).sum()


def apply_spectral_norm(model: nn.Module, types: tuple[type, ...] = (nn.Linear, nn.Conv2d),
                        n_power_iterations: int = 1) -> nn.Module:
    """Spectral normalisation W / sigma(W) inside the forward pass of every `types` submodule, via torch's
    parametrization (persistent u, updated in training mode).  A post-step projection is not equivalent:
    gradients must flow through W / sigma(W) (the article's Keras kernel_constraint bug).  In place."""
    for m in list(model.modules()):
        if isinstance(m, types):
            _torch_spectral_norm(m, n_power_iterations=n_power_iterations)
    return model


@torch.no_grad()
def project_spectral_norm_(model: nn.Module, types: tuple[type, ...] = (nn.Linear,), clip_only: bool = False
                           ) -> nn.Module:
    """Post-step projection W <- W / sigma(W) (exact sigma; clip_only: W / max(sigma, 1)) of every `types`
    submodule, in place: what Keras' kernel_constraint does after each update.  The article's point
    (https://kexue.fm/archives/6051): the forward weights are the same as spectral normalisation's, but the
    gradients do not flow through W / sigma(W), and WGAN critics trained so are worse; use
    `apply_spectral_norm` for the real thing.  Call it after optimizer.step()."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    clip_only = check_bool("clip_only", clip_only)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, types)]
    for name, m in layers:          # check all before changing any
        if not torch.isfinite(m.weight).all():
            raise ValueError(f"project_spectral_norm_: the weight of layer {name or type(m).__name__!r} has "
                             "non-finite values (NaN or inf); expected finite weights")
    for _, m in layers:
        w = _as_matrix(m.weight, "torch")
        sigma = torch.linalg.matrix_norm(w.to(torch.promote_types(w.dtype, torch.float32)), ord=2)
        sigma = sigma.to(w.dtype)
        m.weight.div_(sigma.clamp_min(1.0) if clip_only else sigma.clamp_min(torch.finfo(sigma.dtype).tiny))
    return model


_ONE_LIPSCHITZ = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout)


def lipschitz_upper_bound(model: nn.Sequential) -> Tensor:
    """prod of the exact spectral norms of the Linear layers of a Sequential MLP whose other layers are
    activations with Lipschitz constant <= 1 (ReLU, LeakyReLU with |slope| <= 1, tanh, sigmoid; GELU is
    ~1.13 and refused).  Residual blocks, attention and convolutions have no such bound: TypeError."""
    bound = torch.tensor(1.0)
    for m in model:
        if isinstance(m, nn.Linear):
            bound = bound * torch.linalg.matrix_norm(m.weight.detach().float(), ord=2)
        elif isinstance(m, _ONE_LIPSCHITZ) or (isinstance(m, nn.LeakyReLU) and abs(m.negative_slope) <= 1):
            continue
        else:
            raise TypeError(f"lipschitz_upper_bound: unsupported layer {type(m).__name__} (Linear and "
                            f"1-Lipschitz activations only)")
    return bound


@torch.no_grad()
def empirical_lipschitz(fn: Callable[[Tensor], Tensor], x: Tensor, n_pairs: int = 1000, radius: float = 1e-2,
                        generator: torch.Generator | None = None) -> Tensor:
    """max |f(x1) - f(x2)| / |x1 - x2| over n_pairs pairs: x1 drawn from the rows of x [N, ...],
    x2 = x1 + radius * random unit direction.  A lower bound on the true Lipschitz constant."""
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"empirical_lipschitz: x must hold at least one row to draw from, got shape {tuple(x.shape)}")
    n_pairs = check_int("n_pairs", n_pairs, 1)
    radius = check_float("radius", radius, 0.0, low_open=True)
    idx = torch.randint(0, x.shape[0], (n_pairs,), generator=generator)
    x1 = x[idx]
    d = torch.randn(x1.shape, generator=generator, dtype=x.dtype)
    d = radius * d / d.flatten(1).norm(dim=1).reshape(-1, *[1] * (x.dim() - 1))
    num = (fn(x1 + d) - fn(x1)).flatten(1).norm(dim=1)
    return (num / d.flatten(1).norm(dim=1)).max()


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, lam: float = 10.0,
                     target: float = 1.0, one_sided: bool = False, interpolation: str = "uniform",
                     generator: torch.Generator | None = None) -> Tensor:
    """lam * mean (|grad_x f(x_hat)| - target)^2 (WGAN-GP) or, one_sided, lam * mean max(|grad| - target, 0)^2,
    the author's preferred form (https://kexue.fm/archives/6051).  interpolation: "uniform" (x_hat =
    eps real + (1 - eps) fake, eps ~ U[0, 1] per example), "real" or "fake".  Uses create_graph=True
    (double backprop).  Do not put BatchNorm in the critic: per-sample gradients then mix the batch."""
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    lam, target = check_float("lam", lam, 0.0), check_float("target", target)
    if interpolation == "uniform":
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, dtype=real.dtype,
                         device=real.device)  # [B, 1, ...]: one eps per example
        x_hat = eps * real.detach() + (1 - eps) * fake.detach()
    elif interpolation in ("real", "fake"):
        x_hat = (real if interpolation == "real" else fake).detach().clone()
    else:
        raise ValueError(f"gradient_penalty: interpolation must be 'uniform', 'real' or 'fake', got {interpolation!r}")
    x_hat.requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    gap = grad.flatten(1).norm(dim=1) - target  # [B]
    if one_sided:
        gap = gap.clamp_min(0)
    return lam * mean_or_zero(gap.square())  # an empty batch: 0, not NaN


def wgan_critic_loss(critic_real: Tensor, critic_fake: Tensor) -> Tensor:
    """mean f(fake) - mean f(real); its negative estimates W_1 for a 1-Lipschitz critic."""
    return mean_or_zero(critic_fake) - mean_or_zero(critic_real)


def wgan_generator_loss(critic_fake: Tensor) -> Tensor:
    """-mean f(G(z))."""
    return -mean_or_zero(critic_fake)
