"""Optimization as dynamics (https://kexue.fm/archives/5655): GD is the Euler method for the gradient flow
θ' = −∇L(θ), SGD an Euler–Maruyama step of an SDE whose temperature is ∝ lr/B, and heavy-ball momentum the
discretised damped particle θ'' + λθ' = −∇L(θ) with step h: lr = h², momentum β = 1 − λh.

A lens for teaching and tests: the optimizers themselves are `torch.optim.SGD` (`HeavyBall` only adds the ODE
constructor); `gradient_flow` / `second_order_flow` integrate the continuous limits with a fixed step (RK4 or
Euler) to compare iterates with; `LangevinSGD` adds √(2·lr·T) Gaussian noise after each step, whose stationary
density for a plain SGD inner step is ∝ exp(−L/T) (small lr).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.optim.base import DerivedOptimizer

__all__ = ["momentum_from_ode", "ode_from_momentum", "effective_lr", "sgd_temperature",
           "quadratic_stationary_variance", "HeavyBall", "gradient_flow", "second_order_flow", "LangevinSGD"]


def momentum_from_ode(h: float, friction: float) -> tuple[float, float]:
    """(lr, momentum) = (h², 1 − friction·h): torch SGD(momentum, dampening=0) is θ'' + λθ' = −∇L stepped by h."""
    h = check_float("h", h, low=0.0, low_open=True)
    friction = check_float("friction", friction, low=0.0)
    if friction * h > 1.0:
        raise ValueError(f"friction * h must be <= 1 (momentum 1 - friction*h >= 0), got friction={friction!r}, "
                         f"h={h!r} (product {friction * h!r})")
    lr = h * h
    if not 0.0 < lr < math.inf:
        raise ValueError(f"h must have a finite, non-zero square (the lr), got h={h!r} (h**2 = {lr!r})")
    return lr, 1.0 - friction * h


def ode_from_momentum(lr: float, momentum: float) -> tuple[float, float]:
    """(h, friction) = (√lr, (1 − momentum)/√lr), the inverse of `momentum_from_ode`."""
    lr = check_float("lr", lr, low=0.0, low_open=True)
    momentum = check_float("momentum", momentum, 0.0, 1.0)
    h = math.sqrt(lr)
    return h, (1.0 - momentum) / h


def effective_lr(lr: float, momentum: float) -> float:
    """lr / (1 − momentum): the step heavy ball takes along a flat, slowly varying direction. Compare momentum
    with plain SGD at equal effective lr, otherwise "acceleration" is only a larger step."""
    lr = check_float("lr", lr, low=0.0)
    momentum = check_float("momentum", momentum, 0.0, 1.0, high_open=True)
    return lr / (1.0 - momentum)


def sgd_temperature(lr: float, batch_size: int, grad_noise_var: float, momentum: float = 0.0) -> float:
    """T = lr·σ² / (2·B·(1 − momentum)) for per-sample gradient-noise variance σ²: the stationary density of
    small-lr SGD is ∝ exp(−L/T), so on L = ½λθ² the variance is ≈ T/λ. Raising B acts like lowering lr."""
    lr = check_float("lr", lr, low=0.0)
    batch_size = check_int("batch_size", batch_size, low=1)
    grad_noise_var = check_float("grad_noise_var", grad_noise_var, low=0.0)
    momentum = check_float("momentum", momentum, 0.0, 1.0, high_open=True)
    return lr * grad_noise_var / (2.0 * batch_size * (1.0 - momentum))


def quadratic_stationary_variance(lr: float, curvature: float, noise_var: float, momentum: float = 0.0) -> float:
    """Exact stationary variance of torch SGD (heavy ball) on L = ½λθ² with gradient noise variance s²
    (the AR(2) formula): (1+β)·lr·s² / ((1−β)·λ·(2(1+β) − lr·λ)); β = 0 gives lr·s² / (λ(2 − lr·λ)).
    Tends to T/λ (`sgd_temperature` with B = 1) as lr → 0. Raises when the iteration is unstable."""
    lr = check_float("lr", lr, low=0.0, low_open=True)
    curvature = check_float("curvature", curvature, low=0.0, low_open=True)
    noise_var = check_float("noise_var", noise_var, low=0.0)
    beta = check_float("momentum", momentum, 0.0, 1.0, high_open=True)
    if lr * curvature >= 2.0 * (1.0 + beta):
        raise ValueError(f"lr * curvature must be < 2 * (1 + momentum) = {2 * (1 + beta)!r} for a stationary "
                         f"state, got lr={lr!r}, curvature={curvature!r}")
    return (1 + beta) * lr * noise_var / ((1 - beta) * curvature * (2 * (1 + beta) - lr * curvature))


class HeavyBall(torch.optim.SGD):
    """torch.optim.SGD (dampening 0) built from the damped particle θ'' + λθ' = −∇L stepped by h
    (https://kexue.fm/archives/5655): `HeavyBall.from_ode(params, h, friction)` == SGD(lr=h², momentum=1−λh).
    Its iterates are exactly those of that SGD; `ode` gives back (h, friction)."""

    @classmethod
    def from_ode(cls, params: Any, h: float, friction: float, nesterov: bool = False) -> "HeavyBall":
        check_bool("nesterov", nesterov)
        lr, momentum = momentum_from_ode(h, friction)
        return cls(params, lr=lr, momentum=momentum, dampening=0.0, nesterov=nesterov)

    @property
    def ode(self) -> tuple[float, float]:
        """(h, friction) of the first param group."""
        group = self.param_groups[0]
        return ode_from_momentum(group["lr"], group["momentum"])


