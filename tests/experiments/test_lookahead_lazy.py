"""The Lookahead / lazy-optimizer experiment (spec core/02 §4): the Zipf task's construction, the noisy
quadratic against its closed form, a smoke run, determinism and the verdict in both directions."""
import math

import pytest
import torch

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments import lookahead_lazy as ll


def test_zipf_task_frequencies_labels_and_noise():
    x, y, xt, yt = ll.zipf_text_task(0, 2000, label_noise=0.0)
    assert x.shape == xt.shape == (2000, 80) and x.dtype == torch.int64 and int(x.max()) < ll.VOCAB
    counts = torch.bincount(torch.cat([x, xt]).flatten(), minlength=ll.VOCAB).double()
    # Zipf(1.1): id 0 is 2**1.1 times as frequent as id 1 and 10**1.1 as id 9 (320 000 draws)
    assert counts[0] / counts[1] == pytest.approx(2 ** 1.1, rel=0.05)
    assert counts[0] / counts[9] == pytest.approx(10 ** 1.1, rel=0.1)
    assert 0.2 < float(y.mean()) < 0.6                         # both classes present
    _, noisy, _, _ = ll.zipf_text_task(0, 2000, label_noise=0.1)
    flipped = float((noisy != y).float().mean())               # same draws, only the flips differ
    assert flipped == pytest.approx(0.1, abs=0.02)


def test_sgd_on_the_noisy_quadratic_matches_its_stationary_loss():
    """SGD x ← (1 − ηa)x − ησξ has Var = ησ²/(a(2 − ηa)), so E[f] = ½Σ a·Var = Σ ησ²/(2(2 − ηa))."""
    lr, a = 0.5, torch.linspace(0.1, 1.0, 10, dtype=torch.float64)
    closed = float((lr / (2 * (2 - lr * a))).sum())
    sgd, _ = ll.noisy_quadratic(0, 40_000, lookahead=False, lr=lr)
    assert sgd == pytest.approx(closed, rel=0.1)


def test_lookahead_alpha_one_is_sgd_on_the_quadratic(monkeypatch):
    """α = 1 makes Lookahead the inner optimizer (spec core/02 §3.1): the same iterates, so the same losses."""
    real = ll.Lookahead
    monkeypatch.setattr(ll, "Lookahead", lambda opt, k, alpha: real(opt, k=k, alpha=1.0))
    _, fast = ll.noisy_quadratic(0, 400, lookahead=True)
    sgd, _ = ll.noisy_quadratic(0, 400, lookahead=False)
    assert fast == pytest.approx(sgd, rel=1e-12)


TINY = {"docs": 200, "text_epochs": 2, "digits_epochs": 1, "quadratic_steps": 200}


def test_smoke_every_metric_finite(monkeypatch):
    monkeypatch.setitem(ll.CONFIG, "quick", TINY)
    m = ll.run("quick", 0)
    for check in ll.EXPERIMENT.checks:
        assert check.metric in m.metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.metrics.values()), m.metrics
    (fig,) = m.figures
    assert set(fig.lines) == {"adam train", "adam test", "lazy train", "lazy test"}


def test_same_seed_same_metrics(monkeypatch):
    monkeypatch.setitem(ll.CONFIG, "quick", TINY)
    assert ll.run("quick", 4).metrics == ll.run("quick", 4).metrics


def test_verdict_on_hand_made_numbers():
    # the article's IMDB numbers: Lazy 84.9 % vs Adam 83.7 %; Lookahead "no change"
    good = {"lazy_minus_adam_best_acc": 0.849 - 0.837, "gap_adam_minus_lazy": 0.05, "lookahead_minus_adam_acc": 0.002,
            "quadratic_loss_ratio": 0.6}
    checks = ll.EXPERIMENT.checks
    assert verdict(checks, good) == REPRODUCED
    assert verdict(checks, dict(good, lazy_minus_adam_best_acc=-0.03)) == PARTLY
    bad = {"lazy_minus_adam_best_acc": -0.03, "gap_adam_minus_lazy": -0.1, "lookahead_minus_adam_acc": 0.02,
           "quadratic_loss_ratio": 1.2}
    assert verdict(checks, bad) == NOT_REPRODUCED



@pytest.mark.parametrize("mode, seed, error", [("fast", 0, ValueError), ("quick", -1, ValueError),
                                               ("quick", 1.5, TypeError), ("QUICK", 0, ValueError)])
def test_bad_mode_or_seed_is_refused_before_any_work(mode, seed, error):
    with pytest.raises(error, match="mode|seed"):
        ll.run(mode, seed)


@pytest.mark.slow
def test_quick_run():
    m = ll.run("quick", 0).metrics
    assert all(math.isfinite(v) for v in m.values())
