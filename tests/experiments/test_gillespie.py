"""The Gillespie experiment (spec core/17): smoke run, determinism, the closed forms it checks against."""
import math

import numpy as np
import pytest
from scipy.linalg import solve_continuous_lyapunov

from kexue.experiments import PARTLY, REPRODUCED, verdict
from kexue.experiments import gillespie


def test_targets_follow_from_the_linear_noise_closed_form():
    """Stationary covariance of the linear network from the Lyapunov equation A S + S A^T + D = 0; the
    event-weighted mean E[n a0] / E[a0] with a0 = k_m + (k_p + g_m) m + g_p n follows from it."""
    k_m, k_p, g_m, g_p = gillespie.K_M, gillespie.K_P, gillespie.G_M, gillespie.G_P
    mean = np.array([k_m / g_m, k_m * k_p / (g_m * g_p)])
    A = np.array([[-g_m, 0.0], [k_p, -g_p]])
    D = np.diag([k_m + g_m * mean[0], k_p * mean[0] + g_p * mean[1]])
    S = solve_continuous_lyapunov(A, -D)
    assert mean[1] == gillespie.MEAN_N and S[1, 1] / mean[1] == pytest.approx(gillespie.FANO_N)
    assert S[0, 0] == pytest.approx(gillespie.MEAN_M)  # m ~ Poisson(20)
    e_a0 = k_m + (k_p + g_m) * mean[0] + g_p * mean[1]
    e_n_a0 = k_m * mean[1] + (k_p + g_m) * (S[0, 1] + mean[0] * mean[1]) + g_p * (S[1, 1] + mean[1] ** 2)
    assert e_n_a0 / e_a0 - mean[1] == pytest.approx(gillespie.EVENT_BIAS_N)


def test_event_average_is_biased_on_a_birth_death_process():
    """0 -> X (10), X -> 0 (1): Poisson(10) in time; per event the mean is E[n a0] / E[a0] = 210 / 20 = 10.5."""
    from kexue.sim import ReactionSystem
    system = ReactionSystem(1)
    system.add_reaction(10.0, [0], [1])
    system.add_reaction(1.0, [1], [0])
    traj = system.simulate([10], t_max=3000.0, rng=np.random.default_rng(0))
    assert traj.time_average(burn_in=10.0)[0] == pytest.approx(10.0, abs=0.25)
    assert traj.event_average(burn_in=10.0)[0] == pytest.approx(10.5, abs=0.25)


def test_smoke_every_metric_finite(monkeypatch):
    monkeypatch.setitem(gillespie.T_MAX, "quick", 160.0)
    m = gillespie.run("quick", 0)
    for check in gillespie.EXPERIMENT.checks:
        assert check.metric in m.metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.metrics.values()), m.metrics
    assert {f.name for f in m.figures} == {"protein_path", "protein_distribution", "mrna_distribution"}
    dist = next(f for f in m.figures if f.name == "protein_distribution")
    for _, ys in dist.lines.values():
        assert sum(ys) == pytest.approx(1.0)
    assert len(m.tables["moments"]) == 4


def test_same_seed_same_metrics(monkeypatch):
    monkeypatch.setitem(gillespie.T_MAX, "quick", 160.0)
    assert gillespie.run("quick", 5).metrics == gillespie.run("quick", 5).metrics


def test_quick_run_one_seed_near_theory():
    m = gillespie.run("quick", 0).metrics
    assert abs(m["mean_n"] / 50 - 1) < 0.06 and abs(m["fano_n"] / 2.25 - 1) < 0.15
    assert m["event_bias_n"] > 0.5  # the pitfall shows on a single run


def test_verdict_on_hand_made_numbers():
    good = {"mean_n": 50.4, "fano_n": 2.2, "mean_m": 20.1, "event_bias_n": 1.5}
    assert verdict(gillespie.EXPERIMENT.checks, good) == REPRODUCED
    assert verdict(gillespie.EXPERIMENT.checks, dict(good, fano_n=2.5, event_bias_n=0.0)) == PARTLY
