"""Gillespie's stochastic simulation algorithm (direct method) with binomial propensities and
time-weighted statistics (https://kexue.fm/archives/5607).

Reaction j: reactants s_j, products s'_j, change nu_j = s'_j - s_j, propensity a_j(n) = c_j prod_k C(n_k, s_jk)
(the article's convention: distinct reactant combinations; deterministic rate constants k relate to c
through the volume and s!).  One event: tau ~ Exp(a_0), a_0 = sum_j a_j; reaction j with probability
a_j / a_0 (cumulative-sum search); n <- n + nu_j.  Statistics of the stationary law must weight each
state by its holding time: averaging over events (the author's value_counts plot) weights states by
a_0(n) and is biased whenever rates depend on the state.

The engine is vectorised over independent runs (numpy, one Generator stream): `simulate_ensemble`
advances every run by one event per iteration and accumulates time averages on the fly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from kexue._validate import check_float, check_int

__all__ = ["Reaction", "ReactionSystem", "Trajectory", "EnsembleResult", "simulate_ensemble"]


def _binom(n: np.ndarray, s: np.ndarray) -> np.ndarray:
    """C(n, s) elementwise for integer n >= 0 and small integer s >= 0; 0 when n < s."""
    out = np.ones(np.broadcast(n, s).shape)
    for i in range(int(s.max(initial=0))):
        out = out * np.where(s > i, (n - i) / (i + 1), 1.0)
    return np.maximum(out, 0.0)


@dataclass
class Reaction:
    """One reaction: rate c and stoichiometry vectors over the S species."""
    rate: float
    reactants: Sequence[int]
    products: Sequence[int]

    def propensity(self, n) -> float:
        """c * prod_k C(n_k, s_k), e.g. 2A -> B: c n (n - 1) / 2."""
        return float(self.rate * _binom(np.asarray(n, dtype=float), np.asarray(self.reactants)).prod())


@dataclass
class Trajectory:
    """A single run: event times (times[0] = 0, the initial state) and the state after each event."""
    times: np.ndarray   # [E + 1]
    states: np.ndarray  # [E + 1, S] int64
    t_end: float        # the path is observed on [0, t_end]; the last state holds until t_end

    def _holding(self, burn_in: float) -> np.ndarray:
        ends = np.append(self.times[1:], self.t_end)
        w = np.clip(ends, burn_in, None) - np.clip(self.times, burn_in, None)  # [E + 1] time spent after burn-in
        if not w.sum() > 0:
            raise ValueError(f"Trajectory: burn_in={burn_in} leaves no time before t_end={self.t_end}")
        return w

    def time_average(self, f: Callable[[np.ndarray], np.ndarray] = lambda n: n, burn_in: float = 0.0) -> np.ndarray:
        """(1 / T) int f(n(t)) dt over [burn_in, t_end]: the stationary average for an ergodic system."""
        w = self._holding(burn_in)
        vals = np.asarray(f(self.states), dtype=float)
        return np.tensordot(w, vals, axes=(0, 0)) / w.sum()

    def event_average(self, f: Callable[[np.ndarray], np.ndarray] = lambda n: n, burn_in: float = 0.0) -> np.ndarray:
        """Average of f over the states visited after burn_in, one vote per event: the biased
        statistic of the author's plot, kept to document the pitfall."""
        keep = self.times >= burn_in
        return np.asarray(f(self.states[keep]), dtype=float).mean(0)

    def time_weighted_histogram(self, species: int, burn_in: float = 0.0) -> dict[int, float]:
        """{copy number: fraction of time spent} of one species after burn_in."""
        check_int("species", species, 0, self.states.shape[1] - 1)
        w = self._holding(burn_in)
        vals = self.states[:, species]
        tot = np.bincount(vals, weights=w)
        return {int(v): float(p) for v, p in enumerate(tot / w.sum()) if p > 0}

    def sample_on_grid(self, grid: np.ndarray) -> np.ndarray:
        """[G, S] state at each grid time (state after the last event at or before it)."""
        idx = np.searchsorted(self.times, np.asarray(grid), side="right") - 1
        return self.states[np.clip(idx, 0, None)]


