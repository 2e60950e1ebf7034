"""The wrappers are torch optimizers built through public torch API only (issue 9): `Optimizer.__init__` runs,
every per-group hyperparameter lives in `defaults` and `param_groups`, and step hooks, torch LR schedulers,
pickling and deepcopy behave as for a torch optimizer. No file of `kexue.optim` touches a private attribute of
`torch.optim.Optimizer` (a torch upgrade may rename them)."""
from __future__ import annotations

import ast
import copy
import pickle
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import kexue.optim
from kexue.optim import (DerivedOptimizer, ExponentialMovingAverage, LayerAdaptation, Lookahead, PiecewiseLinearLR,
                         WeightDecay)
from tests.optim.test_wrappers import WRAPPERS, Net, batches, train

OPTIM_DIR = Path(kexue.optim.__file__).parent


def torch_private_names(with_scheduler: bool = True) -> set[str]:
    """Private (single underscore) names of torch.optim.Optimizer: class attributes and those an instance sets;
    `with_scheduler`: also those of LRScheduler and those it sets on the optimizer (`_opt_called`)."""
    instance = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    names = set(dir(torch.optim.Optimizer)) | set(vars(instance))
    if with_scheduler:
        sched = torch.optim.lr_scheduler.LambdaLR(instance, lambda t: 1.0)
        instance.step()
        sched.step()
        names |= set(dir(torch.optim.lr_scheduler.LRScheduler)) | set(vars(sched)) | set(vars(instance))
    return {n for n in names if re.fullmatch(r"_[a-z]\w*", n) and not n.endswith("__")}


def private_uses(source: str, private: set[str]) -> list[str]:
    """`x._name` attributes and "_name" strings (getattr/setattr) that are torch.optim.Optimizer privates."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in private:
            hits.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in private:
            hits.append(f"line {node.lineno}: {node.value!r}")
    return hits


def test_the_private_name_list_is_not_empty():
    """Guard for the next test: torch has private step/hook machinery the scan must know about."""
    private = torch_private_names()
    assert "_patch_step_function" in private or any(n.startswith("_optimizer_step") for n in private)
    assert private_uses("self._optimizer_step_pre_hooks = {}", {"_optimizer_step_pre_hooks"})


@pytest.mark.parametrize("path", sorted(OPTIM_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_private_torch_optim_attribute_is_used(path):
    hits = private_uses(path.read_text(), torch_private_names())
    assert not hits, f"{path.name} uses private torch.optim.Optimizer attributes: {hits}"


def test_no_private_torch_optimizer_attribute_anywhere_in_kexue():
    """The Optimizer's own private names (hooks, step patching) appear in no file of the package."""
    private = torch_private_names(with_scheduler=False)
    hits = {str(p.relative_to(OPTIM_DIR.parent)): h for p in sorted(OPTIM_DIR.parent.rglob("*.py"))
            if (h := private_uses(p.read_text(), private))}
    assert not hits, hits


def test_optimizer_init_runs_on_every_wrapper():
    """`Optimizer.__init__` ran: the wrapper has every attribute a fresh torch optimizer has."""
    torch_keys = set(vars(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)))
    for name, make in WRAPPERS.items():
        opt = make(Net())
        level = opt
        while isinstance(level, DerivedOptimizer):
            assert torch_keys <= set(vars(level)), (name, torch_keys - set(vars(level)))
            assert level.param_groups is level.inner.param_groups
            level = level.inner


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_step_hooks_run_on_wrappers(name):
    model = Net()
    opt = WRAPPERS[name](model)
    calls = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    post = opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))
    train(model, opt, batches(2))
    assert calls == [("pre", opt), ("post", opt)] * 2
    pre.remove()
    post.remove()
    train(model, opt, batches(1))
    assert len(calls) == 4


@pytest.mark.parametrize("sched", ["step", "cosine", "onecycle"])
def test_torch_lr_schedulers_drive_a_wrapper_exactly_like_adamw(kit, sched):
    """WeightDecay(Adam) under a torch scheduler = AdamW under the same scheduler, bitwise-close per step."""
    make = {"step": lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5),
            "cosine": lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 6),
            "onecycle": lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 1e-2, total_steps=8)}[sched]
    a, b = kit.mlp(), kit.mlp()
    oa = WeightDecay(torch.optim.Adam(a.parameters(), lr=1e-2), 0.1)
    ob = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1)
    sa, sb = make(oa), make(ob)
    data = kit.batches(8)
    kit.train(a, oa, data, sa)
    kit.train(b, ob, data, sb)
    assert oa.param_groups[0]["lr"] == ob.param_groups[0]["lr"]
    assert kit.max_diff(a, b) < 1e-12


