"""Properties every wrapper shares: shared param_groups, schedulers, state_dict round trip, grad-None params
untouched, and the documented composition order."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.optim import (DerivedOptimizer, ExponentialMovingAverage, GradientAccumulation, GradientClipping,
                         LayerAdaptation, LazyUpdate, Lookahead, PiecewiseLinearLR, WeightDecay)


class Net(nn.Module):
    """MLP plus an embedding (for LazyUpdate), an unused parameter (grad None) and a frozen one."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(10, 6)
        self.body = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
        self.unused = nn.Parameter(torch.randn(4))
        self.frozen = nn.Parameter(torch.randn(3), requires_grad=False)

    def forward(self, ids):
        return self.body(self.emb(ids).mean(1)) + self.frozen


def batches(n, seed=5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 5, (4, 3), generator=g), torch.randn(4, 3, generator=g)) for _ in range(n)]


def adam(m):
    return torch.optim.Adam(m.parameters(), lr=1e-2)


def canonical_chain(m):
    """The order documented in kexue.optim, outermost first."""
    groups = [{"params": [m.emb.weight], "lazy": True}, {"params": list(m.body.parameters()) + [m.unused]}]
    opt = WeightDecay(torch.optim.Adam(groups, lr=1e-2), 0.01)
    opt = LazyUpdate(LayerAdaptation(opt))
    opt = GradientClipping(PiecewiseLinearLR(opt, {3: 1.0}), gamma=1.0)
    return ExponentialMovingAverage(Lookahead(GradientAccumulation(opt, 2), k=2), decay=0.9)


WRAPPERS = {
    "weight_decay": lambda m: WeightDecay(adam(m), 0.1),
    "weight_decay_snapshot": lambda m: WeightDecay(torch.optim.Adam(m.parameters(), lr=1e-2, weight_decay=0.01), 0.1),
    "layer_adaptation": lambda m: LayerAdaptation(WeightDecay(adam(m), 0.01)),
    "piecewise_lr": lambda m: PiecewiseLinearLR(adam(m), {4: 1.0, 12: 0.1}),
    "piecewise_delta": lambda m: PiecewiseLinearLR(adam(m), {4: 1.0, 12: 0.1}, mode="delta"),
    "accumulation": lambda m: GradientAccumulation(adam(m), 3),
    "lookahead": lambda m: Lookahead(torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), k=3,
                                     pullback_momentum="pullback"),
    "lazy": lambda m: LazyUpdate(adam(m), params=[m.emb.weight]),
    "lazy_skip": lambda m: LazyUpdate(adam(m), params=[m.emb.weight], mode="skip_state"),
    "ema": lambda m: ExponentialMovingAverage(adam(m), decay=0.9),
    "clipping": lambda m: GradientClipping(adam(m), gamma=0.05, mode="soft"),
    "canonical_chain": lambda m: canonical_chain(m),
}


def train(model, opt, data):
    for ids, y in data:
        opt.zero_grad()
        ((model(ids) - y) ** 2).mean().backward()
        opt.step()


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_shares_groups_and_works_with_schedulers(name):
    model = Net()
    opt = WRAPPERS[name](model)
    assert isinstance(opt, torch.optim.Optimizer) and isinstance(opt, DerivedOptimizer)
    assert opt.param_groups is opt.inner.param_groups
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 ** t)
    train(model, opt, batches(3))
    sched.step()
    inner = opt
    while isinstance(inner, DerivedOptimizer):
        inner = inner.inner
    assert inner.param_groups[0]["lr"] == pytest.approx(inner.param_groups[0]["initial_lr"] * 0.5)


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_state_dict_round_trip(name):
    data = batches(20)
    a = Net()
    oa = WRAPPERS[name](a)
    train(a, oa, data)
    b = Net()
    ob = WRAPPERS[name](b)
    train(b, ob, data[:10])
    sd = ob.state_dict()
    c = Net()
    c.load_state_dict(b.state_dict())
    oc = WRAPPERS[name](c)
    oc.load_state_dict(sd)
    train(c, oc, data[10:])
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    if isinstance(oa, ExponentialMovingAverage):
        assert all(torch.equal(s, t) for s, t in zip(oa.ema.shadow, oc.ema.shadow))


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_params_without_grad_are_untouched(name):
    model = Net()
    opt = WRAPPERS[name](model)
    unused, frozen = model.unused.detach().clone(), model.frozen.detach().clone()
    train(model, opt, batches(8))
    assert torch.equal(model.unused, unused) and torch.equal(model.frozen, frozen)


def test_load_state_dict_rejects_foreign_dicts():
    opt = WRAPPERS["weight_decay"](Net())
    with pytest.raises(ValueError, match="keys \\['inner', 'outer'\\]"):
        opt.load_state_dict(adam(Net()).state_dict())


def test_lazy_outside_weight_decay_masks_the_decay_of_absent_rows():
    """Documented order: LazyUpdate(WeightDecay(Adam)) keeps absent rows still; the reverse decays them."""
    a, b = Net(), Net()
    oa = LazyUpdate(WeightDecay(adam(a), 0.5), params=[a.emb.weight])
    ob = WeightDecay(LazyUpdate(adam(b), params=[b.emb.weight]), 0.5)
    rows = a.emb.weight[5:].detach().clone()                  # ids are drawn from 0..4
    train(a, oa, batches(3))
    train(b, ob, batches(3))
    assert torch.equal(a.emb.weight[5:], rows)
    assert torch.allclose(b.emb.weight[5:], rows * (1 - 1e-2 * 0.5) ** 3, atol=1e-14, rtol=0)
