"""Position-wise feed-forward blocks: dense-act-dense, and the gated variant of T5 1.1 / mT5
(Shazeer, "GLU Variants Improve Transformer", arXiv 2002.05202)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_bool, check_float, check_int

__all__ = ["FeedForward", "activation"]


def _gelu_tanh(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


def _gelu_fast(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh, "gelu_fast": _gelu_fast,
    "relu": F.relu, "silu": F.silu, "swish": F.silu, "tanh": torch.tanh,
}


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """Map a Hugging Face `hidden_act` name to a function (used only at the config boundary)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"hidden_act={name!r} is not supported; expected one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class FeedForward(nn.Module):
    """down(act(up(x))) or, gated, down(act(gate(x)) * up(x)); x [B, n, hidden_size] -> [B, n, hidden_size]
    through an inner width `intermediate_size` (the config name of transformers and bert4keras)."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: Callable[[Tensor], Tensor], bias: bool = True,
                 gated: bool = False, dropout: float = 0.0):
        super().__init__()
        hidden_size = check_int("hidden_size", hidden_size, 1)
        intermediate_size = check_int("intermediate_size", intermediate_size, 1)
        gated, bias = check_bool("gated", gated), check_bool("bias", bias)
        dropout = check_float("dropout", dropout, 0.0, 1.0, high_open=True)
        if not callable(act):
            raise TypeError(f"act must be a callable (see activation(name)), got {act!r}")
        self.up = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.gate = nn.Linear(hidden_size, intermediate_size, bias=bias) if gated else None
        self.down = nn.Linear(intermediate_size, hidden_size, bias=bias)
        self.act = act
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.up.in_features:
            raise ValueError(f"x must end in hidden_size={self.up.in_features}, got shape {tuple(x.shape)}")
        if self.gate is None:
            h = self.act(self.up(x))                                         # [B, n, hidden]
        else:
            h = self.act(self.gate(x)) * self.up(x)                          # [B, n, hidden]
        return self.down(self.dropout(h))
