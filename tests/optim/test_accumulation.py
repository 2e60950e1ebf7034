"""GradientAccumulation: k micro-batches == one step on their union (mean loss); state moves only on updates."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.optim import GradientAccumulation, Lookahead, SchedulerOnUpdate, WeightDecay


def run_accumulated(kit, model, opt, micro):
    flags = []
    for x, y in micro:
        opt.zero_grad()
        kit.loss(model, x, y).backward()
        flags.append(opt.step())
    return flags


def big_batches(micro, k):
    return [(torch.cat([x for x, _ in micro[i:i + k]]), torch.cat([y for _, y in micro[i:i + k]]))
            for i in range(0, len(micro), k)]


@pytest.mark.parametrize("make,tol", [
    (lambda p: torch.optim.SGD(p, lr=0.1), 1e-12),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), 1e-12),
    (lambda p: torch.optim.Adam(p, lr=1e-2), 1e-10),
    (lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1), 1e-10),
    (lambda p: torch.optim.RMSprop(p, lr=1e-3), 1e-10),
])
@pytest.mark.parametrize("accumulate_in_grad", [False, True])
def test_accumulation_equals_big_batch(kit, make, tol, accumulate_in_grad):
    k = 4
    micro = kit.batches(4 * 20, size=4)
    a, b = kit.mlp(), kit.mlp()
    oa = GradientAccumulation(make(a.parameters()), k, accumulate_in_grad=accumulate_in_grad)
    flags = run_accumulated(kit, a, oa, micro)
    assert flags == [False, False, False, True] * 20
    kit.train(b, make(b.parameters()), big_batches(micro, k))
    assert kit.max_diff(a, b) < tol
    assert oa.update_step == 20 and oa.micro_step == 80


def test_inner_state_moves_only_on_real_updates(kit):
    model = kit.mlp()
    adam = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt = GradientAccumulation(adam, 3)
    before = kit.snapshot(model)
    run_accumulated(kit, model, opt, kit.batches(2))
    assert len(adam.state) == 0                                  # inner.step never called
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert opt.will_update and not opt.last_step_updated
    run_accumulated(kit, model, opt, kit.batches(1))
    assert all(int(s["step"]) == 1 for s in adam.state.values())  # bias correction counts real updates


def test_k1_equals_inner(kit):
    a, b = kit.mlp(), kit.mlp()
    kit.train(a, GradientAccumulation(torch.optim.Adam(a.parameters(), lr=1e-2), 1), kit.batches(10))
    kit.train(b, torch.optim.Adam(b.parameters(), lr=1e-2), kit.batches(10))
    assert kit.max_diff(a, b) == 0.0


def test_sample_weighted_ragged_batch_is_exact_mean(kit):
    micro = kit.batches(3, size=5)
    micro[2] = (micro[2][0][:2], micro[2][1][:2])                # ragged last micro-batch
    a, b, c = kit.mlp(), kit.mlp(), kit.mlp()
    oa = GradientAccumulation(torch.optim.SGD(a.parameters(), lr=0.1), 3, sample_weighted=True)
    for x, y in micro:
        oa.zero_grad()
        kit.loss(a, x, y).backward()
        oa.step(num_samples=len(x))
    kit.train(b, torch.optim.SGD(b.parameters(), lr=0.1), big_batches(micro, 3))
    assert kit.max_diff(a, b) < 1e-12
    # default averaging = mean of the micro-batch means, which differs here
    run_accumulated(kit, c, GradientAccumulation(torch.optim.SGD(c.parameters(), lr=0.1), 3), micro)
    assert kit.max_diff(c, b) > 1e-6
    with pytest.raises(ValueError, match="num_samples"):
        oa.step()


def test_batchnorm_breaks_the_equivalence(kit):
    """Documents the article's caveat: BatchNorm statistics are per micro-batch."""
    def bn_model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    micro = kit.batches(4, size=4)
    a, b = bn_model(), bn_model()
    run_accumulated(kit, a, GradientAccumulation(torch.optim.SGD(a.parameters(), lr=0.1), 4), micro)
    kit.train(b, torch.optim.SGD(b.parameters(), lr=0.1), big_batches(micro, 4))
    assert kit.max_diff(a, b) > 1e-6


def test_mid_cycle_state_dict_round_trip(kit):
    micro = kit.batches(14, size=4)
    a = kit.mlp()
    oa = GradientAccumulation(torch.optim.Adam(a.parameters(), lr=1e-2), 4)
    run_accumulated(kit, a, oa, micro)
    b = kit.mlp()
    ob = GradientAccumulation(torch.optim.Adam(b.parameters(), lr=1e-2), 4)
    run_accumulated(kit, b, ob, micro[:6])                       # stop in the middle of cycle 2
    sd = ob.state_dict()
    c = kit.mlp()
    c.load_state_dict(b.state_dict())
    oc = GradientAccumulation(torch.optim.Adam(c.parameters(), lr=1e-2), 4)
    oc.load_state_dict(sd)
    run_accumulated(kit, c, oc, micro[6:])
    assert kit.max_diff(a, c) == 0.0 and oc.micro_step == 14


def test_scheduler_on_update_and_outer_lookahead_count_real_updates(kit):
    model = kit.mlp()
    acc = GradientAccumulation(torch.optim.SGD(model.parameters(), lr=0.1), 2)
    sched = SchedulerOnUpdate(torch.optim.lr_scheduler.StepLR(acc, step_size=1, gamma=0.5), acc)
    look = Lookahead(acc, k=2)
    for x, y in kit.batches(8):
        look.zero_grad()
        kit.loss(model, x, y).backward()
        look.step()
        sched.step()
    assert acc.update_step == 4 and look.update_step == 4
    assert acc.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 4)


def test_bad_arguments_raise():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="accum_steps must be an int >= 1, got 0"):
        GradientAccumulation(torch.optim.SGD(p, lr=0.1), 0)
    with pytest.raises(ValueError, match="accumulate_in_grad"):
        GradientAccumulation(torch.optim.SGD(p, lr=0.1), 2, sample_weighted=True, accumulate_in_grad=True)


@pytest.mark.parametrize("snapshot_path", [False, True])
def test_weight_decay_outside_accumulation_decays_only_on_updates(kit, snapshot_path):
    """WeightDecay(GradientAccumulation(Adam)) == GradientAccumulation(AdamW): no decay on micro-steps."""
    micro = kit.batches(12, size=4)
    a, b = kit.mlp(), kit.mlp()
    inner_wd = 1e-3 if snapshot_path else 0.0                   # Adam's own L2 forces the snapshot path
    oa = WeightDecay(GradientAccumulation(torch.optim.Adam(a.parameters(), lr=1e-2, weight_decay=inner_wd), 3), 0.1)
    ob = GradientAccumulation(WeightDecay(torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=inner_wd), 0.1), 3)
    run_accumulated(kit, a, oa, micro)
    run_accumulated(kit, b, ob, micro)
    assert kit.max_diff(a, b) < 1e-12
