"""Custom RNNs from a step function and a mask-aware bidirectional RNN
(https://kexue.fm/archives/5643, https://kexue.fm/archives/6810).

Any recursion y_t = f(y_{t-1}, x_t) is an RNN; `unroll` is Keras's K.rnn. The ODE solvers written as RNNs
(`ODEStepper`, `fit_ode`) live in `kexue.ode`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kexue._validate import check_int

__all__ = ["unroll", "SimpleRNNCell", "MaskedBiRNN"]

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
