"""The sampling-view search experiment (spec core/06): smoke run, determinism, its data and verdict logic."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments import sampling_search as ss


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setitem(ss.STEPS, "quick", 20)
    monkeypatch.setitem(ss.FROM_CE, "quick", True)
    monkeypatch.setattr(ss, "CE_STEPS", 200)


def test_data_matches_the_recipe():
    x, y = ss.make_data(torch.Generator().manual_seed(0))
    assert x.shape == (1040, 3) and y.shape == (1040,)
    assert torch.equal(x[:, 2], torch.ones(1040)) and int(y.sum()) == 540
    outliers = x[-40:, :2]
    assert outliers.mean(0).tolist() == pytest.approx([-8.0, 6.0], abs=0.2)


def test_zero_one_error_against_hand_made_labels():
    x = torch.tensor([[1.0, 0.0, 1.0], [-3.0, 0.0, 1.0]], dtype=torch.float64)
    assert ss.zero_one_error(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), x, torch.tensor([1.0, 0.0])) == 0.0
    assert ss.zero_one_error(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), x, torch.tensor([0.0, 0.0])) == 0.5


def test_smoke_every_metric_finite(small):
    m = ss.run("quick", 0)
    for check in ss.EXPERIMENT.checks:
        assert check.metric in m.metrics
    assert set(m.metrics) >= {"ce_error", "search_error", "search_from_ce_error", "mean_ess"}
    assert all(math.isfinite(v) for v in m.metrics.values()), m.metrics
    assert 1.0 <= m.metrics["mean_ess"] <= ss.SEARCH["num_samples"]
    assert len(m.tables["errors"]) == 3 and m.figures[0].name == "zero_one_error"


def test_same_seed_same_metrics(small):
    assert ss.run("quick", 1).metrics == ss.run("quick", 1).metrics


def test_verdict_on_hand_made_numbers():
    checks = ss.EXPERIMENT.checks
    assert verdict(checks, {"search_error": 0.104, "ce_error": 0.202}) == REPRODUCED
    assert verdict(checks, {"search_error": 0.19, "ce_error": 0.202}) == PARTLY
    assert verdict(checks, {"search_error": 0.19, "ce_error": 0.15}) == NOT_REPRODUCED


@pytest.mark.slow
def test_quick_run_beats_cross_entropy():
    m = ss.run("quick", 0).metrics
    assert m["search_error"] < m["ce_error"]


@pytest.mark.parametrize("mode, seed, match", [("fast", 0, "mode"), ("quick", -1, "seed"), ("quick", 1.5, "seed")])
def test_bad_mode_or_seed_is_refused_by_name(mode, seed, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ss.run(mode, seed)
