"""Every wrapper refuses a bad hyperparameter with an error naming it (kexue._validate), before any state is
allocated; a non-finite learning rate is refused at construction and at step time (never a NaN weight)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from kexue.optim import (EMAWeights, ExponentialMovingAverage, GradientAccumulation, GradientClipping,
                         LayerAdaptation, LazyUpdate, Lookahead, PiecewiseLinearLR, WeightDecay, clip_grads_)


def sgd():
    return torch.optim.SGD([nn.Parameter(torch.ones(3, 2))], lr=0.1)


NAN, INF = math.nan, math.inf
BAD = [
    (lambda v: GradientAccumulation(sgd(), accum_steps=v), "accum_steps", [0, -1, 2.0, "2", True, None]),
    (lambda v: GradientAccumulation(sgd(), average=v), "average", ["no", 1, None]),
    (lambda v: GradientAccumulation(sgd(), sample_weighted=v), "sample_weighted", ["yes", 0]),
    (lambda v: GradientAccumulation(sgd(), accumulate_in_grad=v), "accumulate_in_grad", ["no", 1]),
    (lambda v: Lookahead(sgd(), k=v), "k", [0, -5, 1.5, "5", False]),
    (lambda v: Lookahead(sgd(), alpha=v), "alpha", [NAN, INF, -0.1, 1.5, "0.5", True]),
    (lambda v: Lookahead(sgd(), reset_inner_state=v), "reset_inner_state", ["no", 1]),
    (lambda v: Lookahead(sgd(), pullback_momentum=v), "pullback_momentum", ["Pullback", None]),
    (lambda v: Lookahead(sgd(), sync_schedule=v), "sync_schedule", ["every_k", 1]),
    (lambda v: WeightDecay(sgd(), v), "weight_decay_rate", [NAN, INF, -1e-3, "0.1", True]),
    (lambda v: LayerAdaptation(sgd(), eps=v), "eps", [NAN, -1.0, INF]),
    (lambda v: LayerAdaptation(sgd(), max_ratio=v), "max_ratio", [0, -1.0, NAN, INF, "10"]),
    (lambda v: PiecewiseLinearLR(sgd(), v), "lr_schedule", [{}, [1, 2], {-1: 1.0}, {1.5: 1.0}, {True: 1.0}]),
    (lambda v: PiecewiseLinearLR(sgd(), {10: v}), "lr_schedule[10]", [NAN, INF, -0.5, "1"]),
    (lambda v: PiecewiseLinearLR(sgd(), mode=v), "mode", ["LR", None]),
    (lambda v: ExponentialMovingAverage(sgd(), decay=v), "decay", [1.0, -0.1, NAN, INF, "0.9", True]),
    (lambda v: ExponentialMovingAverage(sgd(), init=v), "init", ["ones", None]),
    (lambda v: ExponentialMovingAverage(sgd(), bias_correction=v), "bias_correction", ["no", 1]),
    (lambda v: GradientClipping(sgd(), gamma=v), "gamma", [0, -1.0, NAN, INF, "1", True]),
    (lambda v: GradientClipping(sgd(), mode=v), "mode", ["medium", None]),
    (lambda v: GradientClipping(sgd(), norm_type=v), "norm_type", [0, -2.0, NAN, "2", True]),
    (lambda v: GradientClipping(sgd(), per_group=v), "per_group", ["yes", 1]),
    (lambda v: GradientClipping(sgd(), error_if_nonfinite=v), "error_if_nonfinite", ["yes", 1]),
    (lambda v: clip_grads_([nn.Parameter(torch.ones(2))], 1.0, norm_type=v), "norm_type", [NAN, -1.0]),
    (lambda v: LazyUpdate(sgd(), mode=v), "mode", ["lazy", None]),
    (lambda v: LazyUpdate(opt := sgd(), params=opt.param_groups[0]["params"], row_dim=v), "row_dim",
     ["0", 0.0, True, 2, -3]),
    (lambda v: EMAWeights([nn.Parameter(torch.ones(2))], include_buffers=v), "include_buffers", ["no"]),
]
CASES = [(make, name, v) for make, name, values in BAD for v in values]


@pytest.mark.parametrize("make,name,value", CASES, ids=[f"{n}={v!r}" for _, n, v in CASES])
def test_bad_hyperparameter_is_a_clear_error(make, name, value):
    with pytest.raises((ValueError, TypeError)) as err:
        make(value)
    assert name in str(err.value)


@pytest.mark.parametrize("wrap", [Lookahead, WeightDecay, GradientAccumulation, ExponentialMovingAverage])
@pytest.mark.parametrize("key,value", [("lr", NAN), ("lr", INF), ("momentum", NAN), ("weight_decay", NAN)])
def test_non_finite_inner_hyperparameter_is_refused_at_construction(wrap, key, value):
    p = nn.Parameter(torch.ones(2))
    inner = torch.optim.SGD([p], lr=0.1, momentum=0.5)        # torch SGD accepts lr=nan itself
    inner.param_groups[0][key] = value
    with pytest.raises(ValueError, match=f"'{key}'.*{value}"):
        wrap(inner)


def test_nan_lr_from_a_scheduler_is_refused_at_step_and_weights_untouched():
    p = nn.Parameter(torch.ones(2))
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), k=2)
    opt.param_groups[0]["lr"] = NAN
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match="'lr'.*nan"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(2)) and opt.update_step == 0


def test_decay_factor_outside_0_1_is_refused_before_any_change():
    """η·λ > 1 makes 1 − ηλ negative: the weights would flip sign and grow (was: silently applied)."""
    p = nn.Parameter(torch.ones(2))
    opt = WeightDecay(torch.optim.SGD([p], lr=10.0), weight_decay_rate=0.5)
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"weight_decay_rate \* lr = 5.0 must be in \[0, 1\]"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(2))


@pytest.mark.parametrize("kw,name", [
    (dict(sigma=NAN), "sigma"), (dict(lr=NAN), "lr"), (dict(eta=INF), "eta"), (dict(mix=NAN), "mix"),
    (dict(alpha=INF), "alpha"), (dict(alpha="fast"), "alpha"), (dict(num_samples="8"), "num_samples"),
    (dict(num_samples=2.0), "num_samples"), (dict(base_sigma=NAN), "base_sigma"), (dict(antithetic="no"), "antithetic"),
])
def test_param_space_search_refuses_non_finite_and_mistyped_arguments(kw, name):
    """(was: sigma=nan, lr=nan, eta=inf accepted; num_samples='8' a bare TypeError from a comparison)"""
    from kexue.optim import ParamSpaceSearch
    with pytest.raises((ValueError, TypeError), match=name):
        ParamSpaceSearch([nn.Parameter(torch.zeros(2))], **kw)


def test_step_and_helper_arguments_are_checked():
    """(was: num_samples=nan poisoned every gradient with NaN; radius=nan accepted; directions='4' and
    params=[1] bare TypeErrors/AttributeErrors; SchedulerOnUpdate took anything)"""
    from kexue.optim import SchedulerOnUpdate, smoothness_probe
    p = nn.Parameter(torch.ones(2))
    opt = GradientAccumulation(torch.optim.SGD([p], lr=0.1), 2, sample_weighted=True)
    p.grad = torch.ones(2)
    for bad in (NAN, INF, -1, 0, "3"):
        with pytest.raises((ValueError, TypeError), match="num_samples"):
            opt.step(num_samples=bad)
    assert opt.micro_step == 0
    loss = lambda: (p ** 2).sum()                                 # noqa: E731
    for kw, name in ((dict(radius=NAN), "radius"), (dict(directions="4"), "directions"),
                     (dict(directions=0), "directions")):
        with pytest.raises((ValueError, TypeError), match=name):
            smoothness_probe(loss, [p], **kw)
    with pytest.raises(TypeError, match="params must be tensors"):
        LazyUpdate(torch.optim.SGD([p], lr=0.1), params=[1])
    with pytest.raises(TypeError, match="scheduler"):
        SchedulerOnUpdate(object(), torch.optim.SGD([p], lr=0.1))
    with pytest.raises(TypeError, match="optimizer"):
        SchedulerOnUpdate(torch.optim.lr_scheduler.StepLR(torch.optim.SGD([p], lr=0.1), 1), "adam")
