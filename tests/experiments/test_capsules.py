"""capsules (https://kexue.fm/archives/5112): every metric produced and finite, repeatable, the verdict follows the
numbers both ways; the canvases and the two-digit accuracy against hand-made cases."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
from kexue.experiments.capsules import EXPERIMENT, DigitNet, pair_accuracy, place, run, stacked_pairs

METRICS = {"pooling_single_acc", "pooling_pair_acc", "pooling_pair_acc_confident", "capsule_single_acc",
           "capsule_pair_acc", "capsule_pair_acc_confident", "capsule_gain_pair_pt", "capsule_gain_confident_pt",
           "single_acc_gap_pt"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())


def test_place_keeps_each_digit_whole_inside_the_canvas():
    x = torch.rand(200, 1, 8, 8) + 0.1                                  # no zero pixel inside a digit
    canvas = place(x, torch.Generator().manual_seed(0))
    assert canvas.shape == (200, 1, 16, 8)
    rows = (canvas[:, 0] > 0).any(-1)                                   # [N, 16] occupied rows
    starts = rows.float().argmax(1)
    assert (rows.sum(1) == 8).all() and starts.min() == 0 and starts.max() == 8
    for n in range(200):
        torch.testing.assert_close(canvas[n, :, starts[n]:starts[n] + 8], x[n])


def test_stacked_pairs_hold_two_different_digits_top_and_bottom():
    x = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 8, 8)        # digit k = constant image k
    y = torch.arange(10)
    canvas, labels = stacked_pairs(x, y, 50, torch.Generator().manual_seed(1))
    top, bottom = canvas[:, 0, 0, 0].long(), canvas[:, 0, 8, 0].long()
    assert (top != bottom).all()
    assert (labels == torch.sort(torch.stack([top, bottom], 1), 1).values).all()


def test_pair_accuracy_on_hand_made_scores():
    labels = torch.tensor([[1, 3], [0, 2], [4, 5]])
    scores = torch.zeros(3, 10)
    scores[0, [3, 1]] = torch.tensor([0.9, 0.6])                        # right, both confident
    scores[1, [2, 0]] = torch.tensor([0.9, 0.4])                        # right, one below 0.5
    scores[2, [4, 7]] = torch.tensor([0.9, 0.8])                        # wrong second digit
    a, b = pair_accuracy(scores, labels)
    assert a == pytest.approx(2 / 3) and b == pytest.approx(1 / 3)


@pytest.mark.parametrize("head", ["pooling", "capsule"])
def test_heads_score_in_unit_interval_for_any_canvas_height(head):
    net = DigitNet(head)
    for h in (8, 16):
        s = net(torch.rand(3, 1, h, 8))
        assert s.shape == (3, 10) and ((s >= 0) & (s <= 1)).all()


@pytest.mark.parametrize("metrics, expected", [
    ({"capsule_gain_confident_pt": 30.0, "single_acc_gap_pt": 0.5}, REPRODUCED),
    ({"capsule_gain_confident_pt": 30.0, "single_acc_gap_pt": 5.0}, PARTLY),
    ({"capsule_gain_confident_pt": 10.0, "single_acc_gap_pt": 5.0}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    with pytest.raises(TypeError, match="seed"):
        run("smoke", 1.5)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "capsules"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
