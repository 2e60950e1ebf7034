"""Warmup / piecewise-linear learning rate as a callback: a LambdaLR over `kexue.ops.piecewise_linear`,
stepped once per optimizer update and saved in checkpoints (https://kexue.fm/archives/5765).
"""
from __future__ import annotations

from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .._validate import check_bool, check_float, check_int
from ..ops import piecewise_linear
from .callbacks import Callback

__all__ = ["PiecewiseLinearSchedule", "linear_warmup_decay", "ScalarSchedule"]


class PiecewiseLinearSchedule(Callback):
    """LR multiplier piecewise_linear(step, {step: factor}) of the optimizer's base LR.

    `{1000: 1, 2000: 0.1}`: linear warmup from 0 over 1000 updates, then decay to 0.1x by 2000, then
    constant. The scheduler is attached as `trainer.scheduler` (one LR mechanism per trainer).
    """

    def __init__(self, schedule: dict[int, float], from_zero: bool = True) -> None:
        _check_schedule("schedule", schedule, "step", low=0.0)
        self.schedule, self.from_zero = dict(schedule), check_bool("from_zero", from_zero)
        self.scheduler: LambdaLR | None = None

    def set_trainer(self, trainer) -> None:
        super().set_trainer(trainer)
        if self.scheduler is not None and trainer.scheduler is self.scheduler:
            return                                      # a second fit() keeps the running schedule
        if trainer.scheduler is not None:
            raise ValueError("PiecewiseLinearSchedule needs Trainer(scheduler=None); the trainer already "
                             f"has {type(trainer.scheduler).__name__}")
        if trainer.optimizer is None:
            raise ValueError("PiecewiseLinearSchedule needs Trainer(optimizer=...), got None")
        fn = partial(piecewise_linear, schedule=self.schedule, from_zero=self.from_zero)
        self.scheduler = trainer.scheduler = LambdaLR(trainer.optimizer, fn)


def _check_schedule(name: str, schedule, unit: str, low: float | None = None) -> None:
    """A non-empty {int >= 0: finite number (>= low)} dict, or an error naming `name` and the bad entry."""
    if not isinstance(schedule, dict) or not schedule:
        raise ValueError(f"{name} must be a non-empty {{{unit}: value}} dict, got {schedule!r}")
    for k, v in schedule.items():
        check_int(f"{name} key {k!r}", k, low=0)
        check_float(f"{name}[{k!r}]", v, low=low)


def linear_warmup_decay(optimizer: Optimizer, warmup_steps: int, total_steps: int,
                        final_ratio: float = 0.0) -> LambdaLR:
    """Linear warmup from 0 to the base LR over `warmup_steps`, then linear decay to `final_ratio` x base LR at
    `total_steps` (constant after): the piecewise-linear schedule {warmup: 1, total: final_ratio}."""
    check_int("warmup_steps", warmup_steps, low=0)
    check_int("total_steps", total_steps, low=1)
    check_float("final_ratio", final_ratio)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got "
                         f"warmup_steps={warmup_steps}, total_steps={total_steps}")
    if final_ratio < 0:
        raise ValueError(f"final_ratio must be >= 0, got {final_ratio}")
    schedule = {warmup_steps: 1.0, total_steps: final_ratio}   # warmup 0: starts at the base LR
    return LambdaLR(optimizer, partial(piecewise_linear, schedule=schedule, from_zero=warmup_steps > 0))


class ScalarSchedule:
    """A scalar (a loss weight, a temperature, ...) that changes with the step or the epoch: the PyTorch form of
    the article's backend variable updated by a callback (https://kexue.fm/archives/5765). Values interpolate
    linearly through `{step_or_epoch: value}` and stay constant after the last point."""

    def __init__(self, schedule: dict[int, float], unit: str = "step") -> None:
        if unit not in ("step", "epoch"):
            raise ValueError(f"unit must be 'step' or 'epoch', got {unit!r}")
        _check_schedule("schedule", schedule, unit)
        self.schedule, self.unit = dict(schedule), unit

    def value(self, step_or_epoch: int) -> float:
        return piecewise_linear(step_or_epoch, self.schedule, from_zero=False)
