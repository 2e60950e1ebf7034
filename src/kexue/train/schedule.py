"""Schedules for the Trainer, thin adapters over the one schedule function `kexue.ops.piecewise_linear`
(docs/naming.md): `PiecewiseLinearSchedule` attaches `kexue.optim.PiecewiseLinearScheduler` to a Trainer (stepped
once per optimizer update, saved in checkpoints; https://kexue.fm/archives/5765), `linear_warmup_decay` is
`kexue.optim.linear_warmup_decay` re-exported, and `ScalarSchedule` is the same function for a non-LR scalar.
"""
from __future__ import annotations

from .._validate import check_bool, check_choice
from ..ops import check_schedule, piecewise_linear
from ..optim.schedule import PiecewiseLinearScheduler, linear_warmup_decay
from .callbacks import Callback

__all__ = ["PiecewiseLinearSchedule", "linear_warmup_decay", "ScalarSchedule"]


class PiecewiseLinearSchedule(Callback):
    """LR multiplier piecewise_linear(step, {step: factor}) of the optimizer's base LR.

    `{1000: 1, 2000: 0.1}`: linear warmup from 0 over 1000 updates, then decay to 0.1x by 2000, then
    constant. The scheduler is attached as `trainer.scheduler` (one LR mechanism per trainer).
    """

    def __init__(self, schedule: dict[int, float], from_zero: bool = True) -> None:
        check_schedule("schedule", schedule, low=0.0)
        self.schedule, self.from_zero = dict(schedule), check_bool("from_zero", from_zero)
        self.scheduler: PiecewiseLinearScheduler | None = None

    def set_trainer(self, trainer) -> None:
        super().set_trainer(trainer)
        if self.scheduler is not None and trainer.scheduler is self.scheduler:
            return                                      # a second fit() keeps the running schedule
        if trainer.scheduler is not None:
            raise ValueError("PiecewiseLinearSchedule needs Trainer(scheduler=None); the trainer already "
                             f"has {type(trainer.scheduler).__name__}")
        if trainer.optimizer is None:
            raise ValueError("PiecewiseLinearSchedule needs Trainer(optimizer=...), got None")
        self.scheduler = trainer.scheduler = PiecewiseLinearScheduler(trainer.optimizer, self.schedule, self.from_zero)


class ScalarSchedule:
    """A scalar (a loss weight, a temperature, ...) that changes with the step or the epoch: the PyTorch form of
    the article's backend variable updated by a callback (https://kexue.fm/archives/5765). Values interpolate
    linearly through `{step_or_epoch: value}` and stay constant after the last point."""

    def __init__(self, schedule: dict[int, float], unit: str = "step") -> None:
        check_choice("unit", unit, ("step", "epoch"))
        check_schedule("schedule", schedule)
        self.schedule, self.unit = dict(schedule), unit

    def value(self, step_or_epoch: int) -> float:
        return piecewise_linear(step_or_epoch, self.schedule, from_zero=False)
