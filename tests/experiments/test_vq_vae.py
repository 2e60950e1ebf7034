"""VQ-VAE experiment (https://kexue.fm/archives/6760): every metric produced and finite, seeded runs repeat,
the verdict follows the numbers both ways, the 5-NN helper is right."""
import math

import pytest
import torch

from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.vq_vae import EXPERIMENT, _knn_accuracy, run

ARM_METRICS = {f"{a}_{m}" for a in ("continuous", "vq_loss", "vq_ema") for m in ("mse", "recognised", "knn")}
METRICS = ARM_METRICS | {f"{a}_{m}" for a in ("vq_loss", "vq_ema") for m in ("perplexity", "dead_codes")} | {
    "vq_recognised_min", "ema_perplexity_gain", "ema_dead_code_drop", "prior_sample_confidence",
    "prior_test_nll_nats"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS
    assert all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    m = a.metrics
    assert 1 <= m["vq_ema_perplexity"] <= 32 and 0 <= m["vq_loss_dead_codes"] <= 32
    assert 0.1 <= m["prior_sample_confidence"] <= 1  # a max of 10 class probabilities is >= 1/10


def test_knn_on_separated_clusters_and_on_a_flipped_label():
    train = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    test, y_te = torch.tensor([[0.05], [5.05]]), torch.tensor([0, 1])
    assert _knn_accuracy(train, y, test, y_te, k=3) == 1.0
    assert _knn_accuracy(train, y, test, torch.tensor([1, 1]), k=3) == 0.5


GOOD = {"vq_recognised_min": 0.9, "ema_perplexity_gain": 2.0, "ema_dead_code_drop": 3.0,
        "prior_sample_confidence": 0.8}


@pytest.mark.parametrize("metrics, expected", [
    (GOOD, REPRODUCED), ({**GOOD, "ema_perplexity_gain": -5.0}, PARTLY),
    ({"vq_recognised_min": 0.5, "ema_perplexity_gain": 0.0, "ema_dead_code_drop": -1.0,
      "prior_sample_confidence": 0.3}, NOT_REPRODUCED)])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("slow", 0)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "vq_vae"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
