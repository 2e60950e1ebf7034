"""The one learning-rate scheduler of kexue: a torch `LambdaLR` over the pure function `kexue.ops.piecewise_linear`
(https://kexue.fm/archives/7094). Every other schedule name is a thin alias of it (docs/naming.md):
`linear_warmup_decay` builds it from a two-point table, `kexue.train.PiecewiseLinearSchedule` attaches it to a
Trainer, `piecewise_linear_lambda` is its multiplier, and `PiecewiseLinearLR` applies the same multiplier inside
an optimizer wrapper (bert4keras `extend_with_piecewise_linear_lr`).
"""
from __future__ import annotations

from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from kexue._validate import check_bool, check_float, check_int
from kexue.ops import check_schedule, piecewise_linear

__all__ = ["PiecewiseLinearScheduler", "linear_warmup_decay"]


class PiecewiseLinearScheduler(LambdaLR):
    """lr_t = base_lr x piecewise_linear(t, schedule), t = number of `scheduler.step()` calls.

    `{1000: 1, 2000: 0.1}`: linear warmup from 0 over 1000 steps (when `from_zero`), decay to 0.1 x base_lr by 2000,
    constant after. A plain `LambdaLR`, so `state_dict()` / `load_state_dict()` and `last_epoch` work as in torch.
    """

    def __init__(self, optimizer: Optimizer, schedule: dict[int, float], from_zero: bool = True,
                 last_epoch: int = -1) -> None:
        check_schedule("schedule", schedule, low=0.0)               # checked before torch touches the optimizer
        self.schedule, self.from_zero = dict(schedule), check_bool("from_zero", from_zero)
        super().__init__(optimizer, partial(piecewise_linear, schedule=self.schedule, from_zero=self.from_zero),
                         last_epoch=last_epoch)


def linear_warmup_decay(optimizer: Optimizer, warmup_steps: int, total_steps: int,
                        final_ratio: float = 0.0) -> PiecewiseLinearScheduler:
    """Linear warmup from 0 to the base LR over `warmup_steps`, then linear decay to `final_ratio` x base LR at
    `total_steps` (constant after): `PiecewiseLinearScheduler(optimizer, {warmup: 1, total: final_ratio})`, equal
    to transformers' `get_linear_schedule_with_warmup` for final_ratio = 0."""
    check_int("warmup_steps", warmup_steps, low=0)
    check_int("total_steps", total_steps, low=1)
    check_float("final_ratio", final_ratio)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got "
                         f"warmup_steps={warmup_steps}, total_steps={total_steps}")
    if final_ratio < 0:
        raise ValueError(f"final_ratio must be >= 0, got {final_ratio}")
    schedule = {warmup_steps: 1.0, total_steps: final_ratio}   # warmup 0: starts at the base LR
    return PiecewiseLinearScheduler(optimizer, schedule, from_zero=warmup_steps > 0)
