"""The optimization-dynamics experiment (spec core/05): smoke run, determinism and verdict logic."""
import math

import pytest

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments import optimization_dynamics as od


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setitem(od.SIM, "quick", (200, 300, 100))
    monkeypatch.setitem(od.TRADE_SIM, "quick", (200, 300, 100))


def test_smoke_every_metric_finite(small):
    m = od.run("quick", 0)
    for check in od.EXPERIMENT.checks:
        assert check.metric in m.metrics
    assert all(math.isfinite(v) for v in m.metrics.values()), m.metrics
    assert {r["method"] for r in m.tables["iterations"]} == {"gd", "heavy_ball", "nesterov"}
    assert m.figures[0].logy


def test_quadratic_counts_are_the_spec_closed_form_ones():
    counts, curves = od.quadratic_counts()
    assert counts["gd"] == 611 and counts["heavy_ball"] == 85 and abs(counts["nesterov"] - 139) <= 1
    assert curves["gd"][-1] < od.TOL <= curves["gd"][-2]


def test_same_seed_same_metrics(small):
    assert od.run("quick", 2).metrics == od.run("quick", 2).metrics


def test_verdict_on_hand_made_numbers():
    checks = od.EXPERIMENT.checks
    good = {"gd_iters": 611, "heavy_ball_iters": 85, "nesterov_iters": 138, "sgd_var_rel_err": 0.01,
            "heavy_ball_var_rel_err": 0.015, "batch_lr_trade_ratio": 1.03}
    assert verdict(checks, good) == REPRODUCED
    assert verdict(checks, dict(good, sgd_var_rel_err=0.05)) == PARTLY
    bad = {"gd_iters": 300, "heavy_ball_iters": 300, "nesterov_iters": 300, "sgd_var_rel_err": 0.5,
           "heavy_ball_var_rel_err": 0.5, "batch_lr_trade_ratio": 2.0}
    assert verdict(checks, bad) == NOT_REPRODUCED


@pytest.mark.slow
def test_quick_run_reproduces():
    m = od.run("quick", 0)
    assert verdict(od.EXPERIMENT.checks, m.metrics) == REPRODUCED, m.metrics


@pytest.mark.parametrize("mode, seed, match", [("fast", 0, "mode"), ("quick", -1, "seed"), ("quick", 1.5, "seed")])
def test_bad_mode_or_seed_is_refused_by_name(mode, seed, match):
    with pytest.raises((ValueError, TypeError), match=match):
        od.run(mode, seed)
