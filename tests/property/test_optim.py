"""Property tests of kexue.optim (https://kexue.fm/archives/7094): generated wrapper stacks resume exactly from
a checkpoint taken at any step; generated bad hyperparameters and corrupted checkpoints give clear errors that
name the argument, and a refused load changes nothing."""
from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.optim import (ExponentialMovingAverage, GradientAccumulation, GradientClipping, LayerAdaptation,
                         LazyUpdate, Lookahead, PiecewiseLinearLR, WeightDecay, load_optimizer_state)
from tests.property.clear_error import assert_finite, valid_or_clear_error


class Net(nn.Module):
    """Embedding (for LazyUpdate) + linear; ids drawn from a few rows so some rows get no gradient."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(8, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, ids):                                     # ids [b, t] -> [b, 2]
        return self.out(self.emb(ids).mean(1))


def batches(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 5, (3, 2), generator=g), torch.randn(3, 2, generator=g)) for _ in range(n)]


# one generated level of a stack: name -> strategy of constructor keywords
LEVELS = {
    "weight_decay": st.fixed_dictionaries({"weight_decay_rate": st.sampled_from([0.0, 0.01, 0.3])}),
    "layer_adaptation": st.fixed_dictionaries({"eps": st.sampled_from([0.0, 1e-6]),
                                               "max_ratio": st.sampled_from([None, 10.0])}),
    "piecewise": st.fixed_dictionaries({"lr_schedule": st.sampled_from([{0: 1.0}, {2: 1.0, 6: 0.2}]),
                                        "mode": st.sampled_from(["lr", "delta"])}),
    "accumulation": st.fixed_dictionaries({"accum_steps": st.integers(1, 3), "average": st.booleans(),
                                           "accumulate_in_grad": st.booleans()}),
    "lookahead": st.fixed_dictionaries({"k": st.integers(1, 3), "alpha": st.sampled_from([0.5, 0.8]),
                                        "pullback_momentum": st.sampled_from(["none", "pullback", "reset"]),
                                        "sync_schedule": st.sampled_from(["after_k", "first_step"])}),
    "lazy": st.fixed_dictionaries({"mode": st.sampled_from(["mask_update", "skip_state"])}),
    "ema": st.fixed_dictionaries({"decay": st.sampled_from([0.0, 0.9]), "init": st.sampled_from(["zeros", "copy"])}),
    "clipping": st.fixed_dictionaries({"gamma": st.sampled_from([0.05, 1.0]), "mode": st.sampled_from(["hard", "soft"]),
                                       "per_tensor": st.booleans()}),
}
CLASSES = {"weight_decay": WeightDecay, "layer_adaptation": LayerAdaptation, "piecewise": PiecewiseLinearLR,
           "accumulation": GradientAccumulation, "lookahead": Lookahead, "lazy": LazyUpdate,
           "ema": ExponentialMovingAverage, "clipping": GradientClipping}


@st.composite
def stacks(draw):
    """(base name, [(level name, kwargs), ...] innermost first)."""
    names = draw(st.lists(st.sampled_from(sorted(LEVELS)), max_size=4, unique=True))
    return draw(st.sampled_from(["adam", "sgd_momentum"])), [(n, draw(LEVELS[n])) for n in names]


def build(model: Net, spec):
    base, levels = spec
    opt = (torch.optim.Adam(model.parameters(), lr=0.05) if base == "adam"
           else torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    for name, kw in levels:
        kw = dict(kw, params=[model.emb.weight]) if name == "lazy" else kw
        opt = CLASSES[name](opt, **kw)
    return opt


def train(model, opt, data):
    for ids, y in data:
        opt.zero_grad()
        ((model(ids) - y) ** 2).mean().backward()
        opt.step()


def through_disk(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def same(a, b) -> bool:
    """Bitwise equality of nested checkpoint structures."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def full_state(model, opt):
    return through_disk({"params": [p.detach() for p in model.parameters()],
                         "grads": [p.grad for p in model.parameters()], "opt": opt.state_dict()})


