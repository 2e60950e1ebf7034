"""Gradient accumulation as an optimizer wrapper: trade time for batch size (https://kexue.fm/archives/6794).

k micro-batches of size b then one real update with their mean gradient equals one update on the k·b batch
(mean loss), as long as no layer depends on the batch (BatchNorm breaks it). The k − 1 other calls leave the
parameters and the inner optimizer's state untouched: `inner.step()` is simply not called.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from kexue._validate import check_bool, check_float, check_int
from kexue.optim.base import DerivedOptimizer, delta_independent_of_params, last_step_updated

__all__ = ["GradientAccumulation", "SchedulerOnUpdate", "no_sync_if_accumulating"]


class GradientAccumulation(DerivedOptimizer):
    """Call `inner.step()` every `accum_steps` calls, fed the mean of those calls' gradients (https://kexue.fm/archives/6794).

    Update rule, k = `accum_steps`, g_i the gradient of micro-step i, w_i its weight (1, or `num_samples`):

        micro-steps 1..k−1:  θ unchanged, inner state unchanged
        micro-step k:        .grad ← Σ w_i·g_i / Σ w_i  (Σ w_i·g_i when average=False);  inner.step()

    k and the averaging are wrapper-wide (one cycle for all groups), constructor attributes.
    Loop unchanged: `loss.backward(); opt.step(); opt.zero_grad()` (do NOT divide the loss by k when
    `average=True`). `step()` returns True on a real update. Two storages:
    - default: a pre-allocated buffer per parameter collects the gradients; `zero_grad()` zeroes every call;
    - `accumulate_in_grad=True`: no buffer, `.grad` itself accumulates (autograd adds into it) and
      `zero_grad()` only acts after a real update.
    `sample_weighted=True` weights micro-batch i by `num_samples` (ragged last batch): the update then sees the
    exact mean over all samples. Put wrappers that read gradients (`GradientClipping`, `LazyUpdate`) *inside*
    this one so they see the accumulated gradient; wrappers outside count only real updates.
    `state_dict()` taken mid-cycle resumes exactly: it holds the buffers (default) or the live `.grad` sums
    (`accumulate_in_grad=True`), which `load_state_dict` writes back into `.grad`.
    """

    factory_kwargs = {"grad_accum_steps": "accum_steps"}
    _state_kinds: ClassVar[dict[str, type] | None] = {"grad_sum": Tensor, "filled": bool}

    def __init__(self, optimizer: Optimizer, accum_steps: int = 2, average: bool = True,
                 sample_weighted: bool = False, accumulate_in_grad: bool = False) -> None:
        check_int("accum_steps", accum_steps, low=1)
        for name, value in (("average", average), ("sample_weighted", sample_weighted),
                            ("accumulate_in_grad", accumulate_in_grad)):
            check_bool(name, value)
        if sample_weighted and accumulate_in_grad:
            raise ValueError("sample_weighted=True needs the gradient buffers; got accumulate_in_grad=True")
        self.accum_steps = accum_steps
        self.average = average
        self.sample_weighted = sample_weighted
        self.accumulate_in_grad = accumulate_in_grad
        self.micro_step = 0          # step() calls since construction
        self.update_step = 0         # real updates
        self._samples = 0.0          # samples (or micro-batches) in the current cycle
        super().__init__(optimizer)

    @property
    def will_update(self) -> bool:
        """True if the next `step()` performs the real update."""
        return (self.micro_step + 1) % self.accum_steps == 0

    def delta_independent_of_params(self) -> bool:
        return delta_independent_of_params(self.inner)

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not self.accumulate_in_grad or self.micro_step % self.accum_steps == 0:
            self.inner.zero_grad(set_to_none=set_to_none)

    def _accumulate(self, params: list[Tensor], weight: float) -> None:
        """buffer (+)= weight·grad; the first contribution of a cycle is a copy, no zeroing pass."""
        fresh, fresh_bufs, old, old_bufs = [], [], [], []
        for p in params:
            st = self.state[p]
            buf = st.get("grad_sum")
            if buf is None:
                buf = st["grad_sum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["filled"] = False
            grad = p.grad.to_dense() if p.grad.is_sparse else p.grad
            (old if st["filled"] else fresh).append(grad)
            (old_bufs if st["filled"] else fresh_bufs).append(buf)
            st["filled"] = True
        if fresh:
            torch._foreach_copy_(fresh_bufs, fresh)
            if weight != 1.0:
                torch._foreach_mul_(fresh_bufs, weight)
        if old:
            torch._foreach_add_(old_bufs, old, alpha=weight)

    @torch.no_grad()
    def step(self, closure: Callable | None = None, num_samples: int | None = None) -> bool:  # type: ignore[override]
        self.check_stack_groups()                   # a bad group value is refused before the cycle moves on
        if closure is not None:
            with torch.enable_grad():
                closure()
        if self.sample_weighted:
            if num_samples is None:
                raise ValueError("num_samples must be a positive int with sample_weighted=True, got None")
            weight = check_float("num_samples", num_samples, low=0.0, low_open=True)
        else:
            weight = 1.0
        self.micro_step += 1
        self._samples += weight
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if self.micro_step % self.accum_steps != 0:
            if not self.accumulate_in_grad:
                self._accumulate(params, weight)
            self.last_step_updated = False
            return False
        scale = 1.0 / self._samples if (self.average or self.sample_weighted) else 1.0
        if not self.accumulate_in_grad:
            # .grad := scale·(buffer + weight·grad): add into .grad, the buffers are overwritten next cycle
            if weight != 1.0 and params:
                torch._foreach_mul_([p.grad for p in params], weight)
            filled = [p for p in self._all_params() if self.state[p].get("filled")]
            for p in filled:
                self.state[p]["filled"] = False
                if p.grad is None:
                    p.grad = torch.zeros_like(self.state[p]["grad_sum"])
                elif p.grad.is_sparse:
                    p.grad = p.grad.to_dense()
            if filled:
                torch._foreach_add_([p.grad for p in filled], [self.state[p]["grad_sum"] for p in filled])
            params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if scale != 1.0 and params:
            torch._foreach_mul_([p.grad for p in params], scale)
        self._samples = 0.0
        self.inner.step()
        self.last_step_updated = last_step_updated(self.inner)
        self.update_step += int(self.last_step_updated)
        return True

    @property
    def mid_cycle(self) -> bool:
        """True between the first micro-step of a cycle and its real update."""
        return self.micro_step % self.accum_steps != 0

    def hparams(self) -> dict[str, Any]:
        return {"accum_steps": self.accum_steps, "average": self.average, "sample_weighted": self.sample_weighted,
                "accumulate_in_grad": self.accumulate_in_grad}

    def _reset_own_state(self) -> None:
        """Drop the partial cycle (its gradients belong to the weights before the restart)."""
        if self.accumulate_in_grad and self.mid_cycle:
            self.inner.zero_grad(set_to_none=True)
        self.state.clear()
        self.micro_step -= self.micro_step % self.accum_steps
        self._samples = 0.0

    _extra_keys = ("micro_step", "update_step", "samples")
    _optional_extra_keys = ("grads",)

    def _extra_state(self) -> dict[str, Any]:
        extra = {"micro_step": self.micro_step, "update_step": self.update_step, "samples": self._samples}
        if self.accumulate_in_grad and self.mid_cycle:                 # the partial sums live in .grad
            extra["grads"] = {i: p.grad.detach().clone() for i, p in enumerate(self._all_params())
                              if p.grad is not None}
        return extra

    def _check_param_state(self, saved: dict[int, dict[str, Any]], where: str) -> None:
        for i, entry in saved.items():
            if entry and set(entry) != {"grad_sum", "filled"}:
                raise ValueError(f"{where}[{i}] must hold 'grad_sum' and 'filled', got {sorted(entry)}")

    def _check_extra_state(self, extra: dict[str, Any], where: str) -> None:
        check_int(f"{where}['micro_step']", extra["micro_step"], low=0)
        check_int(f"{where}['update_step']", extra["update_step"], low=0)
        check_float(f"{where}['samples']", extra["samples"], low=0.0)
        mid = extra["micro_step"] % self.accum_steps != 0
        grads = extra.get("grads")
        if self.accumulate_in_grad and mid and grads is None:
            raise ValueError(f"{where} was saved mid-cycle (micro_step={extra['micro_step']}, accum_steps="
                             f"{self.accum_steps}) without the accumulated gradients: it cannot resume exactly")
        if grads is None:
            return
        params = self._all_params()
        if not isinstance(grads, dict):
            raise ValueError(f"{where}['grads'] must be a dict {{param index: gradient}}, got {type(grads).__name__}")
        for i, g in grads.items():
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(params):
                raise ValueError(f"{where}['grads'] has parameter index {i!r}; there are {len(params)} parameters")
            if not isinstance(g, Tensor) or g.shape != params[i].shape or not g.is_floating_point():
                got = f"{tuple(g.shape)} {g.dtype}" if isinstance(g, Tensor) else type(g).__name__
                raise ValueError(f"{where}['grads'][{i}] must be a float tensor of shape {tuple(params[i].shape)}, "
                                 f"got {got}")

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.micro_step = int(extra["micro_step"])
        self.update_step = int(extra["update_step"])
        self._samples = float(extra["samples"])
        if self.accumulate_in_grad and self.mid_cycle:
            grads = extra["grads"]
            for i, p in enumerate(self._all_params()):
                p.grad = grads[i].to(device=p.device, dtype=p.dtype).clone() if i in grads else None


class SchedulerOnUpdate:
    """Step an LR scheduler only after real updates of `optimizer` (https://kexue.fm/archives/6794)."""

    def __init__(self, scheduler: Any, optimizer: Optimizer) -> None:
        if not callable(getattr(scheduler, "step", None)):
            raise TypeError(f"scheduler must have a step() method, got {type(scheduler).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.scheduler = scheduler
        self.optimizer = optimizer

    def step(self) -> bool:
        """Advance the scheduler if the last optimizer step really updated; returns whether it did."""
        if last_step_updated(self.optimizer):
            self.scheduler.step()
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state_dict)


@contextmanager
def no_sync_if_accumulating(model: nn.Module, optimizer: Optimizer) -> Iterator[None]:
    """Skip DDP's gradient all-reduce on micro-steps that will not update (https://kexue.fm/archives/6794)."""
    will = getattr(optimizer, "will_update", True)
    ctx = model.no_sync() if (not will and hasattr(model, "no_sync")) else nullcontext()
    with ctx:
        yield
