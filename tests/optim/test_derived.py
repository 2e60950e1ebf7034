"""WeightDecay, LayerAdaptation, PiecewiseLinearLR and extend_with against torch/pytorch-optimizer and closed forms."""
from __future__ import annotations

import pytest
import torch
from pytorch_optimizer import Lamb
from torch import nn

from kexue.optim import (LayerAdaptation, PiecewiseLinearLR, WeightDecay, extend_with, param_groups_by_name,
                         piecewise_linear, piecewise_linear_lambda)


class SubAdam(torch.optim.Adam):
    """An Adam the wrappers do not recognise: forces the generic snapshot path."""


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_scheduler", [False, True])
def test_weight_decay_adam_equals_adamw(kit, seed, with_scheduler):
    a, b = kit.mlp(seed), kit.mlp(seed)
    oa = WeightDecay(torch.optim.Adam(a.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-7), 0.1)
    ob = torch.optim.AdamW(b.parameters(), lr=1e-2, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1)
    sa = torch.optim.lr_scheduler.LambdaLR(oa, lambda t: 1.0 / (1 + 0.1 * t)) if with_scheduler else None
    sb = torch.optim.lr_scheduler.LambdaLR(ob, lambda t: 1.0 / (1 + 0.1 * t)) if with_scheduler else None
    data = kit.batches(50, seed=seed)
    kit.train(a, oa, data, sa)
    kit.train(b, ob, data, sb)
    assert kit.max_diff(a, b) < 1e-10


def test_weight_decay_snapshot_path_equals_adamw(kit):
    a, b = kit.mlp(), kit.mlp()
    oa = WeightDecay(SubAdam(a.parameters(), lr=1e-2), 0.05)
    ob = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.05)
    data = kit.batches(50)
    kit.train(a, oa, data)
    kit.train(b, ob, data)
    assert kit.max_diff(a, b) < 1e-10


def test_weight_decay_sgd_equals_l2(kit):
    a, b = kit.mlp(), kit.mlp()
    oa = WeightDecay(torch.optim.SGD(a.parameters(), lr=0.1), 0.3)
    ob = torch.optim.SGD(b.parameters(), lr=0.1, weight_decay=0.3)
    data = kit.batches(50)
    kit.train(a, oa, data)
    kit.train(b, ob, data)
    assert kit.max_diff(a, b) < 1e-12


def test_decoupled_differs_from_coupled_for_adam(kit):
    """The article's point: for Adam an L2 term is divided by sqrt(v), the decoupled decay is not."""
    a, b = kit.mlp(), kit.mlp()
    kit.train(a, WeightDecay(torch.optim.Adam(a.parameters(), lr=1e-2), 0.1), kit.batches(20))
    kit.train(b, torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=0.1), kit.batches(20))
    assert kit.max_diff(a, b) > 1e-4


def test_param_groups_by_name_excludes_biases(kit):
    a, b = kit.mlp(), kit.mlp()
    ga = param_groups_by_name(a, [(r"bias", {"weight_decay_rate": 0.0})], {"weight_decay_rate": 0.2})
    gb = param_groups_by_name(b, [(r"bias", {"weight_decay": 0.0})], {"weight_decay": 0.2})
    assert [len(g["params"]) for g in ga] == [2, 2]
    kit.train(a, WeightDecay(torch.optim.Adam(ga, lr=1e-2)), kit.batches(30))
    kit.train(b, torch.optim.AdamW(gb, lr=1e-2), kit.batches(30))
    assert kit.max_diff(a, b) < 1e-10
    with pytest.raises(TypeError, match="rules"):
        param_groups_by_name(a, [("bias", 0.0)])


def lamb_reference(model, batches, lr, betas, eps, wd):
    """Float64 LAMB (You et al.): r = ||θ|| / ||adam + λθ||, θ ← θ − η·r·(adam + λθ)."""
    params = list(model.parameters())
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, (x, y) in enumerate(batches, start=1):
        grads = torch.autograd.grad(((model(x) - y) ** 2).mean(), params)
        with torch.no_grad():
            for p, g, mi, vi in zip(params, grads, m, v):
                mi.mul_(betas[0]).add_(g, alpha=1 - betas[0])
                vi.mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
                u = (mi / (1 - betas[0] ** t)) / ((vi / (1 - betas[1] ** t)).sqrt() + eps) + wd * p
                wn, un = p.norm(), u.norm()
                r = wn / un if wn > 0 and un > 0 else 1.0
                p.sub_(lr * r * u)


