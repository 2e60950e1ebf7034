"""Lazy update: move only the embedding rows that got a gradient (https://kexue.fm/archives/6869).

With momentum (SGD+momentum, Adam) a word seen once keeps moving on later batches where it is absent; the
author's LazyOptimizer masks the *parameter write* of absent rows and still lets the optimizer state of every
row evolve ("mask_update"). "skip_state" also restores the absent rows' state (like `torch.optim.SparseAdam`).
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from kexue._validate import check_choice, check_int
from kexue.optim.base import DerivedOptimizer, base_optimizer, delta_independent_of_params

__all__ = ["LazyUpdate"]


def _present_rows(grad: Tensor, row_dim: int) -> Tensor:
    """[n_rows] bool: rows with any non-zero gradient (dense) or listed in the sparse indices."""
    n = grad.shape[row_dim]
    if grad.is_sparse:
        g = grad.coalesce()
        present = torch.zeros(n, dtype=torch.bool, device=grad.device)
        present[g.indices()[row_dim]] = True
        return present
    return grad.ne(0).movedim(row_dim, 0).reshape(n, -1).any(1)


class LazyUpdate(DerivedOptimizer):
    """Rows of the designated tensors whose gradient is all zero keep θ bit-identical (https://kexue.fm/archives/6869).

    Update rule, for a designated tensor with rows θ[r] and Δ the inner update:

        θ_{t+1}[r] = θ_t[r] + Δ[r]   if the gradient of row r is non-zero (or listed, sparse)
        θ_{t+1}[r] = θ_t[r]          otherwise ("skip_state" also keeps the row's optimizer state)

    Designate tensors by `params=[embedding.weight]` or by the group key `lazy=True`. `row_dim` indexes the
    rows (0 for `nn.Embedding`). Sparse gradients (`nn.Embedding(sparse=True)`) are read by their indices
    and densified for the inner optimizer. In "skip_state" mode, state tensors of the parameter's shape are
    restored for absent rows (step counters are per tensor, as in SparseAdam). A padding row gets a zero
    gradient and so stays still. Put `WeightDecay` *inside* (LazyUpdate(WeightDecay(Adam))) to mask the decay
    of absent rows too.
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"lazy_params": "params", "lazy_mode": "mode"}

    def __init__(self, optimizer: Optimizer, params: Iterable[Tensor] | None = None, row_dim: int = 0,
                 mode: str = "mask_update") -> None:
        check_choice("mode", mode, ("mask_update", "skip_state"))
        check_int("row_dim", row_dim)
        self.row_dim, self.mode = row_dim, mode
        super().__init__(optimizer, lazy=False)
        self._row_buffers: dict[Tensor, dict[str, Tensor]] = {}
        owned = {id(p) for p in self._all_params()}
        self._designated: list[Tensor] = []           # tensors, not ids: a pickled or deep-copied stack keeps them
        for p in params or []:
            if not isinstance(p, Tensor):
                raise TypeError(f"params must be tensors of the wrapped optimizer, got {type(p).__name__}")
            if id(p) not in owned:
                raise ValueError(f"params must be parameters of the wrapped optimizer; got a tensor of shape "
                                 f"{tuple(p.shape)} that is in none of its param_groups")
            self._designated.append(p)
        designated = self._designated_ids()
        for p in self._all_params():
            if (id(p) in designated or self._group_of(p).get("lazy")) and not -p.dim() <= row_dim < p.dim():
                raise ValueError(f"row_dim={row_dim} is out of range for a lazy parameter of shape {tuple(p.shape)}")

    def _designated_ids(self) -> set[int]:
        return {id(p) for p in self._designated}

    def _group_of(self, p: Tensor) -> dict[str, Any]:
        return next(g for g in self.param_groups if any(q is p for q in g["params"]))

    def delta_independent_of_params(self) -> bool:
        return delta_independent_of_params(self.inner)

    def hparams(self) -> dict[str, Any]:
        ids = self._designated_ids()
        designated = [i for i, p in enumerate(self._all_params()) if id(p) in ids]
        return {"row_dim": self.row_dim, "mode": self.mode, "params": designated}

    def _reset_own_state(self) -> None:
        self.state.clear()
        self._row_buffers.clear()

    def _lazy_params(self) -> list[Tensor]:
        ids = self._designated_ids()
        return [p for g in self.param_groups for p in g["params"]
                if p.grad is not None and (g["lazy"] or id(p) in ids)]

    def _save_rows(self, key: str, src: Tensor, idx: Tensor, bufs: dict[str, Tensor]) -> Tensor:
        """Copy rows `idx` of src into a pre-allocated buffer (no per-step allocation)."""
        buf = bufs.get(key)
        if buf is None or buf.shape != src.shape or buf.dtype != src.dtype:
            buf = bufs[key] = torch.empty_like(src, memory_format=torch.contiguous_format)
        rows = src.movedim(self.row_dim, 0)
        out = buf.view(-1)[: idx.numel() * rows[0].numel()].view(idx.numel(), *rows.shape[1:])
        torch.index_select(rows, 0, idx, out=out)
        return out

    def _before(self, closure: Callable | None) -> Any:
        if closure is not None:
            raise ValueError("LazyUpdate needs the gradients before the step; got a closure (call backward first)")
        base = base_optimizer(self.inner)
        ctx = []
        for p in self._lazy_params():
            present = _present_rows(p.grad, self.row_dim)
            if p.grad.is_sparse:
                p.grad = p.grad.to_dense()
            absent = (~present).nonzero().squeeze(1)                       # [n_absent]
            if absent.numel() == 0:
                continue
            st = self._row_buffers.setdefault(p, {})
            saved = {"param": self._save_rows("row_snapshot", p.detach(), absent, st)}
            if self.mode == "skip_state":
                for key, value in base.state.get(p, {}).items():
                    if isinstance(value, Tensor) and value.shape == p.shape:
                        saved[key] = self._save_rows(f"row_snapshot_{key}", value, absent, st)
            ctx.append((p, absent, saved))
        return ctx

    def _after(self, ctx: Any, updated: bool) -> None:
        if not ctx or not updated:
            return
        base = base_optimizer(self.inner)
        for p, absent, saved in ctx:
            p.detach().movedim(self.row_dim, 0).index_copy_(0, absent, saved["param"])
            if self.mode != "skip_state":
                continue
            for key, value in base.state.get(p, {}).items():
                if isinstance(value, Tensor) and value.shape == p.shape:
                    rows = value.movedim(self.row_dim, 0)
                    if key in saved:
                        rows.index_copy_(0, absent, saved[key])
                    else:                                                   # state created by this step
                        rows.index_fill_(0, absent, 0)
