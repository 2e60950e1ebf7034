"""Gillespie SSA (spec core/17, https://kexue.fm/archives/5607): stationary laws of birth-death and
two-stage gene expression against theory, the event-weighting pitfall, propensities, absorbing states."""
import math

import numpy as np
import pytest
from scipy import stats

from kexue.sim.gillespie import ReactionSystem, simulate_ensemble


def birth_death(k=10.0, gamma=1.0):
    s = ReactionSystem(1, ["X"])
    s.add_reaction(k, [0], [1])
    s.add_reaction(gamma, [1], [0])
    return s


def gene_expression():
    """The article's example: 0 -> m (20), m -> m + n (2.5), m -> 0 (1), n -> 0 (1)."""
    s = ReactionSystem(2, ["mRNA", "protein"])
    s.add_reaction(20.0, [0, 0], [1, 0])
    s.add_reaction(2.5, [1, 0], [1, 1])
    s.add_reaction(1.0, [1, 0], [0, 0])
    s.add_reaction(1.0, [0, 1], [0, 0])
    return s


def test_birth_death_time_weighted_mean_and_fano_within_3_percent():
    """Stationary law Poisson(k / gamma): mean 10, Fano factor 1 (400 runs x 50 time units after burn-in)."""
    res = simulate_ensemble(birth_death(), [10], t_max=60.0, n_runs=400, seed=0, burn_in=10.0)
    mean, var = res.pooled_mean_var()
    assert abs(mean[0] / 10 - 1) < 0.03
    assert abs(var[0] / mean[0] - 1) < 0.03


