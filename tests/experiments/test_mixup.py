"""mixup (https://kexue.fm/archives/5693): every metric produced and finite, seeded runs repeat, the verdict
follows the numbers both ways, the SamplePairing schedule is the spec's at 300 epochs."""
import math

import pytest

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
import torch

from kexue.experiments.mixup import EXPERIMENT, gap_along_segment, normalised_gap, pairing_schedule, run

ARMS = ("erm", "mixup_0.2", "mixup_1", "sample_pairing")
METRICS = {f"{a}_{m}" for a in ARMS for m in ("acc", "nll", "gap")} | {
    "gap_reduction", "mixup_acc_gain_pt", "sample_pairing_gap_position"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS
    assert all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(0 <= a.metrics[f"{arm}_acc"] <= 1 and a.metrics[f"{arm}_gap"] >= 0 for arm in ARMS)


def test_gap_is_zero_for_affine_probabilities_and_positive_for_a_step():
    """softmax(log q(x)) = q(x) when q sums to 1: with q affine in x the gap vanishes (the functional equation's
    solutions); a sharp two-class switch is far from affine."""
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(300, 4, generator=g, dtype=torch.float64)
    base = torch.full((3,), 1 / 3, dtype=torch.float64)
    A = torch.randn(4, 3, generator=g, dtype=torch.float64)
    A = 0.5 * (A - A.mean(1, keepdim=True))                            # rows sum to 0: q stays a distribution
    affine = lambda z: torch.log(base + z @ A)                         # noqa: E731
    assert normalised_gap(affine, x, 500, 0) < 1e-12
    assert max(gap_along_segment(affine, x, 100, 0)) < 1e-12
    step = lambda z: torch.stack([50 * z[:, 0], -50 * z[:, 0]], 1)     # noqa: E731
    assert normalised_gap(step, x, 500, 0) > 0.1
    assert normalised_gap(lambda z: torch.zeros(len(z), 3), x, 50, 0) == 0.0     # constant: affine, no pairs


def test_pairing_schedule_at_300_epochs_is_the_specs():
    s = pairing_schedule(300)        # on from epoch 50, 8 on / 2 off, off for the last 30
    on = [e for e in range(300) if s.active(e)]
    assert on[0] == 50 and on[-1] < 270 and not s.active(49)
    assert [s.active(e) for e in range(50, 60)] == [True] * 8 + [False] * 2


@pytest.mark.parametrize("metrics, expected", [
    ({"gap_reduction": 0.5, "mixup_acc_gain_pt": 0.5, "sample_pairing_gap_position": 0.4}, REPRODUCED),
    ({"gap_reduction": 0.5, "mixup_acc_gain_pt": -1.0, "sample_pairing_gap_position": 1.6}, PARTLY),
    ({"gap_reduction": 0.1, "mixup_acc_gain_pt": -1.0, "sample_pairing_gap_position": -0.2}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("slow", 0)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "mixup"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