@dataclass
class EnsembleResult:
    """Per-run outputs of simulate_ensemble; every array has the runs on axis 0."""
    final_states: np.ndarray       # [R, S] state at t_max
    time_mean: np.ndarray          # [R, S] (1 / T) int n dt over [burn_in, t_max]
    time_second_moment: np.ndarray  # [R, S] (1 / T) int n^2 dt
    event_mean: np.ndarray         # [R, S] mean pre-event state over events after burn_in (biased)
    events: np.ndarray             # [R] number of events fired
    grid_states: np.ndarray | None = field(default=None)  # [R, G, S] when a grid was given

    def pooled_mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        """[S] time-weighted mean and variance pooled over runs (equal observation windows)."""
        mean = self.time_mean.mean(0)
        return mean, self.time_second_moment.mean(0) - mean**2


class ReactionSystem:
    """A set of reactions over num_species species; `simulate` gives one Trajectory."""

    def __init__(self, num_species: int, species_names: Sequence[str] | None = None):
        num_species = check_int("num_species", num_species, 1)
        if species_names is not None and len(species_names) != num_species:
            raise ValueError(f"ReactionSystem: {len(species_names)} species_names for {num_species} species")
        self.num_species, self.species_names = num_species, species_names
        self.reactions: list[Reaction] = []

    def add_reaction(self, rate: float, reactants: Sequence[int], products: Sequence[int]) -> None:
        if len(reactants) != self.num_species or len(products) != self.num_species:
            raise ValueError(f"add_reaction: reactants and products need {self.num_species} entries, got "
                             f"{len(reactants)} and {len(products)}")
        rate = check_float("rate", rate, 0.0)
        if min(reactants) < 0 or min(products) < 0:
            raise ValueError(f"add_reaction: rate and stoichiometries must be >= 0, got rate={rate}, "
                             f"reactants={list(reactants)}, products={list(products)}")
        self.reactions.append(Reaction(float(rate), list(reactants), list(products)))

    def stoichiometry(self) -> np.ndarray:
        """[R, S] matrix of nu_j = products - reactants."""
        return np.array([np.subtract(r.products, r.reactants) for r in self.reactions], dtype=np.int64)

    def propensities(self, n: np.ndarray) -> np.ndarray:
        """[..., S] states -> [..., R] propensities."""
        s = np.array([r.reactants for r in self.reactions])  # [R, S]
        c = np.array([r.rate for r in self.reactions])
        return c * _binom(n[..., None, :].astype(float), s).prod(-1)

    def simulate(self, x0, *, t_max: float | None = None, max_events: int | None = None,
                 rng: np.random.Generator | None = None, record: str = "events",
                 grid: np.ndarray | None = None) -> Trajectory | np.ndarray:
        """One run from x0 until t_max and/or max_events.  record="events" returns a Trajectory;
        record="grid" returns [G, S] states at the grid times (piecewise-constant path, less memory)."""
        if record not in ("events", "grid"):
            raise ValueError(f"simulate: record must be 'events' or 'grid', got {record!r}")
        if record == "grid" and grid is None:
            raise ValueError("simulate: record='grid' needs a grid of times")
        grid = _check_grid(grid)
        if t_max is None and max_events is None:
            raise ValueError("simulate: give t_max, max_events or both")
        if t_max is not None:  # inf or NaN would never stop a system that does not absorb
            t_max = check_float("t_max", t_max, 0.0)
        if max_events is not None:
            max_events = check_int("max_events", max_events, 0)
        t_max = (float(np.max(grid)) if record == "grid" else np.inf) if t_max is None else float(t_max)
        times, states, on_grid = _run_single(self, x0, t_max, max_events, rng or np.random.default_rng(), grid,
                                             keep_events=record == "events")
        if record == "grid":
            return on_grid
        return Trajectory(np.asarray(times), np.asarray(states, dtype=np.int64),
                          float(times[-1] if t_max == np.inf else t_max))