def test_event_weighting_pitfall_is_biased():
    """Averaging over events weights a state by a_0(n) = k + gamma n: E[n a_0] / E[a_0] = (k L + gamma (L + L^2))
    / (k + gamma L) = 10.5 for L = 10, not 10.  The same runs' time-weighted mean is right."""
    res = simulate_ensemble(birth_death(), [10], t_max=60.0, n_runs=400, seed=1, burn_in=10.0)
    event_mean = float(np.average(res.event_mean[:, 0], weights=res.events))
    time_mean = res.pooled_mean_var()[0][0]
    assert abs(event_mean - 10.5) < 0.1 and abs(time_mean - 10) < 0.1
    traj = birth_death().simulate([10], t_max=300.0, rng=np.random.default_rng(2))
    assert traj.event_average(burn_in=10.0)[0] > traj.time_average(burn_in=10.0)[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gene_expression_moments(seed):
    """E[m] = Var[m] = 20, E[n] = 50 (3 %), Fano(n) = 1 + k_p / (gamma_m + gamma_p) = 2.25 (5 %)."""
    res = simulate_ensemble(gene_expression(), [20, 50], t_max=40.0, n_runs=100, seed=seed, burn_in=10.0)
    mean, var = res.pooled_mean_var()
    assert abs(mean[0] / 20 - 1) < 0.03 and abs(var[0] / 20 - 1) < 0.05
    assert abs(mean[1] / 50 - 1) < 0.03
    assert abs(var[1] / mean[1] / 2.25 - 1) < 0.05


def test_time_weighted_histogram_is_poisson():
    """One long run (T = 2000): the time-weighted histogram is within total variation 0.03 of Poisson(10)."""
    traj = birth_death().simulate([10], t_max=2000.0, rng=np.random.default_rng(3))
    hist = traj.time_weighted_histogram(0, burn_in=10.0)
    assert sum(hist.values()) == pytest.approx(1.0)
    support = range(0, 40)
    tv = 0.5 * sum(abs(hist.get(n, 0.0) - stats.poisson.pmf(n, 10)) for n in support)
    assert tv < 0.03
    assert traj.time_average(burn_in=10.0)[0] == pytest.approx(sum(n * p for n, p in hist.items()))


def test_waiting_times_are_exponential_for_pure_birth():
    s = ReactionSystem(1)
    s.add_reaction(5.0, [0], [1])  # a_0 = 5 in every state
    traj = s.simulate([0], max_events=5000, rng=np.random.default_rng(4))
    waits = np.diff(traj.times)
    assert len(waits) == 5000 and traj.states[-1, 0] == 5000
    assert stats.kstest(waits, "expon", args=(0, 1 / 5.0)).pvalue > 0.01


def test_ensemble_mean_follows_rate_equation():
    """0 -> X (k), X -> 0 (gamma) from 0: E[n(t)] = (k / gamma)(1 - e^{-gamma t}) within 3 standard errors."""
    res = simulate_ensemble(birth_death(10.0, 1.0), [0], t_max=0.7, n_runs=10_000, seed=5)
    x = res.final_states[:, 0]
    theory = 10 * (1 - math.exp(-0.7))
    assert abs(x.mean() - theory) < 3 * x.std() / math.sqrt(len(x))


def test_propensity_convention_binomial():
    s = ReactionSystem(2)
    s.add_reaction(0.5, [2, 0], [0, 1])  # 2A -> B: c n (n - 1) / 2
    r = s.reactions[0]
    for n, expected in ((0, 0.0), (1, 0.0), (2, 0.5), (5, 5.0)):
        assert r.propensity([n, 0]) == expected
        assert s.propensities(np.array([n, 0]))[0] == expected
    s.add_reaction(2.0, [1, 3], [0, 0])  # A + 3B: c n_A C(n_B, 3)
    assert s.propensities(np.array([2, 4]))[1] == 2.0 * 2 * 4


def test_absorbing_state_stops_cleanly():
    s = ReactionSystem(1)
    s.add_reaction(1.0, [1], [0])  # pure death
    traj = s.simulate([3], t_max=50.0, rng=np.random.default_rng(6))
    assert traj.states[-1, 0] == 0 and len(traj.times) == 4 and traj.t_end == 50.0
    assert np.all(np.diff(traj.times) > 0)
    res = simulate_ensemble(s, [3], t_max=50.0, n_runs=20, seed=7)
    assert (res.final_states == 0).all() and (res.events == 3).all()


def test_grid_recording_matches_event_path():
    s, grid = birth_death(), np.linspace(0, 20, 41)
    traj = s.simulate([5], t_max=20.0, rng=np.random.default_rng(8))
    on_grid = s.simulate([5], t_max=20.0, rng=np.random.default_rng(8), record="grid", grid=grid)
    np.testing.assert_array_equal(on_grid, traj.sample_on_grid(grid))
    np.testing.assert_array_equal(s.stoichiometry(), [[1], [-1]])


def test_seeded_runs_are_reproducible():
    a = simulate_ensemble(birth_death(), [3], t_max=5.0, n_runs=10, seed=11)
    b = simulate_ensemble(birth_death(), [3], t_max=5.0, n_runs=10, seed=11)
    np.testing.assert_array_equal(a.final_states, b.final_states)
    np.testing.assert_array_equal(a.time_mean, b.time_mean)


@pytest.mark.parametrize("call, match", [
    (lambda: ReactionSystem(2).add_reaction(1.0, [1], [0, 0]), "2 entries"),
    (lambda: ReactionSystem(1).add_reaction(-1.0, [1], [0]), "rate"),
    (lambda: birth_death().simulate([-1], t_max=1.0), "non-negative"),
    (lambda: birth_death().simulate([1]), "t_max"),
    (lambda: simulate_ensemble(birth_death(), [1], t_max=1.0, n_runs=2, burn_in=2.0), "burn_in"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def pure_death(gamma=1.0):
    s = ReactionSystem(1)
    s.add_reaction(gamma, [1], [0])
    return s


@pytest.mark.parametrize("burn_in", [0.0, 0.2])
def test_time_statistics_stop_exactly_at_t_max(burn_in):
    """Issue 8 mutant: holding times must be cut at t_max, not at the first event after it.  Pure death from
    n0 = 1: a run alive at t_max has spent exactly [burn_in, t_max] in state 1, so its time mean is exactly 1
    (2.x if the wait past t_max leaked in), and every time mean lies in [final state, n0]."""
    T, runs = 0.5, 4000
    res = simulate_ensemble(pure_death(), [1], t_max=T, n_runs=runs, seed=12, burn_in=burn_in)
    alive = res.final_states[:, 0] == 1
    assert 0 < alive.sum() < runs
    np.testing.assert_array_equal(res.time_mean[alive, 0], 1.0)
    np.testing.assert_array_equal(res.time_second_moment[alive, 0], 1.0)
    assert (res.time_mean[:, 0] <= 1.0).all() and (res.time_mean[~alive, 0] < 1.0).all()
    assert (res.events == 1 - res.final_states[:, 0]).all()


def test_pure_death_time_moments_match_closed_form():
    """n(t) ~ Binomial(n0, e^{-gamma t}): (1/T) int_0^T E[n] dt = n0 (1 - e^{-gT}) / (gT) and
    (1/T) int E[n^2] dt = [n0 (1 - e^{-gT}) / g + n0 (n0 - 1) (1 - e^{-2gT}) / (2g)] / T; checked within 4
    standard errors over 4000 runs (a leak past t_max adds about n0 e^{-gT} / (g T) ~ 1.2 per run)."""
    n0, g, T, runs = 5, 1.0, 0.5, 4000
    res = simulate_ensemble(pure_death(g), [n0], t_max=T, n_runs=runs, seed=13)
    m1 = n0 * (1 - math.exp(-g * T)) / (g * T)
    m2 = (n0 * (1 - math.exp(-g * T)) / g + n0 * (n0 - 1) * (1 - math.exp(-2 * g * T)) / (2 * g)) / T
    for x, theory in ((res.time_mean[:, 0], m1), (res.time_second_moment[:, 0], m2)):
        assert abs(x.mean() - theory) < 4 * x.std() / math.sqrt(runs)
    assert (res.time_mean[:, 0] <= n0).all() and (res.time_mean[:, 0] >= res.final_states[:, 0]).all()


def test_single_run_and_ensemble_agree_on_the_observation_window():
    """The event path of `simulate` integrated over [0, t_max] equals what the ensemble accumulates: birth
    process (a_0 = k in every state), whose last event before t_max and first after it always differ."""
    s = ReactionSystem(1)
    s.add_reaction(3.0, [0], [1])
    T = 2.0
    res = simulate_ensemble(s, [0], t_max=T, n_runs=2000, seed=14)
    # pure birth at rate k: E[(1/T) int n dt] = k T / 2
    x = res.time_mean[:, 0]
    assert abs(x.mean() - 3.0 * T / 2) < 4 * x.std() / math.sqrt(len(x))
    assert (x <= res.final_states[:, 0]).all()      # n increases, so its time mean is at most the final value
    traj = s.simulate([0], t_max=T, rng=np.random.default_rng(15))
    assert traj.t_end == T and traj.times[-1] <= T
    assert traj.time_average()[0] <= traj.states[-1, 0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("call, exc, name", [
    (lambda s: simulate_ensemble(s, [1], t_max=float("inf"), n_runs=2), ValueError, "t_max"),
    (lambda s: simulate_ensemble(s, [1], t_max=float("nan"), n_runs=2), ValueError, "t_max"),
    (lambda s: simulate_ensemble(s, [1], t_max=1.0, n_runs=2.5), TypeError, "n_runs"),
    (lambda s: simulate_ensemble(s, [1], t_max=1.0, n_runs=0), ValueError, "n_runs"),
    (lambda s: simulate_ensemble(s, [1], t_max=1.0, n_runs=2, max_events=-1), ValueError, "max_events"),
    (lambda s: simulate_ensemble(s, [1], t_max=1.0, n_runs=2, burn_in=float("nan")), ValueError, "burn_in"),
    (lambda s: s.simulate([1], t_max=float("nan")), ValueError, "t_max"),
    (lambda s: s.simulate([1], t_max=float("inf")), ValueError, "t_max"),
    (lambda s: s.simulate([1], t_max=1.0, max_events=1.5), TypeError, "max_events"),
    (lambda s: s.simulate([1.5], t_max=1.0), ValueError, "x0"),
    (lambda s: s.add_reaction(float("nan"), [1], [0]), ValueError, "rate"),
    (lambda s: s.add_reaction(float("inf"), [1], [0]), ValueError, "rate"),
    (lambda s: ReactionSystem(0), ValueError, "num_species"),
    (lambda s: ReactionSystem(1.0), TypeError, "num_species"),
])
def test_bad_times_and_sizes_are_refused_not_run_forever(call, exc, name):
    """t_max = inf or NaN never stopped a system that never absorbs (NaN compares False): a hang."""
    with pytest.raises(exc, match=name):
        call(birth_death())


def test_histogram_with_no_observed_time_is_an_error_not_nan():
    traj = birth_death().simulate([3], t_max=2.0, rng=np.random.default_rng(16))
    with pytest.raises(ValueError, match="burn_in"):
        traj.time_weighted_histogram(0, burn_in=5.0)
    with pytest.raises(ValueError, match="burn_in"):
        traj.time_average(burn_in=5.0)
    with pytest.raises(ValueError, match="species"):
        traj.time_weighted_histogram(3)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("grid", [np.array([0.0, np.nan]), np.array([0.0, np.inf]), np.array([1.0, 0.5]),
                                  np.zeros((2, 2)), np.array([-1.0, 0.5])])
def test_bad_grids_are_refused(grid):
    """A NaN grid made t_max = NaN for record='grid' (a hang); an unsorted one gave silently wrong states."""
    with pytest.raises(ValueError, match="grid"):
        birth_death().simulate([1], record="grid", grid=grid)
    with pytest.raises(ValueError, match="grid"):
        simulate_ensemble(birth_death(), [1], t_max=1.0, n_runs=2, grid=grid)
