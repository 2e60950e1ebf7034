"""Gumbel / reparameterisation experiment (https://kexue.fm/archives/6705): every metric produced and finite,
seeded runs repeat, the verdict follows the numbers both ways, the closed-form variances, the straight-through
forward value."""
import math

import pytest
import torch

from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.gumbel import (EXPERIMENT, DiscreteVAE, closed_form_variances, estimator_loss, run)

EST = ("relaxed", "straight_through", "score_function")
METRICS = {f"{e}_{m}" for e in EST for m in ("test_neg_elbo", "grad_variance")} | {
    "reparam_variance", "score_function_variance", "relaxed_grad_variance_tau1", "relaxed_elbo_gain_over_sf",
    "st_elbo_gain_over_sf", "sf_variance_ratio", "sf_variance_ratio_tau1"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS
    assert all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS


def test_closed_form_variances_are_4_and_30():
    rep, sf = closed_form_variances(10**6, torch.Generator().manual_seed(1))
    assert abs(rep - 4) < 0.12 and abs(sf - 30) < 0.9


def test_straight_through_forward_is_a_hard_sample():
    torch.manual_seed(0)
    model = DiscreteVAE()
    x = torch.rand(3, 64)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    st = estimator_loss(model, x, "straight_through", 0.5, g1)
    # the same noise, hard one-hot by Gumbel-max: the forward value equals the hard-sample -ELBO
    from kexue.nn import categorical_kl_to_uniform, gumbel_softmax
    logits = model.logits(x)
    z = gumbel_softmax(logits, tau=0.5, hard=True, generator=g2)
    assert set(z.unique().tolist()) <= {0.0, 1.0}
    hard = (model.recon_nll(x, z) + categorical_kl_to_uniform(logits).sum(-1)).mean()
    torch.testing.assert_close(st, hard)


GOOD = {"reparam_variance": 4.05, "score_function_variance": 29.5, "relaxed_elbo_gain_over_sf": 1.0,
        "st_elbo_gain_over_sf": 0.5, "sf_variance_ratio": 20.0}


@pytest.mark.parametrize("metrics, expected", [
    (GOOD, REPRODUCED), ({**GOOD, "sf_variance_ratio": 1.1}, PARTLY),
    ({"reparam_variance": 5.0, "score_function_variance": 20.0, "relaxed_elbo_gain_over_sf": -1.0,
      "st_elbo_gain_over_sf": -1.0, "sf_variance_ratio": 1.0}, NOT_REPRODUCED)])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("slow", 0)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "gumbel"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
