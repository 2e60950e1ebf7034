"""am_softmax (https://kexue.fm/archives/5743): every metric produced and finite, repeatable, the verdict follows
the numbers both ways."""
import math

import pytest

from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.am_softmax import ARMS, EXPERIMENT, run

METRICS = {f"{a}_{k}" for a in ARMS for k in ("top1", "top5", "top10", "intra", "nearest_other", "gap")} | {
    "am_minus_softmax_top1_pt", "softmax_minus_pairwise_top1_pt", "am_minus_pairwise_top1_pt", "am_minus_softmax_gap"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert a.metrics["am_minus_softmax_top1_pt"] == pytest.approx(a.metrics["am_top1"] - a.metrics["softmax_top1"])
    assert len(a.tables["retrieval_on_unseen_groups"]) == len(ARMS)


@pytest.mark.parametrize("metrics, expected", [
    ({"am_minus_softmax_top1_pt": 0.0, "softmax_minus_pairwise_top1_pt": 3.0, "am_minus_pairwise_top1_pt": 3.0,
      "am_minus_softmax_gap": 0.05}, REPRODUCED),
    ({"am_minus_softmax_top1_pt": -1.0, "softmax_minus_pairwise_top1_pt": 3.0, "am_minus_pairwise_top1_pt": 2.0,
      "am_minus_softmax_gap": 0.05}, PARTLY),
    ({"am_minus_softmax_top1_pt": -1.0, "softmax_minus_pairwise_top1_pt": -3.0, "am_minus_pairwise_top1_pt": -4.0,
      "am_minus_softmax_gap": -0.01}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_and_seed_are_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "am_softmax"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