def test_scheduler_sees_and_can_drive_a_wrapper_hyperparameter(kit):
    """The decay rate is a group key: a scheduler-like loop can change it per group, as lr."""
    model = kit.mlp()
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[2].parameters())}]
    opt = WeightDecay(torch.optim.SGD(groups, lr=0.1), 0.5)
    assert [g["weight_decay_rate"] for g in opt.param_groups] == [0.5, 0.5] and opt.defaults["weight_decay_rate"] == 0.5
    opt.param_groups[1]["weight_decay_rate"] = 0.0
    before = kit.snapshot(model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = kit.snapshot(model)
    assert all(torch.allclose(x, y * (1 - 0.05)) for x, y in zip(after[:2], before[:2]))
    assert all(torch.equal(x, y) for x, y in zip(after[2:], before[2:]))
    assert [g["weight_decay_rate"] for g in opt.state_dict()["inner"]["param_groups"]] == [0.5, 0.0]


def test_layer_adaptation_hyperparameters_are_per_group(kit):
    """max_trust_ratio and the eps live in every group (torch.optim style) and can differ per group."""
    model = kit.mlp()
    groups = [{"params": list(model[0].parameters())}, {"params": list(model[2].parameters())}]
    opt = LayerAdaptation(torch.optim.SGD(groups, lr=0.1), eps=1e-6, max_ratio=10.0)
    own = {"layer_adaptation": True, "layer_adaptation_eps": 1e-6, "max_trust_ratio": 10.0}
    assert opt.defaults == {**opt.inner.defaults, **own}
    assert all(g["max_trust_ratio"] == 10.0 and g["layer_adaptation_eps"] == 1e-6 for g in opt.param_groups)
    opt.param_groups[0]["max_trust_ratio"] = 1e-3                  # tiny trust ratio for the first layer only
    before = kit.snapshot(model)
    x, y = kit.batches(1)[0]
    kit.loss(model, x, y).backward()
    opt.step()
    for p, q in zip(model[0].parameters(), before[:2]):                 # ‖Δ'‖ = r‖Δ‖ ≤ 1e-3 · lr · ‖∇‖
        assert (p - q).norm() <= 1e-3 * 0.1 * p.grad.norm() * (1 + 1e-9)
    assert any((p - q).norm() > 1e-3 for p, q in zip(model[2].parameters(), before[2:]))
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['max_trust_ratio'\].*-1"):
        opt.param_groups[1]["max_trust_ratio"] = -1.0
        opt.step()


def test_piecewise_schedule_is_per_group(kit):
    model = kit.mlp()
    groups = [{"params": list(model[0].parameters()), "lr_schedule": {0: 0.0}}, {"params": list(model[2].parameters())}]
    opt = PiecewiseLinearLR(torch.optim.SGD(groups, lr=0.1), {0: 1.0})
    before = kit.snapshot(model)
    x, y = kit.batches(1)[0]
    kit.loss(model, x, y).backward()
    opt.step()
    after = kit.snapshot(model)
    assert all(torch.equal(a, b) for a, b in zip(after[:2], before[:2]))          # m = 0 for group 0
    assert all(not torch.equal(a, b) for a, b in zip(after[2:], before[2:]))
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['lr_schedule'\]"):
        opt.param_groups[0]["lr_schedule"] = {-1: 1.0}
        opt.step()


def test_lookahead_hyperparameters_are_per_group(kit):
    model = kit.mlp()
    groups = [{"params": list(model[0].parameters()), "lookahead_alpha": 0.0}, {"params": list(model[2].parameters())}]
    opt = Lookahead(torch.optim.SGD(groups, lr=0.1), k=2, alpha=0.5)
    assert opt.defaults == {**opt.inner.defaults, "lookahead_k": 2, "lookahead_alpha": 0.5}
    before = kit.snapshot(model)
    kit.train(model, opt, kit.batches(2))
    after = kit.snapshot(model)
    assert all(torch.equal(a, b) for a, b in zip(after[:2], before[:2]))          # alpha 0: back to φ_0
    assert all(not torch.equal(a, b) for a, b in zip(after[2:], before[2:]))


def test_added_group_gets_defaults_and_is_checked(kit):
    model = kit.mlp()
    opt = WeightDecay(torch.optim.SGD(model[0].parameters(), lr=0.1), 0.3)
    opt.add_param_group({"params": list(model[2].parameters())})
    assert opt.param_groups[1]["weight_decay_rate"] == 0.3 and opt.param_groups is opt.inner.param_groups
    with pytest.raises(ValueError, match=r"weight_decay_rate.*-1"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(2))], "weight_decay_rate": -1.0})


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_pickle_and_deepcopy_of_a_wrapper(name, how):
    """A copy of (model, optimizer) trains bitwise like the original and keeps the shared groups."""
    data = batches(12)
    model = Net()
    opt = WRAPPERS[name](model)
    train(model, opt, data[:5])
    model2, opt2 = pickle.loads(pickle.dumps((model, opt))) if how == "pickle" else copy.deepcopy((model, opt))
    level = opt2
    while isinstance(level, DerivedOptimizer):
        assert level.param_groups is level.inner.param_groups
        level = level.inner
    def names(m, o):                                   # the copy's groups hold the copied model's parameters
        by_id = {id(p): n for n, p in m.named_parameters()}
        return [[by_id[id(p)] for p in g["params"]] for g in o.param_groups]
    assert names(model2, opt2) == names(model, opt)
    calls = []
    opt2.register_step_pre_hook(lambda o, a, k: calls.append(1))          # hooks work on the copy
    train(model, opt, data[5:])
    train(model2, opt2, data[5:])
    assert calls == [1] * 7
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), model2.parameters()))
    if isinstance(opt, ExponentialMovingAverage):
        assert all(torch.equal(s, t) for s, t in zip(opt.ema.shadow, opt2.ema.shadow))


