"""bidirectional_decoding (https://kexue.fm/archives/6877): every metric produced and finite, repeatable, the
head / tail profile on hand-made outputs, the step alignment of the two targets, single-direction training leaves
the other decoder untouched, the verdict both ways."""
import math

import pytest
import torch

from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.bidirectional_decoding import (BOS, EOS, EXPERIMENT, PAD, batch_tensors, profile,
                                                      run, train_model)
from kexue.datasets import sort_unique

METRICS = {f"{k}_{m}" for k in ("l2r", "r2l", "joint") for m in ("em", "head", "tail")} | {
    "l2r_head_minus_tail", "r2l_tail_minus_head", "joint_head_minus_tail", "joint_gap_minus_min_single_gap",
    "joint_em_minus_best_single", "joint_r2l_answer_share"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS


def test_profile_on_hand_made_outputs():
    targets = [[1, 2, 3, 4, 5, 6], [7, 8]]
    outputs = [[1, 2, 3, 4, 6], [7, 8]]          # a dropped 5: head all right, tail shifted at one position
    p = profile(outputs, targets, edge=4)
    assert p["em"] == 0.5
    assert p["head"] == 1.0                       # 4 + 2 hits of 6 head positions
    assert p["tail"] == 0.5                       # [6, 4, 3, 2] vs [6, 5, 4, 3]: 1 hit, + 2 on the short one
    assert profile([[]], [[1, 2]])["head"] == 0.0


def test_tail_counts_from_the_end():
    # tail of [1..6] = 6, 5, 4, 3 (k-th from the end); the output [9, 3, 4, 5, 6] gets all 4 of them right
    p = profile([[9, 3, 4, 5, 6]], [[1, 2, 3, 4, 5, 6]], edge=4)
    assert p["tail"] == 1.0 and p["head"] == 0.0


def test_r2l_targets_are_reversed_before_padding():
    pairs = [([5, 3, 3], [3, 5]), ([4, 9, 7, 8], [4, 7, 8, 9])]
    src, l2r, r2l = batch_tensors(pairs)
    assert l2r.tolist() == [[BOS, 3, 5, EOS, PAD, PAD], [BOS, 4, 7, 8, 9, EOS]]
    assert r2l.tolist() == [[EOS, 5, 3, BOS, PAD, PAD], [EOS, 9, 8, 7, 4, BOS]]
    assert src.tolist() == [[5, 3, 3, PAD], [4, 9, 7, 8]]


def test_single_direction_training_leaves_the_other_decoder_untrained():
    pairs = sort_unique(16, offset=3, seed=0)
    torch.manual_seed(0)
    fresh, _ = train_model("r2l", pairs, 0, 8, 0)
    trained, _ = train_model("l2r", pairs, 2, 8, 0)
    untouched = dict(fresh.decoders[1].named_parameters())
    for name, p in trained.decoders[1].named_parameters():
        assert torch.equal(p, untouched[name]), name              # R2L decoder never trained in an L2R-only model
    assert any(not torch.equal(p, q) for p, q in zip(trained.decoders[0].parameters(),
                                                     fresh.decoders[0].parameters()))


@pytest.mark.parametrize("metrics, expected", [
    (dict(l2r_head_minus_tail=0.1, r2l_tail_minus_head=0.1, joint_gap_minus_min_single_gap=-0.05,
          joint_em_minus_best_single=0.02), REPRODUCED),
    (dict(l2r_head_minus_tail=0.1, r2l_tail_minus_head=0.1, joint_gap_minus_min_single_gap=0.05,
          joint_em_minus_best_single=-0.02), PARTLY),
    (dict(l2r_head_minus_tail=-0.1, r2l_tail_minus_head=-0.1, joint_gap_minus_min_single_gap=0.05,
          joint_em_minus_best_single=-0.02), NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_and_seed_are_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    with pytest.raises(ValueError, match="kind"):
        train_model("both", [], 1, 1, 0)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "bidirectional_decoding"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
