"""The gradient-accumulation experiment (spec core/03 §4): the shared sample order, exactness of 1 × 32 vs 32,
a smoke run, determinism and the verdict in both directions."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments import gradient_accumulation as ga
from kexue.experiments._optim_data import digits_split


def test_orders_are_permutations_cut_to_a_multiple_of_k():
    orders = ga._orders(1437, 3, 0)
    assert all(len(o) == 1408 and len(set(o.tolist())) == 1408 for o in orders)
    assert not torch.equal(orders[0], orders[1])
    assert all(torch.equal(a, b) for a, b in zip(orders, ga._orders(1437, 3, 0)))


def test_accumulated_batch1_equals_batch32_without_dropout():
    """Adam on the mean of 32 single-sample gradients = Adam on the batch-32 mean (spec core/03 §3.2)."""
    data = digits_split(0)
    orders = ga._orders(len(data[0]), 1, 0)
    acc, _ = ga._train(data, 0, 1, ga.K, 0.0, orders, max_updates=3)
    big, _ = ga._train(data, 0, ga.K, 1, 0.0, orders, max_updates=3)
    a = torch.cat([p.detach().flatten() for p in acc.parameters()])
    b = torch.cat([p.detach().flatten() for p in big.parameters()])
    assert float((a - b).norm() / b.norm()) < 1e-6             # float32 round-off of the two summation orders
    fresh, _ = ga._train(data, 0, ga.K, 1, 0.0, orders, max_updates=1)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.parameters(), big.parameters()))  # 1 ≠ 3 updates


TINY = {"epochs": 1, "exact_updates": 2}


def _tiny(monkeypatch):
    monkeypatch.setitem(ga.CONFIG, "quick", TINY)
    full = ga.digits_split

    def small(seed):  # 320 training images: 10 accumulation cycles per epoch
        x, y, xt, yt = full(seed)
        return x[:320], y[:320], xt, yt
    monkeypatch.setattr(ga, "digits_split", small)


def test_smoke_every_metric_finite(monkeypatch):
    _tiny(monkeypatch)
    m = ga.run("quick", 0)
    for check in ga.EXPERIMENT.checks:
        assert check.metric in m.metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.metrics.values()), m.metrics
    assert m.metrics["param_distance_exact"] < 1e-5
    assert {f.name for f in m.figures} == {"test_accuracy", "train_loss"}


def test_same_seed_same_metrics(monkeypatch):
    _tiny(monkeypatch)
    assert ga.run("quick", 1).metrics == ga.run("quick", 1).metrics


def test_verdict_on_hand_made_numbers():
    # the article's MNIST numbers: batch 1 loss 0.4 / < 97 %, accumulated 0.02 / 98 %+, batch 100 the same
    good = {"train_loss_batch1_over_accum": 0.4 / 0.02, "best_acc_accum_minus_batch1": 0.98 - 0.97,
            "best_acc_accum_minus_batch32": 0.002, "param_distance_exact": 3e-7}
    checks = ga.EXPERIMENT.checks
    assert verdict(checks, good) == REPRODUCED
    assert verdict(checks, dict(good, train_loss_batch1_over_accum=0.5, best_acc_accum_minus_batch1=-0.01)) == PARTLY
    bad = {"train_loss_batch1_over_accum": 0.5, "best_acc_accum_minus_batch1": -0.01,
           "best_acc_accum_minus_batch32": 0.03, "param_distance_exact": 1e-2}
    assert verdict(checks, bad) == NOT_REPRODUCED



@pytest.mark.parametrize("mode, seed, error", [("fast", 0, ValueError), ("quick", -1, ValueError),
                                               ("quick", 1.5, TypeError), ("QUICK", 0, ValueError)])
def test_bad_mode_or_seed_is_refused_before_any_work(mode, seed, error):
    with pytest.raises(error, match="mode|seed"):
        ga.run(mode, seed)


@pytest.mark.slow
def test_quick_run():
    m = ga.run("quick", 0).metrics
    assert all(math.isfinite(v) for v in m.values())
