"""Custom RNNs from a step function, a mask-aware bidirectional RNN, and ODE solvers written as RNNs
(https://kexue.fm/archives/5643, https://kexue.fm/archives/6810).

Any recursion y_t = f(y_{t-1}, x_t) is an RNN; `unroll` is Keras's K.rnn. Euler's method x_{n+1} = x_n + h f(x_n, t_n)
is an RNN with an empty input sequence and the initial condition as its state: the forward pass solves the ODE,
and backprop through it fits the ODE's parameters to observations (`fit_ode`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kexue._validate import check_choice, check_float, check_int

__all__ = ["unroll", "SimpleRNNCell", "MaskedBiRNN", "ODEStepper", "ParametricODE", "observations_to_grid",
           "masked_mse", "fit_ode"]

StepFn = Callable[[Tensor, list], tuple[Tensor, list]]


def _bool_mask(mask: Tensor) -> Tensor:
    """A 0/1 mask (bool, int or float) as bool; any other value is an error, never read as True."""
    if mask.dtype != torch.bool and ((mask != 0) & (mask != 1)).any():
        raise ValueError("mask must hold only 0/1 (True = real step), got other values")
    return mask.bool()


def unroll(step_fn: StepFn, inputs: Tensor, initial_states: Sequence[Tensor], batch_first: bool = True,
           mask: Tensor | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Run `step_fn(x_t, states) -> (y_t, new_states)` over time: inputs [B, T, ...] -> (last output,
    outputs [B, T, ...], final states). mask [B, T] (True = real): at pads the states and output are carried."""
    x = inputs if batch_first else inputs.transpose(0, 1)
    mask = None if mask is None else _bool_mask(mask)
    states, outputs, y = list(initial_states), [], None
    for t in range(x.shape[1]):
        y_new, new_states = step_fn(x[:, t], states)
        if mask is not None:
            m = mask[:, t]
            keep = lambda new, old: torch.where(m.view(-1, *([1] * (new.dim() - 1))), new, old)   # noqa: E731
            new_states = [keep(n, o) for n, o in zip(new_states, states)]
            y_new = keep(y_new, torch.zeros_like(y_new) if y is None else y)
        y, states = y_new, list(new_states)
        outputs.append(y)
    if not outputs:
        raise ValueError(f"inputs must have at least one time step, got shape {tuple(inputs.shape)}")
    out = torch.stack(outputs, 1)                                             # [B, T, ...]
    return y, (out if batch_first else out.transpose(0, 1)), states


class SimpleRNNCell(nn.Module):
    """The article's template cell y_t = tanh(W1 y_{t-1} + W2 x_t + b), as a step function for `unroll`."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        input_size, hidden_size = check_int("input_size", input_size, 1), check_int("hidden_size", hidden_size, 1)
        self.w_in = nn.Linear(input_size, hidden_size)
        self.w_rec = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x_t: Tensor, states: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        y = torch.tanh(self.w_rec(states[0]) + self.w_in(x_t))
        return y, [y]


class MaskedBiRNN(nn.Module):
    """Bidirectional nn.LSTM / nn.GRU / nn.RNN over right-padded batches via packing, so the backward direction
    starts at each sequence's last real token (https://kexue.fm/archives/6810). Pad outputs are 0."""

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        if not isinstance(rnn, nn.RNNBase) or not rnn.bidirectional or not rnn.batch_first:
            raise ValueError(f"rnn must be an nn.LSTM/GRU/RNN with bidirectional=True and batch_first=True, got {rnn}")
        self.rnn = rnn

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        """x [B, n, input], mask [B, n] (True = real) -> (outputs [B, n, 2 * hidden], final states)."""
        B, n = mask.shape
        mask = _bool_mask(mask)
        lengths = mask.long().sum(1)
        if x.shape[:2] != (B, n) or not torch.equal(mask.bool(), torch.arange(n, device=mask.device) < lengths[:, None]):
            raise ValueError(f"mask must be a [B, n] = {tuple(x.shape[:2])} right-padding prefix, got shape "
                             f"{tuple(mask.shape)}")
        if (lengths == 0).any():
            raise ValueError(f"every sequence needs at least one real token, got lengths {lengths.tolist()}")
        if B == 0:                                                           # nothing to pack: the RNN's own empty output
            return self.rnn(x)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=n)
        return out, state


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
        p = {"none": self.theta, "log": self.theta.exp(), "scale": self.theta * self.init_values}[self.transform]
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