@pytest.mark.timeout(120)
@settings(max_examples=150)
@given(spec=stacks(), n=st.integers(1, 9), cut=st.integers(0, 9), seed=st.integers(0, 2 ** 16))
def test_generated_stack_resumes_bitwise(spec, n, cut, seed):
    """Save at any step (mid accumulation cycle, mid Lookahead period), load into a fresh identical stack,
    continue: weights, .grad and the whole optimizer state equal the uninterrupted run bitwise."""
    cut = min(cut, n)
    data = batches(n, seed)
    a = Net(0)
    oa = build(a, spec)
    train(a, oa, data)
    b = Net(0)
    ob = build(b, spec)
    train(b, ob, data[:cut])
    checkpoint = through_disk({"model": b.state_dict(), "opt": ob.state_dict()})
    c = Net(1)                                                    # a new process: other weights, no .grad
    c.load_state_dict(checkpoint["model"])
    oc = build(c, spec)
    load_optimizer_state(oc, checkpoint["opt"])
    train(c, oc, data[cut:])
    sa, sc = full_state(a, oa), full_state(c, oc)
    if cut == n:                                                  # c never ran backward: no .grad to compare
        sa.pop("grads"), sc.pop("grads")
    assert same(sa, sc)
    assert_finite(*a.parameters())


# (constructor taking the value, argument name)
ARGS = [
    (lambda o, v: GradientAccumulation(o, accum_steps=v), "accum_steps"),
    (lambda o, v: GradientAccumulation(o, average=v), "average"),
    (lambda o, v: GradientAccumulation(o, accumulate_in_grad=v), "accumulate_in_grad"),
    (lambda o, v: Lookahead(o, k=v), "k"),
    (lambda o, v: Lookahead(o, alpha=v), "alpha"),
    (lambda o, v: Lookahead(o, pullback_momentum=v), "pullback_momentum"),
    (lambda o, v: Lookahead(o, reset_inner_state=v), "reset_inner_state"),
    (lambda o, v: WeightDecay(o, v), "weight_decay_rate"),
    (lambda o, v: LayerAdaptation(o, eps=v), "eps"),
    (lambda o, v: LayerAdaptation(o, max_ratio=v), "max_ratio"),
    (lambda o, v: PiecewiseLinearLR(o, {3: v}), "lr_schedule"),
    (lambda o, v: PiecewiseLinearLR(o, {v: 1.0}), "lr_schedule"),
    (lambda o, v: ExponentialMovingAverage(o, decay=v), "decay"),
    (lambda o, v: ExponentialMovingAverage(o, init=v), "init"),
    (lambda o, v: GradientClipping(o, gamma=v), "gamma"),
    (lambda o, v: GradientClipping(o, norm_type=v), "norm_type"),
    (lambda o, v: GradientClipping(o, per_tensor=v), "per_tensor"),
    (lambda o, v: LazyUpdate(o, mode=v), "mode"),
    (lambda o, v: LazyUpdate(o, params=o.param_groups[0]["params"][:1], row_dim=v), "row_dim"),
]
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 6, 10 ** 6), st.booleans(),
                   st.none(), st.text(max_size=4), st.sampled_from(["hard", "zeros", "copy", "none", "pullback"]))


@pytest.mark.timeout(120)
@settings(max_examples=300)
@given(which=st.integers(0, len(ARGS) - 1), value=VALUES, lr=st.sampled_from([0.1, math.nan, math.inf]))
def test_generated_hyperparameters_are_valid_or_a_clear_error(which, value, lr):
    """Any value: the wrapper is built and a step keeps the weights finite, or the error names the argument."""
    make, name = ARGS[which]
    model = Net(0)
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    inner.param_groups[0]["lr"] = lr                             # torch's SGD itself takes lr=nan
    with valid_or_clear_error(name, "'lr'"):
        opt = make(inner, value)
        before = [p.detach().clone() for p in model.parameters()]
        for ids, y in batches(3, 0):
            opt.zero_grad()
            ((model(ids) - y) ** 2).mean().backward()
            try:
                opt.step()
            except ValueError as e:                                # a refused step changes nothing
                assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before)), e
                raise
            before = [p.detach().clone() for p in model.parameters()]
        assert math.isfinite(lr)
        assert_finite(*model.parameters())