def test_lamb_composition_matches_reference(kit):
    a, b = kit.mlp(), kit.mlp()
    opt = LayerAdaptation(WeightDecay(torch.optim.Adam(a.parameters(), lr=1e-2, eps=1e-6), 0.01))
    data = kit.batches(50)
    kit.train(a, opt, data)
    lamb_reference(b, data, 1e-2, (0.9, 0.999), 1e-6, 0.01)
    assert kit.max_diff(a, b) < 1e-10


def test_layer_adaptation_matches_pytorch_optimizer_lamb(kit):
    """Semantics agree with pytorch-optimizer's Lamb at eps=0, no decay, adam_debias=True (else it divides the
    step by 1 - beta1^t); its weight-norm clamp at 10 is not reached."""
    a, b = kit.mlp(), kit.mlp()
    oa = LayerAdaptation(torch.optim.Adam(a.parameters(), lr=1e-2, eps=0.0))
    ob = Lamb(b.parameters(), lr=1e-2, eps=0.0, weight_decay=0.0, adam_debias=True)
    data = kit.batches(100)
    kit.train(a, oa, data)
    kit.train(b, ob, data)
    assert max(p.norm().item() for p in a.parameters()) < 10
    assert kit.max_diff(a, b) < 1e-10


@pytest.mark.parametrize("inner", ["adam", "sgd"])
def test_layer_adaptation_update_norm_is_lr_times_weight_norm(kit, inner):
    model = kit.mlp()
    with torch.no_grad():
        model[0].bias.zero_()                                   # θ = 0: ratio 1, update unchanged
    base = (torch.optim.Adam if inner == "adam" else torch.optim.SGD)(model.parameters(), lr=0.05)
    opt = LayerAdaptation(base)
    ref = kit.mlp()
    with torch.no_grad():
        ref[0].bias.zero_()
    ref_opt = (torch.optim.Adam if inner == "adam" else torch.optim.SGD)(ref.parameters(), lr=0.05)
    before = kit.snapshot(model)
    (x, y), = kit.batches(1)
    for m, o in ((model, opt), (ref, ref_opt)):
        kit.loss(m, x, y).backward()
        o.step()
    for (name, p), p0, q in zip(model.named_parameters(), before, ref.parameters()):
        if name == "0.bias":
            assert torch.allclose(p, q, atol=1e-14, rtol=0)
        else:
            assert (p - p0).norm().item() == pytest.approx(0.05 * p0.norm().item(), rel=1e-10)


def test_layer_adaptation_zero_lr_is_noop(kit):
    model = kit.mlp()
    opt = LayerAdaptation(torch.optim.Adam(model.parameters(), lr=0.0))
    before = kit.snapshot(model)
    kit.train(model, opt, kit.batches(2))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_composition_order_weight_decay_outside_layer_adaptation(kit):
    """WeightDecay(LayerAdaptation(Adam)): trust ratio of Adam's update only, decay added after (not LAMB)."""
    a, b, c = kit.mlp(), kit.mlp(), kit.mlp()
    lr, wd = 1e-2, 0.1
    oa = WeightDecay(LayerAdaptation(torch.optim.Adam(a.parameters(), lr=lr)), wd)
    ob = LayerAdaptation(WeightDecay(torch.optim.Adam(b.parameters(), lr=lr), wd))
    ref = torch.optim.Adam(c.parameters(), lr=lr)
    (x, y), = kit.batches(1)
    for m, o in ((a, oa), (b, ob)):
        kit.loss(m, x, y).backward()
        o.step()
    theta0 = kit.snapshot(c)
    kit.loss(c, x, y).backward()
    ref.step()
    with torch.no_grad():
        for p, p0, q in zip(a.parameters(), theta0, c.parameters()):
            d = q - p0
            expect = p0 + lr * p0.norm() / d.norm() * d - lr * wd * p0
            assert torch.allclose(p, expect, atol=1e-13, rtol=0)
    assert kit.max_diff(a, b) > 1e-6


def test_piecewise_linear_table():
    s = {1000: 1.0, 2000: 0.1}
    for t, m in [(0, 0.0), (500, 0.5), (1000, 1.0), (1500, 0.55), (2000, 0.1), (10**6, 0.1)]:
        assert piecewise_linear(t, s) == pytest.approx(m, abs=1e-12)
    assert all(piecewise_linear(t, {0: 1.0}) == 1.0 for t in (0, 7, 10**6))
    assert piecewise_linear(250, {2000: 0.1, 1000: 1.0}) == pytest.approx(0.25)      # unsorted input
    assert piecewise_linear_lambda(s)(1500) == pytest.approx(0.55)


