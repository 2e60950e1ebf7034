"""sparse_attention (https://kexue.fm/archives/6853): every metric produced and finite, the non-timing metrics
repeat under one seed, the closed-form pair counts against brute-force enumeration, the recall model's reach
(which positions can change its answer) per pattern, the verdict both ways on hand-made numbers."""
import math

import pytest
import torch

from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.sparse_attention import (EXPERIMENT, PATTERNS, RecallModel, closed_form_pairs, pattern_sizes,
                                                run)

TIMING = {"atrous_full_time_ratio_at_max_n", "atrous_full_time_ratio_trend", "strided_full_time_ratio_at_max_n",
          "strided_time_exponent", "full_time_exponent"}       # wall-clock measurements: they differ run to run
METRICS = TIMING | {"pair_count_max_rel_error", "strided_full_score_ratio_at_max_n", "chance_accuracy",
                    "strided_minus_full_acc"} | {f"{p}_{v}_acc" for p in PATTERNS for v in ("distant", "near")}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert {k: v for k, v in a.metrics.items() if k not in TIMING} == \
           {k: v for k, v in b.metrics.items() if k not in TIMING}
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())
    assert a.metrics["pair_count_max_rel_error"] == 0.0


@pytest.mark.parametrize("n", [1, 7, 16, 45])
@pytest.mark.parametrize("rate, window", [(2, 1), (3, 2), (8, 5), (4, 100)])
def test_closed_form_pairs_equal_a_brute_force_count(n, rate, window):
    for pattern in PATTERNS:
        brute = sum(1 for i in range(n) for j in range(n) if
                    pattern == "full" or
                    (pattern == "atrous" and (i - j) % rate == 0) or
                    (pattern == "local" and abs(i - j) <= window) or
                    (pattern == "strided" and ((i - j) % rate == 0 or abs(i - j) < rate)))
        assert closed_form_pairs(pattern, n, rate, window) == brute, (pattern, n, rate, window)


def _reach(pattern, n=32, rate=4, window=3):
    """Positions whose token can change the last position's logits, by autograd through the embeddings."""
    torch.manual_seed(0)
    model = RecallModel(20, 16, pattern, **pattern_sizes(pattern, rate, window))
    emb = model.embed(torch.randint(0, 20, (1, n))).detach().requires_grad_()
    model.from_embeddings(emb).sum().backward()
    return {j for j in range(n) if emb.grad[0, j].abs().sum() > 0}


def test_two_layers_reach_what_the_spec_says():
    n, r, w = 32, 4, 3
    last = n - 1
    assert _reach("full") == set(range(n))
    assert _reach("local") == set(range(last - 2 * w, n))                   # layers x window back
    assert _reach("atrous") == {j for j in range(n) if (last - j) % r == 0}   # one residue class, any depth
    assert _reach("strided") == set(range(n))                                # local fills atrous's holes


@pytest.mark.parametrize("metrics, expected", [
    (dict(pair_count_max_rel_error=0.0, atrous_full_time_ratio_trend=0.4, strided_time_exponent=1.4,
          strided_full_time_ratio_at_max_n=0.5, strided_full_score_ratio_at_max_n=0.1, strided_minus_full_acc=0.0,
          local_distant_acc=0.13, atrous_near_acc=0.12, strided_distant_acc=0.99, strided_near_acc=0.99,
          full_distant_acc=0.95, full_near_acc=0.96), REPRODUCED),
    (dict(pair_count_max_rel_error=0.0, atrous_full_time_ratio_trend=0.4, strided_time_exponent=1.1,
          strided_full_time_ratio_at_max_n=0.5, strided_full_score_ratio_at_max_n=0.1, strided_minus_full_acc=0.1,
          local_distant_acc=0.13, atrous_near_acc=0.12, strided_distant_acc=0.99, strided_near_acc=0.99,
          full_distant_acc=0.85, full_near_acc=0.86), PARTLY),
    (dict(pair_count_max_rel_error=0.2, atrous_full_time_ratio_trend=1.4, strided_time_exponent=2.1,
          strided_full_time_ratio_at_max_n=1.5, strided_full_score_ratio_at_max_n=1.1, strided_minus_full_acc=-0.3,
          local_distant_acc=0.9, atrous_near_acc=0.9, strided_distant_acc=0.2, strided_near_acc=0.2,
          full_distant_acc=0.2, full_near_acc=0.2), NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_and_seed_are_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "sparse_attention"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
