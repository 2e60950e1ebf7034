"""The derived-optimizers experiment (spec core/01 §4): spike counting by hand, the LAMB groups, a smoke run,
determinism and the verdict in both directions."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments import derived_optimizers as do
from kexue.experiments._optim_data import count_spikes, digits_split, mlp
from kexue.optim import LayerAdaptation, WeightDecay, base_optimizer


def test_count_spikes_by_hand():
    # EMA (β = 0.9) starts at 1.0: 1.6 > 1.5·1.0 is a spike; EMA -> 1.06; 1.0 is not; inf always is
    assert count_spikes([1.0, 1.6, 1.0, float("inf"), 1.0]) == 2
    assert count_spikes([1.0, 0.9, 0.8, 0.7]) == 0


def test_digits_split_is_stratified_and_seeded():
    x, y, xt, yt = digits_split(0)
    assert x.shape == (1437, 64) and xt.shape == (360, 64) and float(x.max()) <= 1.0
    assert torch.bincount(yt).min() >= 35                      # every class ~36 in the test set
    assert torch.equal(digits_split(0)[0], x) and not torch.equal(digits_split(1)[0], x)


def test_lamb_is_layer_adaptation_around_weight_decay_biases_excluded():
    model = mlp((4, 3, 2))
    opt = do._lamb(model, 1e-2)
    assert isinstance(opt, LayerAdaptation) and isinstance(opt.inner, WeightDecay)
    assert isinstance(base_optimizer(opt), torch.optim.Adam)
    bias_ids = {id(m.bias) for m in model if isinstance(m, torch.nn.Linear)}
    for group in opt.param_groups:
        kinds = {id(p) in bias_ids for p in group["params"]}
        assert len(kinds) == 1                                   # a group holds biases only or weights only
        if kinds.pop():
            assert group["layer_adaptation"] is False and group["weight_decay_rate"] == 0.0
        else:
            assert group["layer_adaptation"] is True and group["weight_decay_rate"] == do.DECAY


TINY = {"epochs": 1, "lrs": (1e-3, 3e-2), "large_batch_steps": 3, "warmup_steps": 40}


def test_smoke_every_metric_finite(monkeypatch):
    monkeypatch.setitem(do.CONFIG, "quick", TINY)
    m = do.run("quick", 0)
    for check in do.EXPERIMENT.checks:
        assert check.metric in m.metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.metrics.values()), m.metrics
    assert [r["lr"] for r in m.tables["large_batch"]] == [1e-3, 3e-2]
    (fig,) = m.figures
    assert set(fig.lines) == {"constant", "warmup"} and len(fig.lines["warmup"][1]) == 40


def test_same_seed_same_metrics(monkeypatch):
    monkeypatch.setitem(do.CONFIG, "quick", TINY)
    assert do.run("quick", 2).metrics == do.run("quick", 2).metrics


def test_verdict_on_hand_made_numbers():
    good = {"hv_norm_ratio_adamw_over_l2": 0.8, "acc_gap_adamw_minus_l2": 0.002, "lamb_diverged_lrs": 0.0,
            "lamb_minus_adam_acc_at_max_lr": 0.01, "spikes_constant_minus_warmup": 4.0}
    checks = do.EXPERIMENT.checks
    assert verdict(checks, good) == REPRODUCED
    assert verdict(checks, dict(good, hv_norm_ratio_adamw_over_l2=1.5, acc_gap_adamw_minus_l2=0.02)) == PARTLY
    bad = {"hv_norm_ratio_adamw_over_l2": 1.5, "acc_gap_adamw_minus_l2": -0.02, "lamb_diverged_lrs": 1.0,
           "lamb_minus_adam_acc_at_max_lr": -0.05, "spikes_constant_minus_warmup": 0.0}
    assert verdict(checks, bad) == NOT_REPRODUCED



@pytest.mark.parametrize("mode, seed, error", [("fast", 0, ValueError), ("quick", -1, ValueError),
                                               ("quick", 1.5, TypeError), ("QUICK", 0, ValueError)])
def test_bad_mode_or_seed_is_refused_before_any_work(mode, seed, error):
    with pytest.raises(error, match="mode|seed"):
        do.run(mode, seed)


@pytest.mark.slow
def test_quick_run():
    m = do.run("quick", 0).metrics
    assert all(math.isfinite(v) for v in m.values())
