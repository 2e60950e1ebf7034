"""Checkpoints of wrapper stacks: exact resume (also mid accumulation cycle), the stack recorded and checked,
and a load that does not fit is a clear ValueError that changes nothing."""
from __future__ import annotations

import io

import pytest
import torch

from kexue.optim import (ExponentialMovingAverage, GradientAccumulation, LayerAdaptation, Lookahead,
                         PiecewiseLinearLR, WeightDecay, extend_with)
from kexue.optim.base import check_state_dict, describe_stack


def run(kit, model, opt, data, samples=None):
    for i, (x, y) in enumerate(data):
        opt.zero_grad()
        kit.loss(model, x, y).backward()
        opt.step() if samples is None else opt.step(num_samples=samples[i])


def through_disk(sd):
    """torch.save / torch.load(weights_only=True): what a checkpoint really goes through."""
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def full_state(model, opt):
    """Everything a load could change: weights, .grad, the optimizer state (cloned)."""
    def clone(x):
        if isinstance(x, torch.Tensor):
            return x.detach().clone()
        if isinstance(x, dict):
            return {k: clone(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(clone(v) for v in x)
        return x
    return clone({"params": list(model.parameters()), "grads": [p.grad for p in model.parameters()],
                  "opt": opt.state_dict()})


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


ACCUM = {
    "buffers": lambda m: GradientAccumulation(torch.optim.Adam(m.parameters(), lr=1e-2), 4),
    "in_grad": lambda m: GradientAccumulation(torch.optim.Adam(m.parameters(), lr=1e-2), 4, accumulate_in_grad=True),
    "sum_in_grad": lambda m: GradientAccumulation(torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), 3,
                                                  average=False, accumulate_in_grad=True),
    "sample_weighted": lambda m: GradientAccumulation(torch.optim.Adam(m.parameters(), lr=1e-2), 4,
                                                      sample_weighted=True),
    "in_grad_in_lookahead": lambda m: ExponentialMovingAverage(Lookahead(GradientAccumulation(
        WeightDecay(torch.optim.Adam(m.parameters(), lr=1e-2), 0.1), 3, accumulate_in_grad=True), k=2), 0.9),
    "factory_in_grad": lambda m: extend_with(torch.optim.Adam, "gradient_accumulation", "lookahead")(
        m.parameters(), lr=1e-2, grad_accum_steps=3, steps_per_slow_update=2),
}


@pytest.mark.parametrize("stop", [1, 2, 5, 6, 7])
@pytest.mark.parametrize("name", sorted(ACCUM))
def test_accumulation_resumes_exactly_mid_cycle(kit, name, stop):
    """Save after `stop` micro-steps (mid-cycle for most), load into a fresh model + stack, finish: bitwise
    equal to the uninterrupted run. accumulate_in_grad keeps the partial sum in .grad: it must be saved."""
    data = kit.batches(12, size=4)
    samples = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8] if name == "sample_weighted" else None
    a = kit.mlp()
    oa = ACCUM[name](a)
    run(kit, a, oa, data, samples)
    b = kit.mlp()
    ob = ACCUM[name](b)
    run(kit, b, ob, data[:stop], samples and samples[:stop])
    sd = through_disk(ob.state_dict())
    weights = through_disk(b.state_dict())
    c = kit.mlp(seed=7)                                          # a fresh process: other weights, no .grad
    c.load_state_dict(weights)
    oc = ACCUM[name](c)
    oc.load_state_dict(sd)
    run(kit, c, oc, data[stop:], samples and samples[stop:])
    assert kit.max_diff(a, c) == 0.0
    if isinstance(oa, ExponentialMovingAverage):
        assert all(torch.equal(s, t) for s, t in zip(oa.ema.shadow, oc.ema.shadow))


def test_in_grad_state_dict_without_the_gradients_is_refused(kit):
    model = kit.mlp()
    opt = ACCUM["in_grad"](model)
    run(kit, model, opt, kit.batches(2))
    sd = opt.state_dict()
    del sd["outer"]["grads"]
    with pytest.raises(ValueError, match="mid-cycle.*without the accumulated gradients"):
        ACCUM["in_grad"](kit.mlp()).load_state_dict(sd)


