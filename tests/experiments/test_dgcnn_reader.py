"""dgcnn_reader (https://kexue.fm/archives/5409): every metric produced and finite, repeatable, labels where the
answer is, the verdict follows the numbers both ways."""
import math

import pytest

from kexue.datasets import key_value_passages
from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
from kexue.experiments.dgcnn_reader import CHARS, EXPERIMENT, VARIANTS, encode, run

METRICS = {f"{v}_{k}" for v in VARIANTS for k in ("acc", "f1", "final")} | {"dilation_gain", "gating_gain"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert [r["receptive field (chars)"] for r in a.tables["variants"]] == [65, 13, 65]


def test_encode_marks_the_answer_span():
    items = key_value_passages(20, 0, length=128, num_facts=3)
    q, p, start, end = encode(items)
    for b, it in enumerate(items):
        assert "".join(CHARS[i] for i in p[b, :len(it.passage)].tolist()) == it.passage
        if it.start < 0:
            assert start[b].sum() == 0 and end[b].sum() == 0
        else:
            assert start[b].nonzero().flatten().tolist() == [it.start]
            assert end[b].nonzero().flatten().tolist() == [it.start + len(it.answer) - 1]


@pytest.mark.parametrize("metrics, expected", [
    ({"dilation_gain": 0.5, "gating_gain": 0.01}, REPRODUCED),
    ({"dilation_gain": 0.5, "gating_gain": -0.1}, PARTLY),
    ({"dilation_gain": 0.05, "gating_gain": -0.1}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        EXPERIMENT.run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        EXPERIMENT.run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "dgcnn_reader"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
