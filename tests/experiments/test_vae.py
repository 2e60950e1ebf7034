"""VAE / CVAE / generator anchor experiment (https://kexue.fm/archives/5253, 5716): every metric produced and
finite, seeded runs repeat, the verdict follows the numbers both ways, the recipe's pieces are right."""
import math

import pytest
import torch

from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.vae import EXPERIMENT, _independent_pixels_nll, _logistic_regression, _modes_covered, run

METRICS = {"vae_test_neg_elbo", "vae_test_neg_iwae", "baseline_test_nll", "vae_elbo_gain", "bce_floor",
           "agg_mean_max_abs", "agg_var_max_dev", "cvae_sample_accuracy", "classifier_real_test_accuracy",
           "cvae_test_neg_elbo", "anchor_modes_gain", "anchor_mode_var_drop"} | {
    f"{a}_{m}" for a in ("plain", "anchor") for m in ("modes", "mode_var", "g_loss_std")}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS
    assert all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    m = a.metrics
    assert m["bce_floor"] < m["vae_test_neg_elbo"] and m["bce_floor"] < m["baseline_test_nll"]
    assert 0 <= m["plain_modes"] <= 8 and 0 <= m["cvae_sample_accuracy"] <= 1


def test_baseline_is_the_independent_pixel_nll():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    p = torch.tensor([0.5, 1 - 1e-4])  # the training means, clamped away from 1
    expected = -(torch.log(p[0]) + torch.log(p[1]))  # each test image: one pixel at 0.5, one at ~1
    assert abs(_independent_pixels_nll(x, torch.tensor([[1.0, 1.0]])) - expected.item()) < 1e-5


def test_mode_count_sees_a_perfect_and_a_collapsed_generator():
    class Ring(torch.nn.Module):  # maps z to the 8 centres exactly
        def forward(self, z):
            k = (z[:, 0].abs() * 1000).long() % 8
            a = 2 * math.pi * k / 8
            return 2.0 * torch.stack([a.cos(), a.sin()], 1)
    g = torch.Generator().manual_seed(0)
    assert _modes_covered(Ring(), g) == 8
    assert _modes_covered(_Constant(), g) == 1


class _Constant(torch.nn.Module):
    def forward(self, z):
        return torch.tensor([2.0, 0.0]).expand(len(z), 2)


def test_classifier_recognises_real_digits():
    from kexue.experiments._optim_data import digits_split
    x, y, x_te, y_te = digits_split(0)
    clf = _logistic_regression(x, y)
    assert (clf(x_te).argmax(-1) == y_te).float().mean() > 0.9


GOOD = {"vae_elbo_gain": 0.2, "agg_mean_max_abs": 0.1, "agg_var_max_dev": 0.1, "cvae_sample_accuracy": 0.9,
        "anchor_modes_gain": 1.0, "anchor_mode_var_drop": 0.5}
BAD = {"vae_elbo_gain": 0.05, "agg_mean_max_abs": 0.5, "agg_var_max_dev": 0.5, "cvae_sample_accuracy": 0.5,
       "anchor_modes_gain": -1.0, "anchor_mode_var_drop": 0.0}


@pytest.mark.parametrize("metrics, expected", [
    (GOOD, REPRODUCED), ({**GOOD, "anchor_mode_var_drop": 0.0}, PARTLY), (BAD, NOT_REPRODUCED)])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("slow", 0)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "vae"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
