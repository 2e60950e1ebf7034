"""ON-LSTM: ordered neurons with cumax master gates (https://kexue.fm/archives/6621).

c_t = w * (f * c_{t-1} + i * g) + (F - w) * c_{t-1} + (I - w) * g,  w = F * I, with the master forget gate
F = cumax(.) (rising to 1) and master input gate I = mirrored cumax (falling from 1; or 1 - cumax, the
paper's form), each over `levels` units repeated `chunk_size` times. Syntactic distance d_t = 1 - mean(F_t);
`kexue.metrics.build_tree` builds trees from it top-down by splitting at the largest distance.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_float, check_int

__all__ = ["cumax", "ONLSTMCell", "ONLSTM", "syntactic_distance"]


def cumax(x: Tensor, dim: int = -1, direction: str = "l2r") -> Tensor:
    """cumsum(softmax(x)): "l2r" rises to 1 at the end, "r2l" (mirrored) falls from 1 at the start."""
    if direction == "l2r":
        return x.softmax(dim).cumsum(dim)
    if direction == "r2l":
        return x.softmax(dim).flip(dim).cumsum(dim).flip(dim)
    raise ValueError(f"direction must be 'l2r' or 'r2l', got {direction!r}")


class ONLSTMCell(nn.Module):
    """One ON-LSTM step (https://kexue.fm/archives/6621). Gate rows: i, f, g, o (torch.nn.LSTMCell order),
    then master forget and master input (levels rows each); a single bias vector."""

    def __init__(self, input_size: int, hidden_size: int, levels: int | None = None, chunk_size: int | None = None,
                 dropconnect: float = 0.0, master_input: str = "mirror", bias: bool = True):
        super().__init__()
        input_size, hidden_size = check_int("input_size", input_size, 1), check_int("hidden_size", hidden_size, 1)
        levels = None if levels is None else check_int("levels", levels, 1)
        chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, 1)
        bias = check_bool("bias", bias)
        if levels is None:
            levels = hidden_size // (chunk_size or 1)
        chunk_size = chunk_size or hidden_size // max(levels, 1)
        if levels < 1 or levels * chunk_size != hidden_size:
            raise ValueError(f"levels * chunk_size must equal hidden_size={hidden_size}, got levels={levels}, "
                             f"chunk_size={chunk_size}")
        check_choice("master_input", master_input, ("mirror", "paper"))
        dropconnect = check_float("dropconnect", dropconnect, 0.0, 1.0, high_open=True)
        self.input_size, self.hidden_size, self.levels, self.chunk_size = input_size, hidden_size, levels, chunk_size
        self.dropconnect, self.master_input = dropconnect, master_input
        rows = 4 * hidden_size + 2 * levels
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias = nn.Parameter(torch.zeros(rows)) if bias else None
        nn.init.xavier_uniform_(self.weight_ih)
        nn.init.orthogonal_(self.weight_hh)

    def dropped_weights(self) -> tuple[Tensor, Tensor]:
        """DropConnect: one dropped copy of both kernels, to be reused for every step of a sequence."""
        p = self.dropconnect if self.training else 0.0
        return F.dropout(self.weight_ih, p), F.dropout(self.weight_hh, p)

    def forward(self, x_t: Tensor, state: tuple[Tensor, Tensor] | None = None,
                weights: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor], dict]:
        """x_t [B, input], state (h, c) [B, hidden] -> h, (h, c), {"master_forget", "master_input": [B, levels]}."""
        B, H, L = x_t.shape[0], self.hidden_size, self.levels
        if state is None:
            state = (x_t.new_zeros(B, H), x_t.new_zeros(B, H))
        h, c = state
        w_ih, w_hh = weights if weights is not None else self.dropped_weights()
        gates = F.linear(x_t, w_ih, self.bias) + F.linear(h, w_hh)           # [B, 4H + 2L]
        i, f, g, o = gates[:, :4 * H].chunk(4, -1)
        mf = cumax(gates[:, 4 * H:4 * H + L], direction="l2r")               # [B, L], rising to 1
        mi_logits = gates[:, 4 * H + L:]
        mi = cumax(mi_logits, direction="r2l") if self.master_input == "mirror" else 1 - cumax(mi_logits)
        mf_e, mi_e = mf.repeat_interleave(self.chunk_size, -1), mi.repeat_interleave(self.chunk_size, -1)  # [B, H]
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        w = mf_e * mi_e
        c = w * (f * c + i * g) + (mf_e - w) * c + (mi_e - w) * g
        h = o * torch.tanh(c)
        return h, (h, c), {"master_forget": mf, "master_input": mi}


def syntactic_distance(master_forget: Tensor) -> Tensor:
    """d_t = 1 - mean over levels of the master forget gate: [..., levels] -> [...]."""
    return 1 - master_forget.mean(-1)


class ONLSTM(nn.Module):
    """Stacked ON-LSTM over a sequence (https://kexue.fm/archives/6621): x [B, T, input] (batch_first) ->
    (outputs [B, T, hidden], (h, c) [num_layers, B, hidden], {"distance": [num_layers, B, T], ...})."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, levels: int | None = None,
                 chunk_size: int | None = None, dropconnect: float = 0.0, batch_first: bool = True,
                 return_gates: bool = False, master_input: str = "mirror"):
        super().__init__()
        num_layers = check_int("num_layers", num_layers, 1)
        batch_first, return_gates = check_bool("batch_first", batch_first), check_bool("return_gates", return_gates)
        self.cells = nn.ModuleList(
            ONLSTMCell(input_size if l == 0 else hidden_size, hidden_size, levels, chunk_size, dropconnect,
                       master_input) for l in range(num_layers))
        self.batch_first, self.return_gates = batch_first, return_gates

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        """x [B, T, input] (batch_first) or [T, B, input]; state (h, c) [num_layers, B, hidden] or None.
        T = 0 is refused, as torch.nn.LSTM does; B = 0 gives empty outputs."""
        first = self.cells[0]
        if x.dim() != 3 or x.shape[-1] != first.input_size:
            raise ValueError(f"x must be [B, T, input_size={first.input_size}] (batch_first={self.batch_first}), "
                             f"got shape {tuple(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
        if x.shape[1] == 0:
            raise ValueError(f"x must have at least one time step (T >= 1, as torch.nn.LSTM), got shape "
                             f"{tuple(x.shape if self.batch_first else x.transpose(0, 1).shape)}")
        expected = (len(self.cells), x.shape[0], first.hidden_size)
        if state is not None and (len(state) != 2 or any(tuple(s.shape) != expected for s in state)):
            raise ValueError(f"state must be (h, c), each [num_layers, B, hidden] = {expected}, got "
                             f"{[tuple(s.shape) for s in state]}")
        hs, cs, dist, gates = [], [], [], []
        for l, cell in enumerate(self.cells):
            st = None if state is None else (state[0][l], state[1][l])
            weights = cell.dropped_weights()                                 # sampled once per sequence
            outs, mfs, mis = [], [], []
            for t in range(x.shape[1]):
                h, st, g = cell(x[:, t], st, weights)
                outs.append(h)
                mfs.append(g["master_forget"])
                mis.append(g["master_input"])
            x = torch.stack(outs, 1)                                          # [B, T, hidden]
            mf = torch.stack(mfs, 1)                                          # [B, T, levels]
            hs.append(st[0])
            cs.append(st[1])
            dist.append(syntactic_distance(mf))
            gates.append((mf, torch.stack(mis, 1)))
        info: dict[str, Any] = {"distance": torch.stack(dist)}
        if self.return_gates:
            info["master_forget"] = [g[0] for g in gates]
            info["master_input"] = [g[1] for g in gates]
        out = x if self.batch_first else x.transpose(0, 1)
        return out, (torch.stack(hs), torch.stack(cs)), info