def test_wrapper_follows_a_direct_load_of_the_inner_optimizer(kit):
    """`inner.load_state_dict` rebinds the inner's param_groups (torch); every wrapper level follows it."""
    model = kit.mlp()
    opt = Lookahead(WeightDecay(torch.optim.Adam(model.parameters(), lr=1e-2), 0.1), k=2)
    kit.train(model, opt, kit.batches(2))
    base = opt.inner.inner
    sd = base.state_dict()
    sd["param_groups"][0]["lr"] = 0.5
    base.load_state_dict(sd)
    assert opt.param_groups is opt.inner.param_groups is base.param_groups
    assert opt.param_groups[0]["lr"] == 0.5
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.1)
    kit.train(model, opt, kit.batches(1), sched)
    assert base.param_groups[0]["lr"] == pytest.approx(0.05)


def test_checkpoint_of_the_same_stack_without_the_new_group_keys_loads_with_the_defaults(kit):
    """A checkpoint saved before a hyperparameter moved into the groups (same stack record) loads, and the
    group gets this level's default, as torch's `__setstate__` does for a new hyperparameter; without the
    stack record the missing key is refused by name."""
    model = kit.mlp()
    opt = Lookahead(LayerAdaptation(torch.optim.SGD(model.parameters(), lr=0.1), max_ratio=5.0), k=2)
    kit.train(model, opt, kit.batches(3))
    sd = opt.state_dict()
    for g in sd["inner"]["inner"]["param_groups"]:
        del g["max_trust_ratio"], g["lookahead_k"]
    fresh = Lookahead(LayerAdaptation(torch.optim.SGD(kit.mlp().parameters(), lr=0.1), max_ratio=5.0), k=2)
    fresh.load_state_dict(copy.deepcopy(sd))
    assert all(g["max_trust_ratio"] == 5.0 and g["lookahead_k"] == 2 for g in fresh.param_groups)
    del sd["stack"], sd["inner"]["stack"]
    with pytest.raises(ValueError, match=r"\['(lookahead_k|max_trust_ratio)'\] is missing"):
        fresh.load_state_dict(sd)


@pytest.mark.parametrize("name", ["weight_decay", "accumulation", "lookahead", "canonical_chain"])
def test_state_dict_hooks_run_on_wrappers(name):
    """torch.optim's four state-dict hooks work on a wrapper (they did nothing before)."""
    model = Net()
    opt = WRAPPERS[name](model)
    train(model, opt, batches(3))
    calls = []
    opt.register_state_dict_pre_hook(lambda o: calls.append("pre"))
    opt.register_state_dict_post_hook(lambda o, sd: {**sd, "note": 1})
    opt.register_load_state_dict_pre_hook(lambda o, sd: {k: v for k, v in sd.items() if k != "note"})
    handle = opt.register_load_state_dict_post_hook(lambda o: calls.append("loaded"))
    opt.register_load_state_dict_post_hook(lambda o: calls.append("first"), prepend=True)
    sd = opt.state_dict()
    assert sd["note"] == 1 and calls == ["pre"]
    opt.load_state_dict(sd)
    assert calls == ["pre", "first", "loaded"]
    handle.remove()
    opt.load_state_dict(sd)
    assert calls == ["pre", "first", "loaded", "first"]
    assert opt.param_groups is opt.inner.param_groups


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_copy_after_a_scheduler_patched_step_steps_the_copy(kit, how):
    """A torch LR scheduler wraps `optimizer.step` on the instance (bound to the original through a weakref):
    a copied wrapper must step its own weights, not the original's (and pickle at all)."""
    model = kit.mlp()
    opt = WeightDecay(torch.optim.SGD(model.parameters(), lr=0.1), 0.1)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    model2, opt2 = pickle.loads(pickle.dumps((model, opt))) if how == "pickle" else copy.deepcopy((model, opt))
    before, before2 = kit.snapshot(model), kit.snapshot(model2)
    x, y = kit.batches(1)[0]
    kit.loss(model2, x, y).backward()
    opt2.step()
    assert all(torch.equal(a, b) for a, b in zip(kit.snapshot(model), before))          # original untouched
    assert all(not torch.equal(a, b) for a, b in zip(kit.snapshot(model2), before2))
