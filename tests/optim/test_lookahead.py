"""Lookahead against a hand-written k-step/alpha loop, pytorch-optimizer and closed-form limits."""
from __future__ import annotations

import pytest
import torch
from pytorch_optimizer import Lookahead as PyOptLookahead
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from kexue.optim import Lookahead


def reference_lookahead(kit, model, make_inner, batches, k, alpha, first_step=False):
    """Float64 §1.1 of spec 02: k inner steps, then φ ← φ + α(θ − φ); θ ← φ."""
    inner = make_inner(model.parameters())
    params = list(model.parameters())
    slow = [p.detach().clone() for p in params]
    for t, (x, y) in enumerate(batches, start=1):
        inner.zero_grad()
        kit.loss(model, x, y).backward()
        inner.step()
        with torch.no_grad():
            if first_step and t == 1:
                slow = [p.detach().clone() for p in params]
            elif (t - first_step) % k == 0:
                for p, s in zip(params, slow):
                    s.add_(alpha * (p - s))
                    p.copy_(s)


def sgd_momentum(p):
    return torch.optim.SGD(p, lr=0.05, momentum=0.9)


@pytest.mark.parametrize("first_step", [False, True])
def test_matches_hand_written_loop(kit, first_step):
    a, b = kit.mlp(), kit.mlp()
    data = kit.batches(100)
    schedule = "first_step" if first_step else "after_k"
    kit.train(a, Lookahead(sgd_momentum(a.parameters()), k=5, alpha=0.5, sync_schedule=schedule), data)
    reference_lookahead(kit, b, sgd_momentum, data, 5, 0.5, first_step)
    assert kit.max_diff(a, b) < 1e-12


def test_matches_pytorch_optimizer(kit):
    a, b = kit.mlp(), kit.mlp()
    data = kit.batches(100)
    kit.train(a, Lookahead(torch.optim.Adam(a.parameters(), lr=1e-2), k=5, alpha=0.5), data)
    kit.train(b, PyOptLookahead(torch.optim.Adam(b.parameters(), lr=1e-2), k=5, alpha=0.5), data)
    assert kit.max_diff(a, b) < 1e-12


def test_zero_lr_keeps_weights_through_sync(kit):
    """Regression for bert4keras's zero-initialised slow weights (first sync would give θ ← αθ)."""
    model = kit.mlp()
    before = kit.snapshot(model)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.0), k=2, alpha=0.5)
    kit.train(model, opt, kit.batches(4))
    assert opt.update_step == 4
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_alpha_limits(kit):
    a, b, c = kit.mlp(), kit.mlp(), kit.mlp()
    data = kit.batches(9)
    kit.train(a, Lookahead(torch.optim.Adam(a.parameters(), lr=1e-2), k=3, alpha=1.0), data)
    kit.train(b, torch.optim.Adam(b.parameters(), lr=1e-2), data)
    assert kit.max_diff(a, b) == 0.0                            # α = 1: the inner optimizer
    before = kit.snapshot(c)
    kit.train(c, Lookahead(torch.optim.Adam(c.parameters(), lr=1e-2), k=3, alpha=0.0), data)
    assert all(torch.equal(p, q) for p, q in zip(c.parameters(), before))   # α = 0: back to θ0


def test_k1_sgd_is_sgd_with_scaled_lr(kit):
    a, b = kit.mlp(), kit.mlp()
    data = kit.batches(20)
    kit.train(a, Lookahead(torch.optim.SGD(a.parameters(), lr=0.2), k=1, alpha=0.25), data)
    kit.train(b, torch.optim.SGD(b.parameters(), lr=0.05), data)
    assert kit.max_diff(a, b) < 1e-14


def test_slow_weights_are_an_ema_of_sync_points(kit):
    """AveragedModel with EMA decay 1 − α, fed θ0 then the pre-sync fast weights, holds the slow weights."""
    model = kit.mlp()
    opt = Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), k=4, alpha=0.3)
    avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(1 - 0.3), use_buffers=False)
    avg.update_parameters(model)

    def before_sync(optimizer, args, kwargs):                   # inner post-hook: runs before the wrapper syncs
        if (opt.update_step + 1) % 4 == 0:
            avg.update_parameters(model)
    opt.inner.register_step_post_hook(before_sync)
    kit.train(model, opt, kit.batches(12))
    for p, q in zip(model.parameters(), avg.module.parameters()):
        assert torch.allclose(p, q, atol=1e-12, rtol=0)


def test_slow_weights_context_round_trip(kit):
    model = kit.mlp()
    opt = Lookahead(torch.optim.Adam(model.parameters(), lr=1e-2), k=5)
    kit.train(model, opt, kit.batches(3))                        # mid-cycle: fast != slow
    fast = kit.snapshot(model)
    with opt.slow_weights():
        assert all(torch.equal(p, opt.state[p]["slow_param"]) for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), fast))
    with pytest.raises(RuntimeError, match="swap_back"):
        opt.swap_back()


def test_pullback_reset_zeroes_momentum(kit):
    model = kit.mlp()
    opt = Lookahead(sgd_momentum(model.parameters()), k=2, pullback_momentum="reset")
    kit.train(model, opt, kit.batches(2))
    assert all(s["momentum_buffer"].abs().max() == 0 for s in opt.inner.state.values())


def test_bad_arguments_raise():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        Lookahead(torch.optim.SGD(p, lr=0.1), k=0)
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0.0, 1.0\], got 2.0"):
        Lookahead(torch.optim.SGD(p, lr=0.1), alpha=2)
    with pytest.raises(ValueError, match="sync_schedule"):
        Lookahead(torch.optim.SGD(p, lr=0.1), sync_schedule="never")
