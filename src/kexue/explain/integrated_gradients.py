"""Integrated gradients (https://kexue.fm/archives/7533; Sundararajan, Taly, Yan, ICML 2017).

    IG_i(x) = (x_i - x'_i) * ∫_0^1 dF/dx_i(x' + α (x - x')) dα,     Σ_i IG_i = F(x) - F(x')  (completeness)

The integral is a quadrature Σ_k w_k g(α_k) over `n_steps` nodes. The rules are captum's, except that
"riemann_trapezoid" here is the real trapezoid rule (weights 1/(n-1), halved at both ends, summing to 1);
captum 0.9 weights it 1/n, so its trapezoid attributions are (n-1)/n of the exact ones for a linear F.
`demo_compatible=True` reproduces the author's bert4keras demo instead: nodes k/(n-1), k = 0..n-1, and the
gradient times the *interpolated* input α (x - x') averaged over the nodes; it breaks completeness and is
meant only for parity checks.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = ["integrated_gradients", "quadrature", "METHODS"]

METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
_SPELLINGS = {"gauss_legendre": "gausslegendre"}   # the spec's spelling of captum's name


def quadrature(method: str, n_steps: int, demo_compatible: bool = False) -> tuple[Tensor, Tensor]:
    """Nodes α_k in [0, 1] and weights w_k (float64 [n_steps] each) with Σ_k w_k g(α_k) ≈ ∫_0^1 g(α) dα."""
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    method = _SPELLINGS.get(method, method)
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not supported; expected one of {METHODS}")
    n = n_steps
    k = torch.arange(n, dtype=torch.float64)
    uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if demo_compatible:                              # the demo: α_k = k/(n-1), mean of grad * α(x - x')
        if n < 2:
            raise ValueError(f"n_steps must be >= 2 with demo_compatible=True, got {n}")
        alphas = k / (n - 1)
        return alphas, alphas / n
    if method == "riemann_left":
        return k / n, uniform
    if method == "riemann_right":
        return (k + 1) / n, uniform
    if method == "riemann_middle":
        return (k + 0.5) / n, uniform
    if method == "riemann_trapezoid":
        if n < 2:
            raise ValueError(f"n_steps must be >= 2 for riemann_trapezoid, got {n}")
        w = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        w[0] = w[-1] = 0.5 / (n - 1)
        return k / (n - 1), w
    nodes, weights = np.polynomial.legendre.leggauss(n)          # on [-1, 1]
    return torch.from_numpy(0.5 * (nodes + 1.0)), torch.from_numpy(0.5 * weights)


def _select(out: Tensor, target: Tensor | None, rows: int) -> Tensor:
    """forward_fn output [R] or [R, C] -> the scalar per row [R] (the target column when given)."""
    if not isinstance(out, Tensor) or out.dim() not in (1, 2) or out.shape[0] != rows:
        raise ValueError(f"forward_fn must return a tensor [R] or [R, C] with R = {rows} rows, got "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    if out.dim() == 1:
        if target is not None:
            raise ValueError("target must be None when forward_fn returns one scalar per example [R]")
        return out
    if target is None:
        if out.shape[1] != 1:
            raise ValueError(f"target is required when forward_fn returns [R, C] with C = {out.shape[1]} > 1")
        return out[:, 0]
    if int(target.min()) < 0 or int(target.max()) >= out.shape[1]:
        raise ValueError(f"target holds ids in [{int(target.min())}, {int(target.max())}], outside [0, {out.shape[1]})")
    return out.gather(1, target.view(-1, 1).expand(rows, 1))[:, 0]


def _as_target(target: int | Tensor | None, B: int, device: torch.device) -> Tensor | None:
    if target is None:
        return None
    if isinstance(target, int) and not isinstance(target, bool):
        return torch.full((B,), target, dtype=torch.long, device=device)
    if isinstance(target, Tensor) and not target.is_floating_point() and target.dtype != torch.bool:
        t = target.to(device=device, dtype=torch.long).reshape(-1)
        if t.numel() == 1:
            return t.expand(B).clone()
        if t.numel() == B:
            return t
    raise TypeError(f"target must be None, an int or an integer tensor of {B} ids, got {target!r}")


def endpoint_values(forward_fn: Callable[[Tensor], Tensor], x: Tensor, target: Tensor | None) -> Tensor:
    """F(x) per example [B] (no gradient), checked finite."""
    with torch.no_grad():
        f = _select(forward_fn(x), target, x.shape[0])
    if not bool(torch.isfinite(f).all()):
        raise ValueError(f"forward_fn returned non-finite values {f.tolist()}")
    return f


def integrated_gradients(forward_fn: Callable[[Tensor], Tensor], inputs: Tensor,
                         baseline: Tensor | float | None = None, target: int | Tensor | None = None,
                         n_steps: int = 50, method: str = "gausslegendre", internal_batch_size: int | None = None,
                         return_convergence_delta: bool = True,
                         demo_compatible: bool = False) -> tuple[Tensor, Tensor] | Tensor:
    """Integrated gradients of `forward_fn` at `inputs` [B, ...] from `baseline` (None = zeros).

    forward_fn maps a batch [R, ...] to [R] or [R, C] (then `target`: int or LongTensor [B] picks the column).
    Steps are evaluated `internal_batch_size` rows at a time (all n_steps * B at once when None).
    Returns attributions [B, ...] and delta [B] = Σ attributions - (F(x) - F(x')) (attributions alone
    when return_convergence_delta=False)."""
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating tensor [B, ...], got "
                        f"{getattr(inputs, 'dtype', type(inputs).__name__)}")
    if inputs.dim() < 1 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must be a non-empty batch [B, ...], got shape {tuple(inputs.shape)}")
    if internal_batch_size is not None and (not isinstance(internal_batch_size, int) or internal_batch_size < 1):
        raise ValueError(f"internal_batch_size must be None or a positive int, got {internal_batch_size!r}")
    x = inputs.detach()
    B, S = x.shape[0], x.shape[1:]
    if baseline is None:
        base = torch.zeros_like(x)
    elif isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        base = torch.full_like(x, float(baseline))
    elif isinstance(baseline, Tensor):
        try:
            base = baseline.detach().to(x).broadcast_to(x.shape)
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to inputs "
                             f"{tuple(x.shape)}") from None
    else:
        raise TypeError(f"baseline must be None, a number or a tensor, got {type(baseline).__name__}")
    tgt = _as_target(target, B, x.device)
    alphas, weights = (t.to(x.dtype).to(x.device) for t in quadrature(method, n_steps, demo_compatible))
    diff = x - base                                                                   # [B, ...]
    per_chunk = n_steps if internal_batch_size is None else max(1, internal_batch_size // B)
    ones = (1,) * len(S)
    total = torch.zeros_like(x)
    for start in range(0, n_steps, per_chunk):
        a, w = alphas[start:start + per_chunk], weights[start:start + per_chunk]
        k = a.shape[0]
        points = (base[None] + a.view(k, 1, *ones) * diff[None]).reshape(k * B, *S)   # [k*B, ...] step-major
        points.requires_grad_(True)
        with torch.enable_grad():
            out = _select(forward_fn(points), None if tgt is None else tgt.repeat(k), k * B)
            grad = None
            if out.requires_grad:
                (grad,) = torch.autograd.grad(out.sum(), points, allow_unused=True)
        if grad is not None:                                                          # None: F ignores x
            total += (grad.view(k, B, *S) * w.view(k, 1, *ones)).sum(0)
    attributions = diff * total
    if not bool(torch.isfinite(attributions).all()):
        raise ValueError("integrated_gradients: the attributions are not finite (forward_fn produced NaN/inf "
                         "gradients along the path)")
    if not return_convergence_delta:
        return attributions
    f_x, f_base = endpoint_values(forward_fn, x, tgt), endpoint_values(forward_fn, base, tgt)
    delta = attributions.reshape(B, -1).sum(1) - (f_x - f_base)
    return attributions, delta
