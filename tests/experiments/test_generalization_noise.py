"""generalization_noise (https://kexue.fm/archives/7466): every metric produced and finite, seeded runs repeat,
the verdict follows the numbers both ways."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
from kexue.experiments._digits import standardised_digits
from kexue.experiments.generalization_noise import EXPERIMENT, run

METRICS = {"baseline_acc", "output_gp_acc", "vat_acc", "vat_gain_pt", "output_gp_gain_pt", "vat_over_gp_pt",
           "supervised_erm_acc", "fgm_delta_pt", "gp_delta_pt"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS | {"text_erm_acc", "text_fgm_delta_pt"}      # smoke runs the text check too
    assert all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics                                   # same seed, same numbers
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert a.figures and all(len(x) == len(y) for x, y in a.figures[0].lines.values())


def test_standardised_digits_are_standardised_on_the_training_part():
    x_tr, y_tr, x_te, y_te = standardised_digits(3, n_test=360)
    assert x_tr.shape == (1797 - 360, 64) and x_te.shape == (360, 64)
    assert torch.allclose(x_tr.mean(0), torch.zeros(64), atol=1e-5)
    std = x_tr.std(0, unbiased=False)
    assert torch.all(((std - 1).abs() < 1e-4) | (std == 0))          # constant pixels stay 0
    assert set(y_tr.tolist()) == set(range(10))
    with pytest.raises(ValueError, match="n_test"):
        standardised_digits(0, n_test=1797)                          # nothing left to train on


@pytest.mark.parametrize("metrics, expected", [
    ({"vat_gain_pt": 3.0, "output_gp_gain_pt": 1.0, "vat_over_gp_pt": 2.0, "fgm_delta_pt": 0.3,
      "gp_delta_pt": -0.4}, REPRODUCED),
    ({"vat_gain_pt": 1.0, "output_gp_gain_pt": 1.0, "vat_over_gp_pt": 0.0, "fgm_delta_pt": 0.3,
      "gp_delta_pt": -0.4}, PARTLY),
    ({"vat_gain_pt": -1.0, "output_gp_gain_pt": -2.0, "vat_over_gp_pt": -1.0, "fgm_delta_pt": 1.5,
      "gp_delta_pt": -2.0}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "generalization_noise"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())


def test_supervised_gp_penalises_per_sample_input_gradients():
    """The recipe's GP term, input_gradient_penalty(sum loss, x) / B, is the batch mean of 0.5 ||grad_x l_i||^2
    (the gradient of the batch *mean* is 1/B of that and made the arm a no-op)."""
    import torch.nn.functional as F
    from kexue.regularizers import input_gradient_penalty
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x = torch.randn(5, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 1, 0])
    got = input_gradient_penalty(F.cross_entropy(model(x), y, reduction="sum"), x, epsilon=1.0) / len(y)
    per_sample = [torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]), x)[0][i] for i in range(5)]
    want = sum(0.5 * gi.pow(2).sum() for gi in per_sample) / 5
    torch.testing.assert_close(got, want)