OTHER_STACKS = [
    ("lookahead into accumulation", lambda m: Lookahead(torch.optim.Adam(m.parameters(), lr=1e-2), k=2),
     lambda m: GradientAccumulation(torch.optim.Adam(m.parameters(), lr=1e-2), 2)),
    ("swapped order", lambda m: Lookahead(GradientAccumulation(torch.optim.Adam(m.parameters(), lr=1e-2), 2), k=2),
     lambda m: GradientAccumulation(Lookahead(torch.optim.Adam(m.parameters(), lr=1e-2), k=2), 2)),
    ("other k", lambda m: Lookahead(torch.optim.Adam(m.parameters(), lr=1e-2), k=5),
     lambda m: Lookahead(torch.optim.Adam(m.parameters(), lr=1e-2), k=3)),
    ("extra wrapper", lambda m: ExponentialMovingAverage(WeightDecay(torch.optim.Adam(m.parameters())), 0.9),
     lambda m: WeightDecay(torch.optim.Adam(m.parameters()))),
    ("other base", lambda m: Lookahead(torch.optim.Adam(m.parameters(), lr=1e-2), k=2),
     lambda m: Lookahead(torch.optim.AdamW(m.parameters(), lr=1e-2), k=2)),
    ("in_grad into buffers", lambda m: GradientAccumulation(torch.optim.Adam(m.parameters()), 3,
                                                            accumulate_in_grad=True),
     lambda m: GradientAccumulation(torch.optim.Adam(m.parameters()), 3)),
]


@pytest.mark.parametrize("case", OTHER_STACKS, ids=[c[0] for c in OTHER_STACKS])
def test_another_stack_is_refused_naming_both_and_nothing_changes(kit, case):
    _, make_src, make_dst = case
    src_model, dst_model = kit.mlp(), kit.mlp(seed=3)
    src, dst = make_src(src_model), make_dst(dst_model)
    run(kit, src_model, src, kit.batches(5))
    run(kit, dst_model, dst, kit.batches(3, seed=9))
    before = full_state(dst_model, dst)
    with pytest.raises(ValueError, match="optimizer stack mismatch") as err:
        dst.load_state_dict(through_disk(src.state_dict()))
    src_names = [n for n, _ in describe_stack(src)]
    dst_names = [n for n, _ in describe_stack(dst)]
    assert all(n in str(err.value) for n in src_names + dst_names)
    assert same(before, full_state(dst_model, dst))


def test_extend_with_and_hand_built_stacks_are_the_same_stack(kit):
    m1, m2 = kit.mlp(), kit.mlp()
    built = extend_with(torch.optim.Adam, "weight_decay", "layer_adaptation")(m1.parameters(), lr=1e-2,
                                                                              weight_decay_rate=0.01)
    hand = LayerAdaptation(WeightDecay(torch.optim.Adam(m2.parameters(), lr=1e-2), 0.01))
    assert describe_stack(built) == describe_stack(hand)
    run(kit, m1, built, kit.batches(3))
    hand.load_state_dict(built.state_dict())


