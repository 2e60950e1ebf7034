"""qa_generation (https://kexue.fm/archives/7630): every metric produced and finite, repeatable, the data construction keeps answer-holding chunks, the verdict follows the numbers both ways."""
import math

import pytest

from kexue.datasets import make_qa_passages
from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.qa_generation import EXPERIMENT, run, training_examples

METRICS = {f"{k}_{layout}{v}" for layout in ("answer_first", "question_first") for k in ("support", "consistency")
           for v in ([""] + (["_greedy", "_constrained"] if layout == "answer_first" else []))}
METRICS |= {"distinct_question_first", "distinct_answer_first_constrained", "distinct_pairs_top_p",
            "distinct_pairs_greedy", "consistency_gap", "consistency_given_support", "valid_loss_answer_first", "valid_loss_question_first"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert a.metrics["distinct_pairs_greedy"] == 1.0                 # greedy answers: one pair per passage
    assert a.metrics["support_answer_first_constrained"] == 1.0      # the constraint holds even untrained
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())


def test_training_examples_keep_chunks_holding_the_answer():
    passages = make_qa_passages(20, seed=1)
    ex = training_examples(passages)
    assert len(ex) == sum(len(p.qa_pairs) for p in passages)         # passages are < 126 chars: one chunk each
    assert all(a in c and len(c) <= 126 for c, a, _ in ex)


@pytest.mark.parametrize("metrics, expected", [
    ({"consistency_answer_first": 0.9, "support_answer_first": 0.95, "distinct_pairs_top_p": 3.0,
      "distinct_pairs_greedy": 1.0, "consistency_gap": 0.1}, REPRODUCED),
    ({"consistency_answer_first": 0.5, "support_answer_first": 0.95, "distinct_pairs_top_p": 3.0,
      "distinct_pairs_greedy": 1.0, "consistency_gap": -0.1}, PARTLY),
    ({"consistency_answer_first": 0.1, "support_answer_first": 0.2, "distinct_pairs_top_p": 1.0,
      "distinct_pairs_greedy": 2.0, "consistency_gap": -0.1}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_or_seed_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "qa_generation"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
