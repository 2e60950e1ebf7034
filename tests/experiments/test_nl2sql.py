"""nl2sql (https://kexue.fm/archives/6771): every metric produced and finite, repeatable, the verdict follows the
numbers both ways, bad arguments refused by name."""
import math

import pytest

from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.nl2sql import EXPERIMENT, run

METRICS = {"logic_form_acc", "execution_acc", "corrupted_acc", "snapping_gain_corrupted_pt",
           "repair_gain_corrupted_pt", "postprocessing_gain_pt", "corrupted_questions", "dropped_label_conds",
           "overlapping_label_conds", "final_train_loss"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert 0 <= a.metrics["logic_form_acc"] <= 1 and a.metrics["corrupted_questions"] > 0
    assert len(a.tables["accuracy_by_decoder"]) == 4
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())


@pytest.mark.parametrize("metrics, expected", [
    ({"logic_form_acc": 0.9, "snapping_gain_corrupted_pt": 40.0, "repair_gain_corrupted_pt": 10.0}, REPRODUCED),
    ({"logic_form_acc": 0.6, "snapping_gain_corrupted_pt": 40.0, "repair_gain_corrupted_pt": 10.0}, PARTLY),
    ({"logic_form_acc": 0.9, "snapping_gain_corrupted_pt": 0.0, "repair_gain_corrupted_pt": 10.0}, PARTLY),
    ({"logic_form_acc": 0.5, "snapping_gain_corrupted_pt": 0.0, "repair_gain_corrupted_pt": -5.0}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_or_seed_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "nl2sql"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
