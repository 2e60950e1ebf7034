"""The gradient-clipping experiment (spec core/04): the toy table against the spec author's numpy run, the RNN
part's smoke run, determinism, and the verdict in both directions."""
import math

import numpy as np
import pytest

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments import gradient_clipping as gc


@pytest.fixture(scope="module")
def toy():
    return gc._toy_table()


def test_toy_step_counts_match_the_spec_table_exactly(toy):
    """The spec's numpy scan gave these counts; the library's GradientClipping must give the same."""
    metrics, rows = toy
    for row in rows:
        assert (row["gd_steps"], row["soft_steps"], row["hard_steps"]) == gc.SPEC_TABLE[row["theta0"]]
        assert row["best_lr"] <= 2 / (3 * row["theta0"] ** 2 + 1) * 1.2 * (1 + 1e-12)


def test_fixed_lr_gd_needs_theta_squared_steps_clipping_theta(toy):
    """Stability forces lr < 2/f''(θ0) ~ 2/(3θ0²): steps grow ~θ0² for GD and ~θ0 for clipped GD."""
    metrics, _ = toy
    assert metrics["gd_steps_theta30"] / metrics["gd_steps_theta3"] > 0.5 * 100
    assert metrics["soft_steps_theta30"] / metrics["soft_steps_theta3"] < 2 * 10


def test_gd_steps_closed_form_on_a_pure_contraction():
    """From θ0 = 1e-5 (θ³ negligible) GD contracts by (1 − lr) per step: ceil(log(10)/-log(1 − lr)) steps."""
    lr = 0.1
    assert gc.gd_steps(1e-5, lr, 10_000) == math.ceil(math.log(10) / -math.log(1 - lr))
    assert gc.gd_steps(3.0, 1.0, 10_000) is None            # lr far above 2/f''(3): diverges


def test_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b = a + 0.5 * b
    assert gc.pearson(a.tolist(), b.tolist()) == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)


def _tiny(monkeypatch):
    monkeypatch.setitem(gc.CONFIG, "quick", {"rnn_steps": 60})
    monkeypatch.setattr(gc, "SPEC_TABLE", {3: (145, 14, 24)})


def test_smoke_every_metric_finite(monkeypatch):
    _tiny(monkeypatch)
    m = gc.run("quick", 0)
    for check in gc.EXPERIMENT.checks:
        if "theta" not in check.metric or check.metric.endswith("theta3"):
            assert check.metric in m.metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.metrics.values()), m.metrics
    assert {f.name for f in m.figures} == {"smoothness_vs_norm", "rnn_loss"}
    norms, smooth = m.figures[0].lines["unclipped"]
    assert len(norms) == len(smooth) == 3 and all(s > 0 for s in smooth)


def test_same_seed_same_metrics(monkeypatch):
    _tiny(monkeypatch)
    assert gc.run("quick", 3).metrics == gc.run("quick", 3).metrics


def _good():
    m = {f"{k}_steps_theta{t}": float(ref[i]) for t, ref in gc.SPEC_TABLE.items() for i, k in enumerate(gc._KINDS)}
    m.update(pearson_norm_smoothness=0.8, steps_to_90_unclipped_minus_clipped=100.0,
             spikes_unclipped_minus_clipped=3.0)
    return m


def test_verdict_on_hand_made_numbers():
    checks = gc.EXPERIMENT.checks
    assert verdict(checks, _good()) == REPRODUCED
    # 6 % off one count, weak correlation: partly
    assert verdict(checks, dict(_good(), gd_steps_theta30=15525 * 1.06, pearson_norm_smoothness=0.3)) == PARTLY
    bad = {k: v * 3 for k, v in _good().items() if "steps_theta" in k}
    bad.update(pearson_norm_smoothness=0.1, steps_to_90_unclipped_minus_clipped=-50.0,
               spikes_unclipped_minus_clipped=-2.0)
    assert verdict(checks, bad) == NOT_REPRODUCED



@pytest.mark.parametrize("mode, seed, error", [("fast", 0, ValueError), ("quick", -1, ValueError),
                                               ("quick", 1.5, TypeError), ("QUICK", 0, ValueError)])
def test_bad_mode_or_seed_is_refused_before_any_work(mode, seed, error):
    with pytest.raises(error, match="mode|seed"):
        gc.run(mode, seed)


@pytest.mark.slow
def test_quick_run():
    m = gc.run("quick", 0).metrics
    assert all(math.isfinite(v) for v in m.values())
