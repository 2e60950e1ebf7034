"""A restart (RestartPolicy, https://kexue.fm/archives/5765) clears the state of the WHOLE wrapper stack:
after `reset_state`, training goes on exactly as a freshly built stack would from the current weights."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from kexue.optim import (ExponentialMovingAverage, GradientAccumulation, GradientClipping, LazyUpdate, Lookahead,
                         PiecewiseLinearLR, WeightDecay)
from kexue.optim.base import base_optimizer, reset_state
from kexue.train import EvaluateAndSaveBest, RestartPolicy

STACKS = {
    "lookahead_adam": lambda m: Lookahead(torch.optim.Adam(m.parameters(), lr=1e-2), k=3),
    "lookahead_sgd_pullback": lambda m: Lookahead(torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), k=2,
                                                  pullback_momentum="pullback"),
    "ema_lookahead_accum": lambda m: ExponentialMovingAverage(
        Lookahead(GradientAccumulation(torch.optim.Adam(m.parameters(), lr=1e-2), 3), k=2), decay=0.9, init="copy"),
    "accum_in_grad": lambda m: GradientAccumulation(WeightDecay(torch.optim.Adam(m.parameters(), lr=1e-2), 0.1), 3,
                                                    accumulate_in_grad=True),
    "clip_lazy": lambda m: GradientClipping(LazyUpdate(torch.optim.Adam(m.parameters(), lr=1e-2),
                                                       params=[next(m.parameters())], mode="skip_state"), 0.5),
}


def run(kit, model, opt, data):
    for x, y in data:
        opt.zero_grad()
        kit.loss(model, x, y).backward()
        opt.step()


@pytest.mark.parametrize("name", sorted(STACKS))
def test_reset_equals_a_fresh_stack(kit, name):
    data = kit.batches(16, size=4)
    a = kit.mlp()
    oa = STACKS[name](a)
    run(kit, a, oa, data[:7])                                    # mid-cycle, mid-lookahead-period
    reset_state(oa)
    assert not base_optimizer(oa).state                          # Adam/SGD moments cleared
    b = kit.mlp()
    b.load_state_dict(a.state_dict())
    ob = STACKS[name](b)                                         # fresh stack from the same weights
    run(kit, a, oa, data[7:])
    run(kit, b, ob, data[7:])
    assert kit.max_diff(a, b) == 0.0
    if isinstance(oa, ExponentialMovingAverage):
        assert all(torch.equal(s, t) for s, t in zip(oa.ema.shadow, ob.ema.shadow))


def test_reset_lookahead_clears_slow_weights_and_counter(kit):
    model = kit.mlp()
    opt = Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), k=5)
    run(kit, model, opt, kit.batches(7))
    reset_state(opt)
    assert opt.update_step == 0
    assert all(torch.equal(opt.state[p]["slow_param"], p) for p in model.parameters())


def test_reset_keeps_the_piecewise_schedule_position(kit):
    model = kit.mlp()
    opt = PiecewiseLinearLR(torch.optim.Adam(model.parameters(), lr=1e-2), {10: 1.0})
    run(kit, model, opt, kit.batches(4))
    reset_state(opt)
    assert opt.update_step == 4 and not opt.inner.state


def test_restart_policy_resets_lookahead_adam(kit):
    """EvaluateAndSaveBest.do_restart on Lookahead(Adam): moments, slow weights and counter all restart."""
    model = kit.mlp()
    opt = Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), k=5)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    run(kit, model, opt, kit.batches(7))
    cb = EvaluateAndSaveBest(lambda m: 0.0, path=None, restart=RestartPolicy(lr=1e-3))
    cb.set_trainer(SimpleNamespace(module=model, optimizer=opt, scheduler=None, callbacks=[cb]))
    cb.best_state = best
    cb.do_restart()
    assert not opt.inner.state and opt.update_step == 0
    assert all(torch.equal(opt.state[p]["slow_param"], best[n]) for n, p in model.named_parameters())
    assert opt.param_groups[0]["lr"] == 1e-3


def test_lookahead_refuses_save_and_reset_while_slow_weights_are_swapped_in(kit):
    """Inside `with la.slow_weights():` the parameters hold φ: a checkpoint or a restart taken there would
    lose the fast weights θ (was: saved silently)."""
    model = kit.mlp()
    opt = Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), k=5)
    run(kit, model, opt, kit.batches(3))
    with opt.slow_weights():
        with pytest.raises(RuntimeError, match="swap_back"):
            opt.state_dict()
        with pytest.raises(RuntimeError, match="swap_back"):
            reset_state(opt)
    assert opt.update_step == 3 and opt.inner.state
    opt.state_dict()
