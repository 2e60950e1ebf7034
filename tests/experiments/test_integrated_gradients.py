"""integrated_gradients (https://kexue.fm/archives/7533): every metric produced and finite, repeatable, the verdict
follows the numbers both ways; IG finds a planted marker that the saturated gradient misses."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
from kexue.experiments.integrated_gradients import EXPERIMENT, METHODS, run, token_scores

METRICS = ({"test_accuracy", "mean_confidence", "mean_f_baseline", "completeness_error_mean",
            "completeness_error_median", "explanations_with_equal_endpoints", "ig_minus_gradient_hit1",
            "snownlp_test_accuracy", "demo_word_in_top2", "demo_completeness_error_max"}
           | {f"{m}_{k}" for m in METHODS for k in ("hit1", "auc")})


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values()), a.metrics
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert len(a.tables["demo_heat_maps"]) == 4
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())


def test_token_scores_on_a_saturated_hand_made_classifier():
    """logits = 20 * (embedding of token 3 at any position) . w: saturated, so softmax's gradient is ~0 in float32
    while IG (from the zero embedding) puts the whole gap F(x) - F(x') on token 3."""
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = torch.nn.Module()
            self.embeddings.word = torch.nn.Embedding(5, 2)
            with torch.no_grad():
                self.embeddings.word.weight.copy_(torch.tensor([[0, 0], [0, 0.1], [0, -0.1], [1, 0], [0, 0]]))

        @property
        def backbone(self):
            return self

        def forward(self, ids, attention_mask=None, output_attentions=False):
            e = self.embeddings.word(ids)                                  # [B, n, 2]
            if output_attentions:
                n = ids.shape[1]
                return type("O", (), {"attentions": [torch.full((ids.shape[0], 1, n, n), 1.0 / n)]})()
            x = e[..., 0].sum(1, keepdim=True)                             # [B, 1]
            return torch.cat([-20 * x, 20 * x, torch.zeros_like(x)], 1)

    ids = torch.tensor([[1, 2, 3, 2, 1]])
    scores, rel_err, f_base = token_scores(Model(), ids, torch.ones_like(ids, dtype=torch.bool), n_steps=256)
    assert scores["ig_sum"][0].argmax() == 2 and scores["ig_l2"][0].argmax() == 2
    assert float(scores["gradient_l2"][0].max()) < 1e-6                  # saturated: the gradient sees nothing
    assert float(rel_err[0]) < 0.01 and float(f_base[0]) == pytest.approx(1 / 3, abs=1e-6)


@pytest.mark.parametrize("metrics, expected", [
    ({"ig_sum_hit1": 0.99, "ig_minus_gradient_hit1": 0.3, "completeness_error_mean": 0.005}, REPRODUCED),
    ({"ig_sum_hit1": 0.99, "ig_minus_gradient_hit1": -0.01, "completeness_error_mean": 0.05}, PARTLY),
    ({"ig_sum_hit1": 0.5, "ig_minus_gradient_hit1": 0.0, "completeness_error_mean": 0.05}, NOT_REPRODUCED),
    ({"ig_sum_hit1": 0.95, "ig_minus_gradient_hit1": 0.1, "completeness_error_mean": float("nan")}, PARTLY),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "integrated_gradients"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