def _check_times(t: Tensor) -> Tensor:
    if not isinstance(t, Tensor) or t.dim() != 1 or t.numel() == 0 or not t.is_floating_point():
        raise ValueError(f"t must be a non-empty 1-D floating tensor of times, got "
                         f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()) or bool((t[1:] < t[:-1]).any()):
        raise ValueError(f"t must hold finite, non-negative, non-decreasing times, got {t.tolist()[:8]}")
    return t


def _integrate(rhs: Callable[[tuple[Tensor, ...]], tuple[Tensor, ...]], state: tuple[Tensor, ...], t: Tensor,
               method: str, substeps: int) -> list[tuple[Tensor, ...]]:
    """Fixed-step integration of y' = rhs(y) from time 0; the state at every time in t."""
    out, now = [], 0.0
    for target in t.tolist():
        dt = (target - now) / substeps
        for _ in range(substeps if dt > 0 else 0):
            k1 = rhs(state)
            if method == "euler":
                state = tuple(y + dt * k for y, k in zip(state, k1))
                continue
            k2 = rhs(tuple(y + 0.5 * dt * k for y, k in zip(state, k1)))
            k3 = rhs(tuple(y + 0.5 * dt * k for y, k in zip(state, k2)))
            k4 = rhs(tuple(y + dt * k for y, k in zip(state, k3)))
            state = tuple(y + dt / 6 * (a + 2 * b + 2 * c + d) for y, a, b, c, d in zip(state, k1, k2, k3, k4))
        now = target
        out.append(state)
    return out


@torch.no_grad()
def gradient_flow(grad_fn: Callable[[Tensor], Tensor], theta0: Tensor, t: Tensor, method: str = "rk4",
                  substeps: int = 100) -> Tensor:
    """θ(t) of θ' = −grad_fn(θ), θ(0) = theta0, at each time of the 1-D non-decreasing `t`:
    [len(t), *theta0.shape]. Fixed step: `substeps` steps of `method` ("rk4" | "euler") between output times."""
    check_choice("method", method, ("rk4", "euler"))
    check_int("substeps", substeps, low=1)
    t = _check_times(t)
    states = _integrate(lambda s: (-grad_fn(s[0]),), (theta0.detach().clone(),), t, method, substeps)
    return torch.stack([s[0] for s in states])


@torch.no_grad()
def second_order_flow(grad_fn: Callable[[Tensor], Tensor], theta0: Tensor, v0: Tensor, friction: float, t: Tensor,
                      method: str = "rk4", substeps: int = 100) -> Tensor:
    """θ(t) of the damped particle θ'' + friction·θ' = −grad_fn(θ), θ(0) = theta0, θ'(0) = v0, at each time of
    `t`: [len(t), *theta0.shape]. Heavy ball with lr = h², momentum 1 − friction·h samples it at t = n·h."""
    friction = check_float("friction", friction, low=0.0)
    check_choice("method", method, ("rk4", "euler"))
    check_int("substeps", substeps, low=1)
    t = _check_times(t)
    if v0.shape != theta0.shape:
        raise ValueError(f"v0 must have theta0's shape {tuple(theta0.shape)}, got {tuple(v0.shape)}")
    states = _integrate(lambda s: (s[1], -friction * s[1] - grad_fn(s[0])),
                        (theta0.detach().clone(), v0.detach().clone()), t, method, substeps)
    return torch.stack([s[0] for s in states])


class LangevinSGD(DerivedOptimizer):
    """Langevin dynamics around an optimizer (https://kexue.fm/archives/5655): after each real inner update,
    θ ← θ + √(2·lr·T)·ε, ε ~ N(0, I), for every parameter that got a gradient. With a plain SGD inner step this
    is the Euler–Maruyama step of dθ = −∇L dt + √(2T) dW, whose stationary density is ∝ exp(−L/T) (for small
    lr). `temperature` T >= 0 is a per-group hyperparameter (group key "temperature": anneal it with a
    scheduler); `seed` makes the noise reproducible (its generator state is not saved in `state_dict`)."""

    def __init__(self, optimizer: Optimizer, temperature: float, seed: int | None = None) -> None:
        temperature = check_float("temperature", temperature, low=0.0)
        if seed is not None:
            check_int("seed", seed, low=0)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        super().__init__(optimizer, temperature=temperature)

    def hparams(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def _before(self, closure: Callable | None) -> Any:
        """Refuse, before the inner step changes anything, a noise scale that would overflow to inf."""
        for group in self.param_groups:
            scale = math.sqrt(2.0 * float(group["lr"]) * float(group["temperature"]))
            for p in group["params"]:
                if p.grad is not None and not scale * 64 < torch.finfo(p.dtype).max:
                    raise ValueError(f"temperature * lr too large for {p.dtype} noise: sqrt(2 * lr * temperature) = "
                                     f"{scale!r} with temperature={group['temperature']!r}, lr={group['lr']!r}")
        return None

    def _after(self, ctx: Any, updated: bool) -> None:
        if not updated:
            return
        for group in self.param_groups:
            scale = math.sqrt(2.0 * float(group["lr"]) * float(group["temperature"]))
            if scale == 0.0:
                continue
            for p in group["params"]:
                if p.grad is not None:
                    noise = torch.randn(p.shape, generator=self._generator(p.device), device=p.device, dtype=p.dtype)
                    p.add_(noise, alpha=scale)
