"""lipschitz (https://kexue.fm/archives/6051): every metric produced and finite, seeded runs repeat (timings
aside), the ring metrics and the accuracy matching on closed cases, the verdict follows the numbers both ways."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
from kexue.experiments.lipschitz import EXPERIMENT, _matched_pair, mode_coverage, ring_centres, ring_sample, run

TIMINGS = {"gp_sec_per_step", "sn_sec_per_step", "post_step_sec_per_step", "sn_speedup"}
METRICS = {f"{a}_{m}" for a in ("gp", "sn", "post_step") for m in ("modes", "good_fraction", "sec_per_step")} | {
    "sn_speedup", "post_step_modes_deficit", "post_step_good_deficit", "snr_minus_l2_acc_pt",
    "snr_over_l2_grad_norm", "snr_over_l2_lipschitz_bound"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS
    assert all(math.isfinite(v) for v in a.metrics.values())
    assert {k: v for k, v in a.metrics.items() if k not in TIMINGS} == \
        {k: v for k, v in b.metrics.items() if k not in TIMINGS}
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS


def test_mode_coverage_on_closed_cases():
    centres = ring_centres()
    assert torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0))
    on_modes = centres.repeat_interleave(125, 0)                          # 1000 samples, 125 per mode
    assert mode_coverage(on_modes, 0.02) == (8, 1.0)
    assert mode_coverage(torch.zeros(1000, 2), 0.02) == (0, 0.0)          # the ring's centre is no mode
    three = centres[:3].repeat_interleave(20, 0)
    modes, good = mode_coverage(torch.cat([three, torch.zeros(940, 2)]), 0.02)
    assert modes == 3 and good == pytest.approx(0.06)
    real = ring_sample(4000, 0.02, torch.Generator().manual_seed(0))       # real data: all modes, ~99.7 % good
    modes, good = mode_coverage(real, 0.02)
    assert modes == 8 and good > 0.98


def test_matched_pair_takes_the_closest_accuracies():
    rows = [{"family": "l2", "test accuracy": a} for a in (0.90, 0.95)] + \
           [{"family": "snr", "test accuracy": a} for a in (0.80, 0.96)]
    s, l2 = _matched_pair(rows)
    assert (s["test accuracy"], l2["test accuracy"]) == (0.96, 0.95)


@pytest.mark.parametrize("metrics, expected", [
    ({"gp_modes": 8, "sn_modes": 8, "sn_speedup": 1.5, "post_step_modes_deficit": 3, "snr_minus_l2_acc_pt": 0.2,
      "snr_over_l2_grad_norm": 0.7, "snr_over_l2_lipschitz_bound": 0.5}, REPRODUCED),
    ({"gp_modes": 5, "sn_modes": 8, "sn_speedup": 0.9, "post_step_modes_deficit": 0, "snr_minus_l2_acc_pt": 0.2,
      "snr_over_l2_grad_norm": 1.2, "snr_over_l2_lipschitz_bound": 0.5}, PARTLY),
    ({"gp_modes": 5, "sn_modes": 7, "sn_speedup": 0.9, "post_step_modes_deficit": -1, "snr_minus_l2_acc_pt": 2.0,
      "snr_over_l2_grad_norm": 1.2, "snr_over_l2_lipschitz_bound": 1.5}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("medium", 0)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "lipschitz"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
