"""The NCE experiment (spec core/16): smoke run, quick run, determinism, and its helpers against references."""
import math

import pytest
import torch
from scipy import integrate

from kexue.experiments import REPRODUCED, verdict
from kexue.experiments import nce


def test_log_partition_matches_quadrature():
    ref = math.log(integrate.quad(lambda x: math.exp(-x * x - 0.5 * x**4), -10, 10)[0])
    assert nce.log_partition() == pytest.approx(ref, abs=1e-9)
    assert nce.log_partition(1.0, 0.0) == pytest.approx(0.5 * math.log(math.pi), abs=1e-9)  # Gaussian integral


def test_rejection_sampler_matches_the_target_moments():
    x = nce.sample_quartic(200_000, torch.Generator().manual_seed(0))
    z = integrate.quad(lambda t: math.exp(-t * t - 0.5 * t**4), -10, 10)[0]
    m2 = integrate.quad(lambda t: t * t * math.exp(-t * t - 0.5 * t**4), -10, 10)[0] / z
    assert x.shape == (200_000,) and x.dtype == torch.float64
    assert x.mean().item() == pytest.approx(0.0, abs=4 * math.sqrt(m2 / 200_000))
    assert (x**2).mean().item() == pytest.approx(m2, rel=0.01)


def test_smoke_every_metric_finite(monkeypatch):
    monkeypatch.setitem(nce.SIZES, "quick", 5_000)
    m = nce.run("quick", 0)
    for check in nce.EXPERIMENT.checks:
        assert check.metric in m.metrics
    assert all(math.isfinite(v) for v in m.metrics.values()), m.metrics
    assert {f.name for f in m.figures} == {"density", "log_ratio"}
    assert len(m.tables["fits"]) == 2


def test_same_seed_same_metrics(monkeypatch):
    monkeypatch.setitem(nce.SIZES, "quick", 5_000)
    assert nce.run("quick", 3).metrics == nce.run("quick", 3).metrics


def test_quick_run_recovers_the_parameters():
    """One quick seed at the spec's size: the corrected fit lands near (1, 0.5, log Z) (a loose bound, 4x
    the experiment's seed-averaged target: one seed's spread is larger), the uncorrected one near the ratio."""
    m = nce.run("quick", 0).metrics
    assert abs(m["a_err"]) < 0.12 and abs(m["b_err"]) < 0.12 and abs(m["log_z_err"]) < 0.08
    assert m["ratio_max_abs_err"] < 0.2
    assert m["log_z_true"] == pytest.approx(0.3963, abs=1e-4)


def test_verdict_on_hand_made_numbers():
    good = {"a_err": 0.01, "b_err": -0.02, "log_z_err": 0.001, "ratio_max_abs_err": 0.03}
    assert verdict(nce.EXPERIMENT.checks, good) == REPRODUCED
    bad = dict(good, a_err=-0.05)
    assert verdict(nce.EXPERIMENT.checks, bad) != REPRODUCED