def test_piecewise_linear_lr_equals_lambda_lr(kit):
    s = {5: 1.0, 15: 0.2}
    a, b = kit.mlp(), kit.mlp()
    oa = PiecewiseLinearLR(torch.optim.SGD(a.parameters(), lr=0.1), s)
    ob = torch.optim.SGD(b.parameters(), lr=0.1)
    sb = torch.optim.lr_scheduler.LambdaLR(ob, piecewise_linear_lambda(s))
    data = kit.batches(25)
    kit.train(a, oa, data)
    kit.train(b, ob, data, sb)
    assert kit.max_diff(a, b) < 1e-14
    assert oa.param_groups[0]["lr"] == 0.1                      # lr only scaled during the inner step


@pytest.mark.parametrize("base", [torch.optim.SGD, torch.optim.Adam])
def test_piecewise_linear_modes_agree(kit, base):
    a, b = kit.mlp(), kit.mlp()
    s = {3: 1.0, 10: 0.3}
    oa = PiecewiseLinearLR(base(a.parameters(), lr=0.05), s, mode="lr")
    ob = PiecewiseLinearLR(base(b.parameters(), lr=0.05), s, mode="delta")
    data = kit.batches(15)
    kit.train(a, oa, data)
    kit.train(b, ob, data)
    assert kit.max_diff(a, b) < 1e-12


def test_extend_with_builds_the_chain(kit):
    AdamW = extend_with(torch.optim.Adam, "weight_decay")
    a, b = kit.mlp(), kit.mlp()
    oa = AdamW(a.parameters(), lr=1e-2, weight_decay_rate=0.1)
    assert isinstance(oa, WeightDecay) and isinstance(oa.inner, torch.optim.Adam)
    kit.train(a, oa, kit.batches(20))
    kit.train(b, torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1), kit.batches(20))
    assert kit.max_diff(a, b) < 1e-10

    LambAdam = extend_with(torch.optim.Adam, "weight_decay", "layer_adaptation", name="LambAdam")
    c, d = kit.mlp(), kit.mlp()
    oc = LambAdam(c.parameters(), lr=1e-2, eps=1e-6, weight_decay_rate=0.01)
    assert type(oc).__name__ == "LambAdam" and isinstance(oc.inner, WeightDecay)
    kit.train(c, oc, kit.batches(20))
    lamb_reference(d, kit.batches(20), 1e-2, (0.9, 0.999), 1e-6, 0.01)
    assert kit.max_diff(c, d) < 1e-10


def test_extend_with_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown derivation 'nope'"):
        extend_with(torch.optim.Adam, "nope")
    with pytest.raises(TypeError, match="base_cls"):
        extend_with(nn.Linear, "weight_decay")
    with pytest.raises(ValueError, match="at least one"):
        extend_with(torch.optim.Adam)


def test_bad_arguments_raise():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="weight_decay_rate.*-1"):
        WeightDecay(torch.optim.SGD(p, lr=0.1), -1)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        WeightDecay(p, 0.1)
    with pytest.raises(ValueError, match=r"mode must be one of \['lr', 'delta'\], got 'x'"):
        PiecewiseLinearLR(torch.optim.SGD(p, lr=0.1), {0: 1.0}, mode="x")
    with pytest.raises(ValueError, match="lr_schedule keys"):
        PiecewiseLinearLR(torch.optim.SGD(p, lr=0.1), {-3: 1.0})
    with pytest.raises(ValueError, match="max_ratio"):
        LayerAdaptation(torch.optim.SGD(p, lr=0.1), max_ratio=0)


def test_lbfgs_closure_passes_through(kit):
    """LBFGS with a closure: transforms apply to the final delta."""
    a, b = kit.mlp(), kit.mlp()
    (x, y), = kit.batches(1)
    oa = WeightDecay(torch.optim.LBFGS(a.parameters(), lr=0.5, max_iter=5), 0.1)
    ob = torch.optim.LBFGS(b.parameters(), lr=0.5, max_iter=5)
    theta0 = kit.snapshot(b)

    def closure(model, opt):
        def f():
            opt.zero_grad()
            loss = kit.loss(model, x, y)
            loss.backward()
            return loss
        return f
    oa.step(closure(a, oa))
    ob.step(closure(b, ob))
    for p, q, q0 in zip(a.parameters(), b.parameters(), theta0):
        assert torch.allclose(p, q - 0.5 * 0.1 * q0, atol=1e-12, rtol=0)
