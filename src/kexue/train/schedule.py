"""Warmup / piecewise-linear learning rate as a callback: a LambdaLR over `kexue.ops.piecewise_linear`,
stepped once per optimizer update and saved in checkpoints (https://kexue.fm/archives/5765).
"""
from __future__ import annotations

from functools import partial

from torch.optim.lr_scheduler import LambdaLR

from ..ops import piecewise_linear
from .callbacks import Callback

__all__ = ["PiecewiseLinearSchedule"]


class PiecewiseLinearSchedule(Callback):
    """LR multiplier piecewise_linear(step, {step: factor}) of the optimizer's base LR.

    `{1000: 1, 2000: 0.1}`: linear warmup from 0 over 1000 updates, then decay to 0.1x by 2000, then
    constant. The scheduler is attached as `trainer.scheduler` (one LR mechanism per trainer).
    """

    def __init__(self, schedule: dict[int, float], from_zero: bool = True) -> None:
        if not isinstance(schedule, dict) or not schedule:
            raise ValueError(f"schedule must be a non-empty {{step: factor}} dict, got {schedule!r}")
        for k, v in schedule.items():
            if int(k) < 0 or not float(v) >= 0:
                raise ValueError(f"schedule entries must be step >= 0: factor >= 0, got {k!r}: {v!r}")
        self.schedule, self.from_zero = dict(schedule), from_zero
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
