"""Exponential moving average of the weights, evaluated with apply/restore (https://kexue.fm/archives/6810).

θ̄ ← m·θ̄ + (1 − m)·θ after every real update, done in place by one `torch._foreach_lerp_` over pre-allocated
buffers (the same op as `torch.optim.swa_utils.get_ema_multi_avg_fn`). Two variants from the author's code:
zero-init with bias correction θ̄/(1 − m^t) on apply (bert4keras, m = 0.999), and copy-init without (DGCNN).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.optim.base import DerivedOptimizer, delta_independent_of_params

__all__ = ["EMAWeights", "ExponentialMovingAverage"]


class EMAWeights:
    """Shadow weights θ̄ of a module or of a list of tensors (https://kexue.fm/archives/6810).

    Args:
        parameters_or_module: an `nn.Module` (its parameters, plus its floating buffers when
            `include_buffers`) or an iterable of tensors.
        decay: m in [0, 1).
        init: "zeros" (θ̄_0 = 0) or "copy" (θ̄_0 = θ_0).
        bias_correction: divide a zero-initialised average by (1 − m^t) on apply; a copy-initialised
            average has no bias, the flag has no effect there.
    Call `update()` after each optimizer step; evaluate inside `with ema.applied(): ...`.
    """

    def __init__(self, parameters_or_module: nn.Module | Iterable[Tensor], decay: float = 0.999,
                 init: str = "zeros", bias_correction: bool = True, include_buffers: bool = False) -> None:
        decay = check_float("decay", decay, 0.0, 1.0, high_open=True)
        check_choice("init", init, ("zeros", "copy"))
        check_bool("bias_correction", bias_correction)
        check_bool("include_buffers", include_buffers)
        if isinstance(parameters_or_module, nn.Module):
            tensors = list(parameters_or_module.parameters())
            if include_buffers:
                tensors += [b for b in parameters_or_module.buffers() if b.is_floating_point()]
        elif isinstance(parameters_or_module, Tensor):
            raise TypeError("parameters_or_module must be an nn.Module or an iterable of tensors, got one Tensor "
                            "(wrap it in a list)")
        else:
            tensors = list(parameters_or_module)
        if not tensors:
            raise ValueError("parameters_or_module holds no tensors to average")
        for t in tensors:
            if not isinstance(t, Tensor) or not t.is_floating_point():
                raise TypeError(f"EMAWeights averages floating-point tensors, got {type(t).__name__} "
                                f"{getattr(t, 'dtype', '')}")
        self.tensors = tensors
        self.decay, self.init, self.bias_correction = float(decay), init, bool(bias_correction)
        with torch.no_grad():
            self.shadow = [t.detach().clone() if init == "copy" else torch.zeros_like(t) for t in tensors]
        self.num_updates = 0
        self._backup: list[Tensor] | None = None

    @torch.no_grad()
    def update(self) -> None:
        """θ̄ ← m·θ̄ + (1 − m)·θ, in place."""
        if self._backup is not None:
            raise RuntimeError("update() called while the average is applied; call restore() first")
        torch._foreach_lerp_(self.shadow, [t.detach() for t in self.tensors], 1.0 - self.decay)
        self.num_updates += 1

    @property
    def correction(self) -> float:
        """1 / (1 − m^t) for a zero-initialised, bias-corrected average, else 1."""
        if self.init == "zeros" and self.bias_correction:
            if self.num_updates == 0:
                raise RuntimeError("the zero-initialised, bias-corrected average is undefined before the first "
                                   "update(): num_updates=0")
            return 1.0 / -math.expm1(self.num_updates * math.log(self.decay)) if self.decay > 0 else 1.0
        return 1.0

    @torch.no_grad()
    def averaged(self) -> list[Tensor]:
        """New tensors holding the (bias-corrected) average."""
        c = self.correction
        return torch._foreach_mul(self.shadow, c) if c != 1.0 else [s.clone() for s in self.shadow]

    @torch.no_grad()
    def apply(self) -> None:
        """Write the average into the weights; the current weights are kept for `restore()`."""
        if self._backup is not None:
            raise RuntimeError("apply() called twice without restore()")
        c = self.correction
        self._backup = [t.detach().clone() for t in self.tensors]
        torch._foreach_copy_([t.detach() for t in self.tensors], self.shadow)
        if c != 1.0:
            torch._foreach_mul_([t.detach() for t in self.tensors], c)

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights saved by `apply()` (bit-exact)."""
        if self._backup is None:
            raise RuntimeError("restore() called without a previous apply()")
        torch._foreach_copy_([t.detach() for t in self.tensors], self._backup)
        self._backup = None

    @contextmanager
    def applied(self) -> Iterator[None]:
        """`with ema.applied(): evaluate(model)` — average inside, training weights restored on exit."""
        self.apply()
        try:
            yield
        finally:
            self.restore()

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average again from the current weights (after a restart or a weight reload)."""
        if self.init == "copy":
            torch._foreach_copy_(self.shadow, [t.detach() for t in self.tensors])
        else:
            torch._foreach_zero_(self.shadow)
        self.num_updates = 0

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "init": self.init, "bias_correction": self.bias_correction,
                "num_updates": self.num_updates, "shadow": [s.clone() for s in self.shadow]}

    def check_state_dict(self, state_dict: Any, where: str = "state_dict") -> None:
        """Raise a clear ValueError if `state_dict` is not an `EMAWeights.state_dict()` of this shape."""
        keys = {"decay", "init", "bias_correction", "num_updates", "shadow"}
        if not isinstance(state_dict, dict) or set(state_dict) != keys:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{where} must be an EMAWeights.state_dict() with keys {sorted(keys)}, got {got}")
        check_float(f"{where}['decay']", state_dict["decay"], 0.0, 1.0, high_open=True)
        check_choice(f"{where}['init']", state_dict["init"], ("zeros", "copy"))
        check_bool(f"{where}['bias_correction']", state_dict["bias_correction"])
        check_int(f"{where}['num_updates']", state_dict["num_updates"], low=0)
        shadow = state_dict["shadow"]
        if not isinstance(shadow, (list, tuple)) or len(shadow) != len(self.shadow):
            n = len(shadow) if isinstance(shadow, (list, tuple)) else type(shadow).__name__
            raise ValueError(f"{where}['shadow'] holds {n} tensors, expected {len(self.shadow)}")
        for i, (s, v) in enumerate(zip(self.shadow, shadow)):
            if not isinstance(v, Tensor) or s.shape != v.shape:
                got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise ValueError(f"{where}['shadow'][{i}] has shape {got}, expected {tuple(s.shape)}")
            if not (v.is_floating_point() and bool(v.isfinite().all())):
                raise ValueError(f"{where}['shadow'][{i}] must hold finite floats, got {v.dtype} with "
                                 f"{int((~v.isfinite()).sum()) if v.is_floating_point() else 'no'} non-finite values")

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a `state_dict()`; raises a ValueError and changes nothing if it does not fit."""
        self.check_state_dict(state_dict)
        for s, v in zip(self.shadow, state_dict["shadow"]):
            s.copy_(v)
        self.decay, self.init = float(state_dict["decay"]), state_dict["init"]
        self.bias_correction, self.num_updates = bool(state_dict["bias_correction"]), int(state_dict["num_updates"])


class ExponentialMovingAverage(DerivedOptimizer):
    """EMA of the weights after each real update of ANY optimizer (https://kexue.fm/archives/6810).

    Update rule, m = `decay`, after each real inner update θ_t → θ_{t+1} (the trajectory is unchanged):

        θ̄_{t+1} = m·θ̄_t + (1 − m)·θ_{t+1}       (evaluated as θ̄/(1 − m^t) when zero-initialised with
                                                    bias correction)

    `with opt:` (or `with opt.applied():`) evaluates with the average and restores on exit; `opt.ema` is the
    underlying `EMAWeights` over the parameters of `param_groups`. The training trajectory is unchanged.
    """

    _state_kinds: ClassVar[dict[str, type] | None] = {}
    factory_kwargs = {"ema_momentum": "decay", "ema_init": "init", "ema_bias_correction": "bias_correction"}

    def __init__(self, optimizer: Optimizer, decay: float = 0.999, init: str = "zeros",
                 bias_correction: bool = True) -> None:
        super().__init__(optimizer)
        self.ema = EMAWeights([p for p in self._all_params() if p.requires_grad], decay=decay, init=init,
                              bias_correction=bias_correction)

    def delta_independent_of_params(self) -> bool:
        return delta_independent_of_params(self.inner)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise TypeError("ExponentialMovingAverage does not support add_param_group after construction; "
                        "add the group to the inner optimizer before wrapping it")

    def _before(self, closure: Callable | None) -> Any:
        return None

    def _after(self, ctx: Any, updated: bool) -> None:
        if updated:
            self.ema.update()

    def apply(self) -> None:
        self.ema.apply()

    def restore(self) -> None:
        self.ema.restore()

    def applied(self):
        return self.ema.applied()

    def __enter__(self) -> "ExponentialMovingAverage":
        self.ema.apply()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.ema.restore()

    def hparams(self) -> dict[str, Any]:
        return {"decay": self.ema.decay, "init": self.ema.init, "bias_correction": self.ema.bias_correction}

    def _reset_own_state(self) -> None:
        """Restart the average from the current weights."""
        self.state.clear()
        self.ema.reset()

    _extra_keys = ("ema",)

    def _extra_state(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict()}

    def _check_extra_state(self, extra: dict[str, Any], where: str) -> None:
        self.ema.check_state_dict(extra["ema"], f"{where}['ema']")
        saved = {k: extra["ema"][k] for k in ("decay", "init", "bias_correction")}
        if saved != self.hparams():
            raise ValueError(f"{where}['ema'] was saved with {saved} but this average has {self.hparams()}")

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.ema.load_state_dict(extra["ema"])