def adam_state(kit, model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    run(kit, model, opt, kit.batches(3))
    return opt


def sgd_state(kit, model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    run(kit, model, opt, kit.batches(3))
    return opt


@pytest.mark.parametrize("src,dst,missing", [(adam_state, sgd_state, "momentum"), (sgd_state, adam_state, "betas")])
@pytest.mark.parametrize("wrapped", [False, True])
def test_resume_into_a_different_optimizer_is_refused_before_any_change(kit, src, dst, missing, wrapped):
    """Adam state into SGD(momentum) and the reverse: ValueError naming the missing key, state unchanged
    (was: `KeyError: 'momentum'` at the next step, after the inner state had been overwritten)."""
    a, b = kit.mlp(), kit.mlp(seed=2)
    sa, sb = src(kit, a), dst(kit, b)
    if wrapped:
        sa, sb = Lookahead(sa, k=2), Lookahead(sb, k=2)
        sd = sa.state_dict()
        sd["stack"] = describe_stack(sb)                       # even with a matching record the inner is checked
    else:
        sd = sa.state_dict()
    before = full_state(b, sb)
    with pytest.raises(ValueError, match=missing):
        check_state_dict(sb, sd)
    if wrapped:
        with pytest.raises(ValueError, match=missing):
            sb.load_state_dict(sd)
    assert same(before, full_state(b, sb))


def test_load_into_another_model_is_refused_before_any_change(kit):
    a, b = kit.mlp(hidden=8), kit.mlp(hidden=5)
    sa = Lookahead(torch.optim.Adam(a.parameters(), lr=1e-2), k=2)
    sb = Lookahead(torch.optim.Adam(b.parameters(), lr=1e-2), k=2)
    run(kit, a, sa, kit.batches(3))
    run(kit, b, sb, kit.batches(3))
    before = full_state(b, sb)
    with pytest.raises(ValueError, match="shape"):
        sb.load_state_dict(sa.state_dict())
    assert same(before, full_state(b, sb))
    with pytest.raises(ValueError, match="shape"):
        check_state_dict(sb.inner, sa.inner.state_dict())


def test_group_count_and_sizes_and_nan_lr_are_refused(kit):
    model = kit.mlp()
    first, rest = list(model.parameters())[:2], list(model.parameters())[2:]
    one = WeightDecay(torch.optim.Adam(model.parameters(), lr=1e-2))
    two = WeightDecay(torch.optim.Adam([{"params": first}, {"params": rest}], lr=1e-2))
    uneven = WeightDecay(torch.optim.Adam([{"params": first[:1]}, {"params": first[1:] + rest}], lr=1e-2))
    with pytest.raises(ValueError, match="1 param groups but this Adam has 2"):
        two.load_state_dict(one.state_dict())
    with pytest.raises(ValueError, match=r"sizes \[2, 2\] do not match this Adam's \[1, 3\]"):
        uneven.load_state_dict(two.state_dict())
    sd = one.state_dict()
    sd["inner"]["param_groups"][0]["lr"] = float("nan")
    with pytest.raises(ValueError, match="'lr'.*nan"):
        one.load_state_dict(sd)
    assert one.param_groups[0]["lr"] == 1e-2


def test_malformed_dicts_are_refused(kit):
    model = kit.mlp()
    opt = PiecewiseLinearLR(torch.optim.Adam(model.parameters(), lr=1e-2), {3: 1.0})
    run(kit, model, opt, kit.batches(2))
    good = opt.state_dict()
    bad_outer = {**good, "outer": {"state": {}}}
    with pytest.raises(ValueError, match="missing \\['update_step'\\]"):
        opt.load_state_dict(bad_outer)
    bad_index = {**good, "outer": {"state": {99: {}}, "update_step": 2}}
    with pytest.raises(ValueError, match="parameter index 99"):
        opt.load_state_dict(bad_index)
    bad_step = {**good, "outer": {"state": {}, "update_step": -1}}
    with pytest.raises(ValueError, match="update_step"):
        opt.load_state_dict(bad_step)
    with pytest.raises(ValueError, match="stack"):
        opt.load_state_dict({**good, "stack": 3})
    assert opt.update_step == 2


@pytest.mark.parametrize("where", ["adam", "slow", "ema"])
def test_non_finite_state_is_refused_before_any_change(kit, where):
    """A poisoned checkpoint (NaN in a moment, a slow weight or the EMA shadow) is refused, not trained on."""
    def make(m):
        return ExponentialMovingAverage(Lookahead(torch.optim.Adam(m.parameters(), lr=1e-2), k=2), 0.9)
    a, b = kit.mlp(), kit.mlp()
    oa, ob = make(a), make(b)
    run(kit, a, oa, kit.batches(3))
    run(kit, b, ob, kit.batches(3))
    sd = oa.state_dict()
    if where == "adam":
        sd["inner"]["inner"]["state"][0]["exp_avg"][0, 0] = float("nan")
    elif where == "slow":
        sd["inner"]["outer"]["state"][1]["slow_param"][0] = float("inf")
    else:
        sd["outer"]["ema"]["shadow"][2][0] = float("nan")
    before = full_state(b, ob)
    with pytest.raises(ValueError, match="non-finite"):
        ob.load_state_dict(sd)
    assert same(before, full_state(b, ob))


def test_loaded_state_never_aliases_the_checkpoint(kit):
    """Loading one dict into two optimizers gives two independent states (torch alone shares the tensors)."""
    data = kit.batches(6)
    a = kit.mlp()
    oa = Lookahead(torch.optim.Adam(a.parameters(), lr=1e-2), k=2)
    run(kit, a, oa, data[:3])
    sd = oa.state_dict()
    results = []
    for _ in range(2):
        m = kit.mlp()
        m.load_state_dict(a.state_dict())
        opt = Lookahead(torch.optim.Adam(m.parameters(), lr=1e-2), k=2)
        opt.load_state_dict(sd)
        run(kit, m, opt, data[3:])
        results.append(kit.snapshot(m))
    assert all(torch.equal(p, q) for p, q in zip(*results))


def test_load_optimizer_state_checks_plain_torch_optimizers(kit):
    """The Trainer's entry point: Adam state into a plain SGD is refused before any change (torch alone
    loads it and fails at the next step with KeyError: 'momentum')."""
    from kexue.optim import load_optimizer_state
    a, b = kit.mlp(), kit.mlp(seed=2)
    sa, sb = adam_state(kit, a), sgd_state(kit, b)
    before = full_state(b, sb)
    with pytest.raises(ValueError, match="momentum"):
        load_optimizer_state(sb, sa.state_dict())
    assert same(before, full_state(b, sb))
    load_optimizer_state(sb, sgd_state(kit, kit.mlp()).state_dict())
