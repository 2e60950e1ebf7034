"""`kexue.optim.base.last_step_updated(opt)` is True exactly when the last `step()` changed the weights, for
every stack (accumulation inside or outside the other wrappers, built by hand or by `extend_with`): a Trainer
counts its global step with it (https://kexue.fm/archives/6794)."""
from __future__ import annotations

import pytest
import torch

from kexue.optim import (ExponentialMovingAverage, GradientAccumulation, GradientClipping, LayerAdaptation,
                         Lookahead, PiecewiseLinearLR, WeightDecay, extend_with)
from kexue.optim.base import last_step_updated


def adam(m):
    return torch.optim.Adam(m.parameters(), lr=1e-2)


STACKS = {
    "adam": (adam, 1),
    "accum": (lambda m: GradientAccumulation(adam(m), 3), 3),
    "accum_in_grad": (lambda m: GradientAccumulation(adam(m), 3, accumulate_in_grad=True), 3),
    "lookahead_outside_accum": (lambda m: Lookahead(GradientAccumulation(adam(m), 2), k=2), 2),
    "accum_outside_lookahead": (lambda m: GradientAccumulation(Lookahead(adam(m), k=2), 2), 2),
    "decay_outside_accum": (lambda m: WeightDecay(GradientAccumulation(adam(m), 4), 0.1), 4),
    "accum_outside_all": (lambda m: GradientAccumulation(ExponentialMovingAverage(LayerAdaptation(
        PiecewiseLinearLR(GradientClipping(WeightDecay(adam(m), 0.1), 0.5), {0: 1.0, 20: 0.5}))), 3), 3),
    "canonical": (lambda m: ExponentialMovingAverage(Lookahead(GradientAccumulation(GradientClipping(
        PiecewiseLinearLR(WeightDecay(adam(m), 0.1), {0: 1.0, 20: 0.5}), 0.5), 2), k=3), 0.9), 2),
    "extend_with_accum": (lambda m: extend_with(torch.optim.Adam, "gradient_accumulation")(
        m.parameters(), lr=1e-2, grad_accum_steps=4), 4),
    "extend_with_accum_inner": (lambda m: extend_with(torch.optim.Adam, "weight_decay", "gradient_accumulation",
                                                      "lookahead", "exponential_moving_average")(
        m.parameters(), lr=1e-2, grad_accum_steps=2, steps_per_slow_update=2, ema_momentum=0.9), 2),
}


@pytest.mark.parametrize("name", sorted(STACKS))
def test_last_step_updated_is_true_exactly_when_the_weights_changed(kit, name):
    make, k = STACKS[name]
    model = kit.mlp()
    opt = make(model)
    flags, changed = [], []
    for x, y in kit.batches(12, size=4):
        before = kit.snapshot(model)
        opt.zero_grad()
        kit.loss(model, x, y).backward()
        opt.step()
        flags.append(last_step_updated(opt))
        changed.append(any(not torch.equal(p, q) for p, q in zip(model.parameters(), before)))
    assert flags == changed
    assert flags == [(i + 1) % k == 0 for i in range(12)]       # one real update every k calls


def test_false_before_the_first_step_of_a_wrapper(kit):
    model = kit.mlp()
    assert not last_step_updated(Lookahead(adam(model)))
    assert last_step_updated(adam(model))                       # plain torch: every step updates
