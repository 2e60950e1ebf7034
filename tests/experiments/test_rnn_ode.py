"""rnn_ode (https://kexue.fm/archives/5643): every metric produced and finite, repeatable, the verdict follows the
numbers both ways, and the recipe's pieces against the spec's numpy reference."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
from kexue.experiments.rnn_ode import EXPERIMENT, OBS, OBS_TIMES, TRUE, competition, residuals, run, trajectory

METRICS = {"forward_max_deviation", "adam_sse", "adam_max_residual", "lbfgs_sse", "lbfgs_max_residual",
           "true_params_euler_max_residual", "euler_param_error", "rk4_param_error", "rk4_bias_reduction"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())


def test_competition_rhs_matches_the_closed_form():
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in TRUE.items()}
    x = torch.tensor([[100.0, 150.0]], dtype=torch.float64)
    d = competition(x, p)[0]
    assert d[0].item() == pytest.approx(0.1 * 100 * (1 - 0.002 * 100) - 1e-4 * 100 * 150)
    assert d[1].item() == pytest.approx(0.3 * 150 * (1 - 0.003 * 150) - 2e-4 * 100 * 150)


def test_true_model_reproduces_the_articles_table_and_the_euler_bias():
    fine = trajectory(TRUE, 0.1, 1000)
    got = fine[[round(t / 0.1) - 1 for t in OBS_TIMES]]
    spec = torch.tensor([[165.0, 282.9], [196.6, 289.9], [280.0, 275.5], [304.9, 269.4], [318.5, 265.9],
                         [324.4, 264.4]], dtype=torch.float64)            # spec core/15 §3.3 (numpy)
    torch.testing.assert_close(got, spec, atol=0.06, rtol=0)
    assert (got - torch.tensor(OBS, dtype=torch.float64)).abs().max() <= 0.5
    assert residuals(TRUE).abs().max().item() == pytest.approx(3.55, abs=0.01)   # spec §3.5


@pytest.mark.parametrize("metrics, expected", [
    ({"forward_max_deviation": 0.4, "adam_sse": 80.0, "adam_max_residual": 6.0, "lbfgs_sse": 0.7,
      "rk4_bias_reduction": 0.02}, REPRODUCED),
    ({"forward_max_deviation": 0.4, "adam_sse": 2700.0, "adam_max_residual": 42.0, "lbfgs_sse": 0.7,
      "rk4_bias_reduction": 0.02}, PARTLY),
    ({"forward_max_deviation": 2.0, "adam_sse": 2700.0, "adam_max_residual": 42.0, "lbfgs_sse": 5.0,
      "rk4_bias_reduction": -0.1}, NOT_REPRODUCED),
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
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "rnn_ode"


@pytest.mark.slow
def test_quick_run_matches_the_spec_reference():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS
    assert m.metrics["lbfgs_sse"] == pytest.approx(0.70, rel=0.02)                    # spec §3.4 optimum
    assert m.tables["adam_sse_by_epoch"][0]["SSE (kexue)"] == pytest.approx(2686, rel=0.02)   # spec emulation
