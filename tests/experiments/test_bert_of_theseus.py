"""bert_of_theseus (https://kexue.fm/archives/7575): every metric produced and finite, repeatable, the verdict follows
the numbers both ways (the Theseus training itself: tests/tasks/test_theseus.py)."""
import math

import pytest

from kexue.experiments import NOT_REPRODUCED, REPRODUCED, MODES, verdict
from kexue.experiments.bert_of_theseus import EXPERIMENT, run

METRICS = {"predecessor_test_acc", "direct_test_acc", "theseus_constant_test_acc", "theseus_linear_test_acc",
           "successor_untrained_test_acc", "theseus_minus_direct_pt", "linear_minus_direct_pt",
           "predecessor_minus_direct_pt", "successor_updates"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values()), a.metrics
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())


@pytest.mark.parametrize("metrics, expected", [
    ({"theseus_minus_direct_pt": 0.4}, REPRODUCED),
    ({"theseus_minus_direct_pt": 0.0}, NOT_REPRODUCED),
    ({"theseus_minus_direct_pt": -1.2}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(TypeError, match="seed"):
        run("smoke", 1.5)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "bert_of_theseus"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
