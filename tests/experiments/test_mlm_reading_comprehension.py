"""mlm_reading_comprehension (https://kexue.fm/archives/7148): every metric produced and finite, repeatable apart
from the wall-clock timings, pointer labels where the answer is, the verdict follows the numbers both ways."""
import math

import pytest

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
from kexue.experiments.mlm_reading_comprehension import EXPERIMENT, _pointer_inputs, run
from kexue.tasks import ReadingExample

ARMS = ("constrained", "unconstrained", "pointer")
TIMES = {"mlm_ms_per_question", "ar8_ms_per_question", "speedup_vs_ar8"}
METRICS = ({f"{a}_{k}" for a in ARMS for k in ("acc", "f1", "final", "not_substring")} | TIMES
           | {"em_gain_constrained_vs_unconstrained", "final_gap_constrained_vs_pointer",
              "constrained_final_over_empty"})


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert {k: v for k, v in a.metrics.items() if k not in TIMES} == {k: v for k, v in b.metrics.items()
                                                                      if k not in TIMES}
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert a.metrics["constrained_not_substring"] == 0.0 and a.metrics["pointer_not_substring"] == 0.0


def test_pointer_labels_point_at_the_answer_or_cls():
    ex = ReadingExample([20, 21], [[5, 6, 7, 8], [9, 9]], [[7, 8], []])
    rows, offsets, labels = _pointer_inputs(ex, cls=2, sep=3)
    assert rows[0] == [2, 20, 21, 3, 5, 6, 7, 8, 3] and offsets == [4, 4]
    assert labels == [(6, 7), (0, 0)] and rows[0][6:8] == [7, 8]


@pytest.mark.parametrize("metrics, expected", [
    ({"em_gain_constrained_vs_unconstrained": 0.1, "final_gap_constrained_vs_pointer": -0.02, "speedup_vs_ar8": 5,
      "constrained_final_over_empty": 0.5}, REPRODUCED),
    ({"em_gain_constrained_vs_unconstrained": 0.0, "final_gap_constrained_vs_pointer": 0.0, "speedup_vs_ar8": 5,
      "constrained_final_over_empty": 0.0}, PARTLY),                    # two readers that learned nothing
    ({"em_gain_constrained_vs_unconstrained": -0.1, "final_gap_constrained_vs_pointer": 0.2, "speedup_vs_ar8": 2,
      "constrained_final_over_empty": 0.1}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        EXPERIMENT.run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        EXPERIMENT.run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "mlm_reading_comprehension"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