def _check_grid(grid) -> np.ndarray | None:
    """Observation times: a finite, non-negative, non-decreasing 1-D array (the event loop walks it in order)."""
    if grid is None:
        return None
    g = np.asarray(grid, dtype=float)
    if g.ndim != 1 or not np.all(np.isfinite(g)) or (g < 0).any() or (np.diff(g) < 0).any():
        raise ValueError(f"grid must be a finite, non-negative, non-decreasing 1-D array of times, got {g.tolist()}")
    return g


def _integer_state(x0, num_species: int) -> np.ndarray:
    """x0 as int64 copy numbers; 1.5 or NaN are refused rather than truncated."""
    a = np.asarray(x0)
    if a.dtype.kind not in "iu":
        if a.dtype.kind not in "fb" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"simulate: x0 must be {num_species} non-negative integers, got {a.reshape(-1).tolist()}")
    return a.astype(np.int64).reshape(-1)


def _run_single(system: ReactionSystem, x0, t_max: float, max_events: int | None, rng: np.random.Generator,
                grid: np.ndarray | None = None, keep_events: bool = True, block: int = 4096):
    """Scalar direct method for one run (plain Python ints: a few microseconds per event).  Returns event
    times, post-event states and, with a grid, the [G, S] states at the grid times."""
    n = _integer_state(x0, system.num_species).tolist()
    if len(n) != system.num_species or min(n) < 0:
        raise ValueError(f"simulate: x0 must be {system.num_species} non-negative integers, got {n}")
    if not system.reactions:
        raise ValueError("simulate: the system has no reactions")
    reac = [(r.rate, [(k, s) for k, s in enumerate(r.reactants) if s > 0]) for r in system.reactions]
    nu = [[(k, int(d)) for k, d in enumerate(row) if d != 0] for row in system.stoichiometry()]
    g = None if grid is None else np.asarray(grid, dtype=float)
    on_grid = None if g is None else np.zeros((len(g), len(n)), dtype=np.int64)
    gi, t, events, i = 0, 0.0, 0, block
    times, states = [0.0], [tuple(n)]
    while max_events is None or events < max_events:
        if i == block:
            E, U, i = rng.exponential(size=block), rng.random(block), 0
        a = [c * math.prod(math.comb(n[k], s) for k, s in rs) for c, rs in reac]
        a0 = sum(a)
        if a0 <= 0:  # absorbing state: nothing fires again, the path holds until t_max
            break
        t_new = t + E[i] / a0
        if t_new > t_max:
            break
        target, j, acc = U[i] * a0, 0, a[0]
        while acc <= target and j < len(a) - 1:  # cumulative-sum search
            j += 1
            acc += a[j]
        i += 1
        if g is not None:
            while gi < len(g) and g[gi] < t_new:
                on_grid[gi] = n
                gi += 1
        for k, d in nu[j]:
            n[k] += d
        t, events = t_new, events + 1
        if keep_events:
            times.append(t)
            states.append(tuple(n))
    if g is not None:
        on_grid[gi:] = n
    return times, states, on_grid


