"""bert4keras conveniences as torch param groups (issue 9): the CRF's `lr_multiplier` (a group whose lr is
the base lr times the multiplier, kept by every schedule) and `exclude_from_weight_decay` (an alias of groups
with `weight_decay_rate=0`, or a TypeError that shows the kexue way)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.nn.crf import CRF
from kexue.optim import (LayerAdaptation, PiecewiseLinearLR, PiecewiseLinearScheduler, WeightDecay, extend_with,
                         param_groups_by_name)


class Tagger(nn.Module):
    """Encoder + kexue's CRF (bert4keras's ConditionalRandomField: transitions only), as a bert4keras NER port."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.dense = nn.Linear(4, 5)
        self.LayerNorm = nn.LayerNorm(5)
        self.crf = CRF(5, include_start_end=False)

    def forward(self, x):                                          # x [6, 4] -> loss
        emissions = self.LayerNorm(self.dense(x)).view(2, 3, 5)   # [B=2, n=3, tags=5]
        tags = torch.tensor([[0, 1, 2], [3, 4, 0]])
        return self.crf(emissions, tags).mean()


def step(model, opt, n=1, sched=None):
    g = torch.Generator().manual_seed(3)
    for _ in range(n):
        opt.zero_grad()
        model(torch.randn(6, 4, generator=g)).backward()
        opt.step()
        if sched is not None:
            sched.step()


def lr_of(opt, model, name):
    p = dict(model.named_parameters())[name]
    return next(g["lr"] for g in opt.param_groups if any(q is p for q in g["params"]))


def test_lr_multiplier_group_is_base_lr_times_multiplier():
    model = Tagger()
    groups = param_groups_by_name(model, {r"^crf\.": {"lr_multiplier": 100}}, lr=1e-3)
    opt = torch.optim.SGD(groups, lr=1e-3)
    assert lr_of(opt, model, "crf.transitions") == pytest.approx(0.1) and lr_of(opt, model, "dense.weight") == 1e-3
    # SGD: the CRF moves 100x as far as with the base lr (closed form Δ = −lr·g)
    ref = Tagger()
    ref_opt = torch.optim.SGD(ref.parameters(), lr=1e-3)
    step(model, opt)
    step(ref, ref_opt)
    t0 = Tagger().crf.transitions
    assert torch.allclose(model.crf.transitions - t0, 100 * (ref.crf.transitions - t0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("schedule", ["lambda", "cosine", "step", "piecewise_scheduler", "piecewise_wrapper"])
def test_schedules_keep_the_lr_ratio(schedule):
    model = Tagger()
    groups = param_groups_by_name(model, [(r"^crf\.", {"lr_multiplier": 100})], lr=1e-3)
    opt = torch.optim.Adam(groups, lr=1e-3)
    sched = None
    if schedule == "lambda":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 / (1 + t))
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10)
    elif schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.3)
    elif schedule == "piecewise_scheduler":
        sched = PiecewiseLinearScheduler(opt, {2: 1.0, 6: 0.1})
    else:
        opt = PiecewiseLinearLR(opt, {0: 0.2, 2: 1.0, 6: 0.1})
        seen = []
        opt.inner.register_step_pre_hook(lambda o, a, k: seen.append(lr_of(o, model, "crf.transitions")
                                                                     / lr_of(o, model, "dense.weight")))
    for _ in range(4):
        step(model, opt, sched=sched)
        assert lr_of(opt, model, "crf.transitions") / lr_of(opt, model, "dense.weight") == pytest.approx(100, rel=1e-12)
    if schedule == "piecewise_wrapper":
        assert seen == pytest.approx([100] * 4, rel=1e-12)                      # inside the scheduled step


