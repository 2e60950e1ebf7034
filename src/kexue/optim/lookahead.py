"""Lookahead: k steps forward, 1 step back, around ANY optimizer (https://kexue.fm/archives/6869).

Slow weights φ start as a *copy* of θ_0 (bert4keras starts them at zero, which halves the weights at the first
sync; not ported). Every k real updates of the inner optimizer: φ ← φ + α(θ − φ); θ ← φ.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import Tensor
from torch.optim import Optimizer

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.optim.base import DerivedOptimizer, base_optimizer

__all__ = ["Lookahead"]


class Lookahead(DerivedOptimizer):
    """Lookahead(optimizer, k=5, alpha=0.5) (arXiv 1907.08610; https://kexue.fm/archives/6869).

    Update rule, θ the fast weights moved by the inner optimizer, φ the slow weights (φ_0 = θ_0), t the
    number of real inner updates:

        θ_{t+1} = θ_t + Δ_t                               (inner step)
        if t+1 ≡ 0 (mod k):  φ ← φ + α·(θ_{t+1} − φ);  θ_{t+1} ← φ

    k and α are per-group hyperparameters (group keys `lookahead_k`, `lookahead_alpha`, as timm; the
    constructor gives the defaults). Counts real inner updates (skipped accumulation micro-steps do not count). The inner state is kept across
    syncs (author), unless `reset_inner_state`; `pullback_momentum` ("none" | "pullback" | "reset") treats an
    SGD `momentum_buffer` like pytorch-optimizer. `sync_schedule="after_k"` syncs after updates k, 2k, ...
    (author, pytorch-optimizer); "first_step" re-copies φ after update 1 and syncs after 1, k+1, 2k+1, ...
    (torch-optimizer, alphadl/lookahead.pytorch). Evaluate with the slow weights via `with la.slow_weights():`.
    """

    factory_kwargs = {"steps_per_slow_update": "k", "slow_step_size": "alpha"}
    _state_kinds: ClassVar[dict[str, type] | None] = {"slow_param": Tensor, "slow_momentum": Tensor}

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5, reset_inner_state: bool = False,
                 pullback_momentum: str = "none", sync_schedule: str = "after_k") -> None:
        check_int("k", k, low=1)
        alpha = check_float("alpha", alpha, 0.0, 1.0)
        check_bool("reset_inner_state", reset_inner_state)
        check_choice("pullback_momentum", pullback_momentum, ("none", "pullback", "reset"))
        check_choice("sync_schedule", sync_schedule, ("after_k", "first_step"))
        self.reset_inner_state = reset_inner_state
        self.pullback_momentum = pullback_momentum
        self.sync_schedule = sync_schedule
        self.update_step = 0
        self._backup: list[Tensor] | None = None
        super().__init__(optimizer, lookahead_k=k, lookahead_alpha=alpha)
        self._init_slow(self._all_params())

    @property
    def k(self) -> int:
        """The default k (groups may hold their own `lookahead_k`)."""
        return self.defaults["lookahead_k"]

    @property
    def alpha(self) -> float:
        """The default α (groups may hold their own `lookahead_alpha`)."""
        return self.defaults["lookahead_alpha"]

    def _check_group_value(self, key: str, value: Any, at: str, default: Any) -> None:
        if key == "lookahead_k":
            check_int(at, value, low=1)
        else:
            check_float(at, value, 0.0, 1.0)

    def _init_slow(self, params: list[Tensor]) -> None:
        with torch.no_grad():
            for p in params:
                if p.requires_grad and "slow_param" not in self.state[p]:
                    self.state[p]["slow_param"] = p.detach().clone()      # φ_0 = θ_0, allocated once

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._init_slow(self.param_groups[-1]["params"])

    def delta_independent_of_params(self) -> bool:
        return False

    def _before(self, closure: Callable | None) -> Any:
        return None

    def _after(self, ctx: Any, updated: bool) -> None:
        if not updated:
            return
        self.update_step += 1
        first = self.sync_schedule == "first_step"
        for group in self.param_groups:
            moved = [p for p in group["params"] if p.grad is not None and "slow_param" in self.state[p]]
            if not moved:
                continue
            if first and self.update_step == 1:
                torch._foreach_copy_([self.state[p]["slow_param"] for p in moved], moved)
            elif (self.update_step - first) % group["lookahead_k"] == 0:
                self._sync_group(moved, group["lookahead_alpha"])

    @torch.no_grad()
    def sync(self, params: list[Tensor] | None = None) -> None:
        """φ ← φ + α(θ − φ); θ ← φ for `params` (default: every parameter with slow weights), α of its group."""
        chosen = None if params is None else {id(p) for p in params}
        for group in self.param_groups:
            ps = [p for p in group["params"] if (chosen is None or id(p) in chosen) and "slow_param" in self.state[p]]
            if ps:
                self._sync_group(ps, group["lookahead_alpha"])

    def _sync_group(self, params: list[Tensor], alpha: float) -> None:
        slow = [self.state[p]["slow_param"] for p in params]
        torch._foreach_lerp_(slow, params, alpha)
        torch._foreach_copy_(params, slow)
        base = base_optimizer(self.inner)
        if self.reset_inner_state:
            for p in params:
                base.state.pop(p, None)
        elif self.pullback_momentum == "reset":
            for p in params:
                if "momentum_buffer" in base.state.get(p, {}):
                    base.state[p]["momentum_buffer"].zero_()
        elif self.pullback_momentum == "pullback":
            with_buf = [p for p in params if isinstance(base.state.get(p, {}).get("momentum_buffer"), Tensor)]
            for p in with_buf:
                self.state[p].setdefault("slow_momentum", torch.zeros_like(p))
            if with_buf:
                bufs = [base.state[p]["momentum_buffer"] for p in with_buf]
                slow_bufs = [self.state[p]["slow_momentum"] for p in with_buf]
                torch._foreach_lerp_(bufs, slow_bufs, 1.0 - alpha)
                torch._foreach_copy_(slow_bufs, bufs)

    # ------------------------------------------------------------------ evaluation with slow weights
    @torch.no_grad()
    def swap_to_slow(self) -> None:
        """Load the slow weights into the parameters (fast weights kept aside for `swap_back`)."""
        if self._backup is not None:
            raise RuntimeError("swap_to_slow() called twice without swap_back()")
        params = [p for p in self._all_params() if "slow_param" in self.state[p]]
        self._backup = [p.detach().clone() for p in params]
        torch._foreach_copy_(params, [self.state[p]["slow_param"] for p in params])

    @torch.no_grad()
    def swap_back(self) -> None:
        """Restore the fast weights saved by `swap_to_slow` (bit-exact)."""
        if self._backup is None:
            raise RuntimeError("swap_back() called without a previous swap_to_slow()")
        params = [p for p in self._all_params() if "slow_param" in self.state[p]]
        torch._foreach_copy_(params, self._backup)
        self._backup = None

    @contextmanager
    def slow_weights(self) -> Iterator[None]:
        """`with lookahead.slow_weights(): evaluate(model)`."""
        self.swap_to_slow()
        try:
            yield
        finally:
            self.swap_back()

    def hparams(self) -> dict[str, Any]:
        return {"k": self.k, "alpha": self.alpha, "reset_inner_state": self.reset_inner_state,
                "pullback_momentum": self.pullback_momentum, "sync_schedule": self.sync_schedule}

    def reset_state(self) -> None:
        """Restart: inner state cleared, slow weights φ = current θ, counter 0 (as a fresh Lookahead)."""
        if self._backup is not None:
            raise RuntimeError("reset_state() called while the slow weights are swapped in; call swap_back() first")
        super().reset_state()

    def _reset_own_state(self) -> None:
        self.state.clear()
        self.update_step = 0
        self._init_slow(self._all_params())

    _extra_keys = ("update_step",)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        if self._backup is not None:
            raise RuntimeError("state_dict() called while the slow weights are swapped in (the parameters hold "
                               "the slow weights); call swap_back() first")
        return super().state_dict()

    def _extra_state(self) -> dict[str, Any]:
        return {"update_step": self.update_step}

    def _check_param_state(self, saved: dict[int, dict[str, Any]], where: str) -> None:
        params = self._all_params()
        missing = [i for i, p in enumerate(params) if "slow_param" in self.state.get(p, {})
                   and "slow_param" not in saved.get(i, {})]
        if missing:
            raise ValueError(f"{where} lacks the slow weights of parameters {missing}: not a state of this Lookahead")

    def _check_extra_state(self, extra: dict[str, Any], where: str) -> None:
        check_int(f"{where}['update_step']", extra["update_step"], low=0)

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.update_step = int(extra["update_step"])