def _run(system: ReactionSystem, n: np.ndarray, t_max: float, max_events: int | None, rng: np.random.Generator,
         burn_in: float = 0.0, grid: np.ndarray | None = None) -> EnsembleResult:
    """Direct method for R runs at once (n [R, S]), one event per run per iteration."""
    if not system.reactions:
        raise ValueError("simulate: the system has no reactions")
    n = n.copy()
    if n.ndim != 2 or n.shape[1] != system.num_species or (n < 0).any():
        raise ValueError(f"simulate: x0 must be {system.num_species} non-negative integers, got {n[0].tolist()}")
    nu = system.stoichiometry()  # [R_, S]
    runs, S = n.shape
    t = np.zeros(runs)
    active = np.ones(runs, dtype=bool)
    events = np.zeros(runs, dtype=np.int64)
    acc1, acc2, ev1 = np.zeros((runs, S)), np.zeros((runs, S)), np.zeros((runs, S))
    ev_count = np.zeros(runs)
    g = None if grid is None else np.asarray(grid, dtype=float)
    gstates = None if g is None else np.zeros((runs, len(g), S), dtype=np.int64)
    gi = np.zeros(runs, dtype=np.int64)
    while active.any():
        idx = np.flatnonzero(active)
        a = system.propensities(n[idx])  # [r, R_]
        a0 = a.sum(1)
        with np.errstate(divide="ignore"):
            tau = rng.exponential(size=len(idx)) / a0  # a0 = 0 (absorbing): inf, time jumps to t_max
        t_new = t[idx] + tau
        fire = t_new <= t_max
        if max_events is not None:
            fire &= events[idx] < max_events
        capped = events[idx] >= (np.inf if max_events is None else max_events)
        t_stop = np.where(fire, t_new, np.where(capped, t[idx], t_max))
        hold = np.clip(t_stop, burn_in, None) - np.clip(t[idx], burn_in, None)  # time spent in n after burn-in
        cur = n[idx].astype(float)
        acc1[idx] += hold[:, None] * cur
        acc2[idx] += hold[:, None] * cur**2
        after = fire & (t_new >= burn_in)  # this event falls in the window: vote for the pre-event state
        ev1[idx[after]] += cur[after]
        ev_count[idx[after]] += 1
        if g is not None:
            limit = np.where(fire, t_new, -np.inf)  # stopped runs: filled with the final state below
            while True:
                gr = gi[idx]
                pend = gr < len(g)
                pend[pend] = g[gr[pend]] < limit[pend]
                if not pend.any():
                    break
                gstates[idx[pend], gr[pend]] = n[idx[pend]]
                gi[idx[pend]] += 1
        # choose reaction j with P = a_j / a_0: first cumulative sum exceeding u * a_0
        u = rng.random(len(idx)) * a0
        j = np.minimum((np.cumsum(a, 1) <= u[:, None]).sum(1), a.shape[1] - 1)
        f_idx = idx[fire]
        n[f_idx] += nu[j[fire]]
        t[f_idx] = t_new[fire]
        events[f_idx] += 1
        t[idx[~fire]] = t_stop[~fire]
        active[idx[~fire]] = False
    if g is not None:  # grid points after the last event (or after an absorbing state)
        for r in range(runs):
            gstates[r, gi[r]:] = n[r]
    T = max(t_max - burn_in, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return EnsembleResult(n, acc1 / T, acc2 / T, ev1 / ev_count[:, None], events, gstates)


def simulate_ensemble(system: ReactionSystem, x0, t_max: float, n_runs: int, seed: int | None = None, *,
                      burn_in: float = 0.0, grid: np.ndarray | None = None, max_events: int | None = None,
                      rng: np.random.Generator | None = None) -> EnsembleResult:
    """n_runs independent runs from x0 to t_max, vectorised; time averages over [burn_in, t_max]
    are accumulated on the fly (no event storage).  One Generator stream (seed) drives all runs."""
    n_runs = check_int("n_runs", n_runs, 1)
    grid = _check_grid(grid)
    t_max = check_float("t_max", t_max, 0.0, low_open=True)  # finite: inf or NaN would never stop
    burn_in = check_float("burn_in", burn_in, 0.0)
    if not burn_in < t_max:
        raise ValueError(f"simulate_ensemble: need 0 <= burn_in < t_max, got burn_in={burn_in}, t_max={t_max}")
    if max_events is not None:
        max_events = check_int("max_events", max_events, 0)
    x0 = _integer_state(x0, system.num_species)
    if x0.size != system.num_species:
        raise ValueError(f"simulate: x0 must be {system.num_species} non-negative integers, got {x0.tolist()}")
    x0 = np.broadcast_to(x0, (n_runs, system.num_species))
    return _run(system, x0, float(t_max), max_events, rng or np.random.default_rng(seed), burn_in, grid)