def test_lr_multiplier_needs_the_base_lr_and_is_checked():
    model = Tagger()
    with pytest.raises(TypeError, match=r"lr_multiplier=100.*pass lr="):
        param_groups_by_name(model, {r"^crf\.": {"lr_multiplier": 100}})
    with pytest.raises(ValueError, match=r"rules\[0\]\['lr_multiplier'\].*-1"):
        param_groups_by_name(model, {r"^crf\.": {"lr_multiplier": -1}}, lr=1e-3)
    with pytest.raises(ValueError, match=r"both 'lr'.*'lr_multiplier'"):
        param_groups_by_name(model, {r"^crf\.": {"lr_multiplier": 2, "lr": 0.1}}, lr=1e-3)
    with pytest.raises(ValueError, match=r"rules\[0\] pattern '\(' is not a valid regex"):
        param_groups_by_name(model, {"(": {}})


EXCLUDE = [r"bias", r"LayerNorm"]


def kexue_way(model, cls=WeightDecay):
    groups = param_groups_by_name(model, [(r"bias|LayerNorm", {"weight_decay_rate": 0.0})])
    return cls(torch.optim.Adam(groups, lr=1e-2), 0.1)


def test_exclude_from_weight_decay_is_an_alias_of_the_kexue_groups():
    """extend_with(..)(named_parameters(), exclude_from_weight_decay=[...]) trains bitwise like hand-made groups."""
    AdamW = extend_with(torch.optim.Adam, "weight_decay")
    a, b = Tagger(), Tagger()
    oa = AdamW(a.named_parameters(), lr=1e-2, weight_decay_rate=0.1, exclude_from_weight_decay=EXCLUDE)
    ob = kexue_way(b)
    rates = {n: g["weight_decay_rate"] for g in oa.param_groups for n in g["param_names"]}
    assert rates == {"dense.weight": 0.1, "crf.transitions": 0.1, "dense.bias": 0.0, "LayerNorm.weight": 0.0,
                     "LayerNorm.bias": 0.0}
    step(a, oa, 5)
    step(b, ob, 5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_exclude_from_weight_decay_keeps_groups_and_layer_adaptation_alias():
    Lamb = extend_with(torch.optim.Adam, "weight_decay", "layer_adaptation")
    model = Tagger()
    groups = [{"params": [("crf.transitions", model.crf.transitions)], "lr": 0.5},
              {"params": [(n, p) for n, p in model.named_parameters() if not n.startswith("crf")]}]
    opt = Lamb(groups, lr=1e-2, weight_decay_rate=0.1, exclude_from_weight_decay=EXCLUDE,
               exclude_from_layer_adaptation=["LayerNorm"])
    got = {n: (g["lr"], g["weight_decay_rate"], g["layer_adaptation"]) for g in opt.param_groups
           for n in g["param_names"]}
    assert got == {"crf.transitions": (0.5, 0.1, True), "dense.weight": (1e-2, 0.1, True),
                   "dense.bias": (1e-2, 0.0, True), "LayerNorm.weight": (1e-2, 0.0, False),
                   "LayerNorm.bias": (1e-2, 0.0, False)}


def test_exclude_without_names_points_to_the_kexue_way():
    AdamW = extend_with(torch.optim.Adam, "weight_decay")
    model = Tagger()
    with pytest.raises(TypeError, match=r"exclude_from_weight_decay.*named_parameters.*param_groups_by_name"):
        AdamW(model.parameters(), lr=1e-2, exclude_from_weight_decay=EXCLUDE)
    with pytest.raises(TypeError, match=r"exclude_from_weight_decay.*param_groups_by_name\(model"):
        WeightDecay(torch.optim.Adam(model.parameters()), 0.1, exclude_from_weight_decay=EXCLUDE)
    with pytest.raises(TypeError, match=r"exclude_from_layer_adaptation.*param_groups_by_name"):
        LayerAdaptation(torch.optim.Adam(model.parameters()), exclude_from_layer_adaptation=["bias"])
    with pytest.raises(TypeError, match=r"exclude_from_weight_decay.*needs the WeightDecay derivation"):
        extend_with(torch.optim.Adam, "lookahead")(model.named_parameters(), exclude_from_weight_decay=EXCLUDE)
    with pytest.raises(TypeError, match=r"exclude_from_weight_decay must be a list of name patterns.*'bias'"):
        AdamW(model.named_parameters(), exclude_from_weight_decay="bias")
