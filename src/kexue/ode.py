"""ODE solvers written as RNNs, and fitting an ODE's parameters by backprop through the solver
(https://kexue.fm/archives/5643).

Euler's method x_{n+1} = x_n + h f(x_n, t_n) is an RNN with an empty input sequence and the initial condition as
its state (`kexue.nn.unroll`): the forward pass solves the ODE, and backprop through it fits the ODE's parameters
to observations (`fit_ode`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from kexue._validate import check_choice, check_float, check_int
from kexue.nn.rnn import unroll

__all__ = ["ODEStepper", "ParametricODE", "observations_to_grid", "masked_mse", "fit_ode"]


class ODEStepper(nn.Module):
    """Fixed-step integrator of dx/dt = func(x, t) written as an RNN (https://kexue.fm/archives/5643):
    x0 [B, D] -> states after each of `steps` steps [B, steps, D]. `deriv_clip` clamps the derivative."""

    METHODS = ("euler", "midpoint", "rk4")

    def __init__(self, func: Callable[[Tensor, float], Tensor], h: float, method: str = "euler",
                 deriv_clip: float | None = None):
        super().__init__()
        check_choice("method", method, self.METHODS)
        h = check_float("h", h, 0.0, low_open=True)
        if deriv_clip is not None:
            deriv_clip = check_float("deriv_clip", deriv_clip, 0.0, low_open=True)
        self.func, self.h, self.method, self.deriv_clip = func, h, method, deriv_clip

    def _f(self, x: Tensor, t: float) -> Tensor:
        d = self.func(x, t)
        return d if self.deriv_clip is None else d.clamp(-self.deriv_clip, self.deriv_clip)

    def step(self, x: Tensor, t: float) -> Tensor:
        h, f = self.h, self._f
        if self.method == "euler":
            return x + h * f(x, t)
        if self.method == "midpoint":
            return x + h * f(x + h / 2 * f(x, t), t + h / 2)
        k1 = f(x, t)
        k2 = f(x + h / 2 * k1, t + h / 2)
        k3 = f(x + h / 2 * k2, t + h / 2)
        k4 = f(x + h * k3, t + h)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    def forward(self, x0: Tensor, steps: int, t0: float = 0.0) -> Tensor:
        steps = check_int("steps", steps, 1)

        def cell(_, states):                                                  # the "input" sequence is empty
            x, n = states
            x = self.step(x, t0 + n * self.h)
            return x, [x, n + 1]

        empty = x0.new_zeros(x0.shape[0], steps, 0)
        _, traj, _ = unroll(cell, empty, [x0, 0])
        return traj


class ParametricODE(nn.Module):
    """Right-hand side rhs(x, params) with named trainable parameters (https://kexue.fm/archives/5643).
    transform: "none" (raw), "log" (params = exp(theta), positive) or "scale" (params = theta * init, so every
    trainable value starts at 1: parameters of very different magnitudes become O(1))."""

    def __init__(self, rhs: Callable[[Tensor, dict[str, Tensor]], Tensor], init: dict[str, float],
                 transform: str = "none", dtype: torch.dtype = torch.float64):
        super().__init__()
        if transform not in ("none", "log", "scale"):
            raise ValueError(f"transform must be 'none', 'log' or 'scale', got {transform!r}")
        if transform == "log" and any(v <= 0 for v in init.values()):
            raise ValueError(f"transform='log' needs positive initial values, got {init}")
        self.rhs, self.transform = rhs, transform
        self.register_buffer("init_values", torch.tensor(list(init.values()), dtype=dtype))
        start = {"none": self.init_values, "log": self.init_values.log(),
                 "scale": torch.ones_like(self.init_values)}[transform]
        self.theta = nn.Parameter(start.clone())
        self.names = list(init)

    def params(self) -> dict[str, Tensor]:
        th = self.theta                                   # only the chosen transform: this runs at every step
        p = th if self.transform == "none" else th.exp() if self.transform == "log" else th * self.init_values
        return dict(zip(self.names, p.unbind()))

    def forward(self, x: Tensor, t: float = 0.0) -> Tensor:
        return self.rhs(x, self.params())


def observations_to_grid(times: Sequence[float], values: Tensor, h: float, steps: int) -> tuple[Tensor, Tensor]:
    """Observations at `times` (values [K, D]) -> targets [steps, D] and a bool mask [steps]; output index
    round(t / h) - 1 (outputs start after the first step). t = 0 is the initial condition and is skipped."""
    h, steps = check_float("h", h, 0.0, low_open=True), check_int("steps", steps, 1)
    values = torch.as_tensor(values)
    targets = values.new_zeros(steps, values.shape[-1])
    mask = torch.zeros(steps, dtype=torch.bool)
    for t, v in zip(times, values):
        idx = round(t / h) - 1
        if idx == -1:
            continue
        if not 0 <= idx < steps:
            raise ValueError(f"observation time {t} maps to grid index {idx}, outside [0, {steps}) for h={h}")
        targets[idx], mask[idx] = v, True
    return targets, mask


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor, reduction: str = "sum") -> Tensor:
    """Squared error on the observed steps only (mask [..., T] bool; pred/target [..., T, D])."""
    err = ((pred - target) ** 2 * mask[..., None].to(pred.dtype))
    if reduction == "sum":
        return err.sum()
    if reduction == "mean":
        return err.sum() / (mask.sum() * pred.shape[-1]).clamp_min(1)
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def fit_ode(model: ParametricODE, x0: Tensor, times: Sequence[float], values: Tensor, h: float, steps: int,
            optimizer: str = "adam", lr: float = 1e-4, epochs: int = 10_000, method: str = "euler",
            deriv_clip: float | None = 1e5, callback: Callable[[int, float], None] | None = None) -> dict:
    """Fit the ODE parameters by backprop through the unrolled solver (the article's recipe: Euler, masked
    squared error, Adam). optimizer: "adam" (Keras eps 1e-7) or "lbfgs" (strong-Wolfe line search)."""
    epochs, lr = check_int("epochs", epochs, 0), check_float("lr", lr, 0.0, low_open=True)
    dtype = model.theta.dtype
    x0 = torch.as_tensor(x0, dtype=dtype).reshape(1, -1)
    target, mask = observations_to_grid(times, torch.as_tensor(values, dtype=dtype), h, steps)
    stepper = ODEStepper(model, h, method, deriv_clip)
    loss_fn = lambda: masked_mse(stepper(x0, steps)[0], target, mask)          # noqa: E731
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
    elif optimizer == "lbfgs":
        opt = torch.optim.LBFGS(model.parameters(), lr=lr, max_iter=20, line_search_fn="strong_wolfe")
    else:
        raise ValueError(f"optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
    history = []

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"ODE fit diverged: loss = {loss.item()}; lower lr or clip the derivative")
        loss.backward()
        return loss

    for epoch in range(epochs):
        loss = opt.step(closure)
        history.append(loss.item())
        if callback is not None:
            callback(epoch, history[-1])
    with torch.no_grad():
        final = loss_fn().item()
    return {"loss": final, "history": history, "params": {k: v.item() for k, v in model.params().items()}}