def leaves(obj, path=()):
    """(path, value) of every leaf of a nested checkpoint (dict keys and list positions)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, path + (k,))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from leaves(v, path + (i,))
    if path:
        yield path, obj


def mutate(sd, path, kind):
    """A copy of `sd` with the node at `path` deleted or replaced."""
    def rebuild(node, rest):
        if not rest:
            return None if kind == "delete" else {
                "none": None, "string": "x", "negative": -1, "nan": math.nan, "bool": True,
                "tensor": torch.full((5,), math.nan), "scalar": torch.tensor(2.0), "empty": {}}[kind]
        key, tail = rest[0], rest[1:]
        if isinstance(node, dict):
            out = dict(node)
            if kind == "delete" and not tail:
                del out[key]
            else:
                out[key] = rebuild(node[key], tail)
            return out
        out = list(node)
        if kind == "delete" and not tail:
            del out[key]
        else:
            out[key] = rebuild(node[key], tail)
        return type(node)(out) if isinstance(node, tuple) else out
    return rebuild(sd, path)


KINDS = ["delete", "none", "string", "negative", "nan", "bool", "tensor", "scalar", "empty"]


@pytest.mark.timeout(120)
@settings(max_examples=400)
@given(spec=stacks(), pick=st.integers(0, 10 ** 6), kind=st.sampled_from(KINDS), seed=st.integers(0, 99))
def test_corrupted_checkpoint_is_refused_with_nothing_changed_or_trains_finite(spec, pick, kind, seed):
    """One node of a saved state deleted or replaced: load_state_dict raises a clear error naming the
    state_dict and changes nothing, or it loads and the next steps keep every weight finite."""
    a, b = Net(0), Net(1)
    oa, ob = build(a, spec), build(b, spec)
    train(a, oa, batches(4, seed))
    train(b, ob, batches(3, seed + 1))
    sd = through_disk(oa.state_dict())
    paths = list(leaves(sd))
    path, _ = paths[pick % len(paths)]
    bad = mutate(sd, path, kind)
    before = full_state(b, ob)
    try:
        load_optimizer_state(ob, bad)                             # checked first, for plain torch too
    except (ValueError, TypeError, KeyError) as e:
        assert "state_dict" in str(e), f"{type(e).__name__}: {e}"
        assert same(before, full_state(b, ob)), f"a refused load changed the state: {e}"
        return
    with valid_or_clear_error("state_dict"):
        train(b, ob, batches(3, seed + 2))
    assert_finite(*b.parameters())


# ---- issue 9: per-group hyperparameters (torch.optim style) and bert4keras's lr_multiplier ------------------
GROUP_KEYS = {"weight_decay": ["weight_decay_rate"], "layer_adaptation": ["layer_adaptation", "layer_adaptation_eps",
                                                                          "max_trust_ratio"],
              "piecewise": ["lr_schedule", "lr_schedule_mode"], "lookahead": ["lookahead_k", "lookahead_alpha"],
              "lazy": ["lazy"]}
GROUP_VALUES = st.one_of(VALUES, st.sampled_from([{}, {0: 1.0}, {-1: 1.0}, {2: math.nan}, {1.5: 1.0}, "lr", "delta",
                                                  [1, 2]]))


@pytest.mark.timeout(120)
@settings(max_examples=250)
@given(spec=stacks(), pick=st.integers(0, 10 ** 6), value=GROUP_VALUES, seed=st.integers(0, 99))
def test_generated_group_value_is_used_or_refused_before_any_change(spec, pick, value, seed):
    """A value written into a group (by the user or a scheduler) for any level's key: training goes on with
    finite weights, or the next step raises an error naming the group key and changes no weight."""
    keyed = [k for name, _ in spec[1] for k in GROUP_KEYS.get(name, [])]
    if not keyed:
        return
    key = keyed[pick % len(keyed)]
    model = Net(seed)
    opt = build(model, spec)
    group = opt.param_groups[pick % len(opt.param_groups)]
    group[key] = value
    data = batches(4, seed)
    before = [p.detach().clone() for p in model.parameters()]
    with valid_or_clear_error(key):
        for ids, y in data:
            opt.zero_grad()
            ((model(ids) - y) ** 2).mean().backward()
            try:
                opt.step()
            except (ValueError, TypeError) as e:                   # a refused step changes nothing
                assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before)), e
                raise
            before = [p.detach().clone() for p in model.parameters()]
        assert_finite(*model.parameters())


@pytest.mark.timeout(60)
@settings(max_examples=200)
@given(m=VALUES, lr=VALUES)
def test_generated_lr_multiplier_gives_lr_times_m_or_a_clear_error(m, lr):
    from kexue.optim import param_groups_by_name
    model = Net(0)
    with valid_or_clear_error("lr_multiplier", "lr"):
        groups = param_groups_by_name(model, {r"^out\.": {"lr_multiplier": m}}, lr=lr)
        assert math.isfinite(m) and m >= 0 and math.isfinite(lr) and lr >= 0
        assert groups[0]["lr"] == lr * m and "lr" not in groups[1]
