"""What one article's experiment declares, and how its verdict is computed from the measurements.

An experiment module (one per article, named after it, e.g. `gradient_clipping.py`) defines a module-level
`EXPERIMENT = Experiment(...)`; the runner finds every such module in `kexue.experiments` by itself.

`run(mode, seed)` trains or simulates and returns a `Measurement`: scalar metrics, optional tables and figure
data (the runner draws the figures; experiment files hold no plotting code). The verdict is never written by
hand: each `Check` compares one metric (averaged over seeds) with the article's target, and
`verdict(checks)` is "reproduced" when all hold, "partly" when some do, "not reproduced" when none does.
"""
from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .._validate import check_choice, check_int

__all__ = ["Check", "Experiment", "Figure", "Measurement", "MODES", "verdict", "REPRODUCED", "PARTLY", "NOT_REPRODUCED"]

MODES = ("quick", "full")
SMOKE = "smoke"          # a seconds-long form some experiments offer to their tests
REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


@dataclass(frozen=True)
class Check:
    """`metric op target`, e.g. Check("test_error", "<=", 0.12, "0-1 loss after the search"); `op` is one of
    <, <=, >, >=, or "~" with `tol`: |metric - target| <= tol."""
    metric: str
    op: str
    target: float
    label: str = ""
    tol: float | None = None

    def __post_init__(self):
        if self.op not in _OPS and self.op != "~":
            raise ValueError(f"Check.op must be one of {sorted(_OPS) + ['~']}, got {self.op!r}")
        if self.op == "~" and (self.tol is None or not self.tol >= 0):
            raise ValueError(f"Check with op '~' needs tol >= 0, got tol={self.tol!r}")

    def holds(self, metrics: dict[str, float]) -> bool:
        """True when the measured metric meets the target; a missing or NaN metric never holds."""
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return False
        if self.op == "~":
            return abs(value - self.target) <= self.tol
        return _OPS[self.op](value, self.target)

    def describe(self) -> str:
        cond = f"{self.metric} ≈ {self.target:g} ± {self.tol:g}" if self.op == "~" else \
            f"{self.metric} {self.op} {self.target:g}"
        return f"{self.label}: {cond}" if self.label else cond


def verdict(checks: Sequence[Check], metrics: dict[str, float]) -> str:
    """reproduced (every check holds) / partly (some) / not reproduced (none)."""
    if not checks:
        raise ValueError("an experiment needs at least one Check to have a verdict")
    held = sum(c.holds(metrics) for c in checks)
    return REPRODUCED if held == len(checks) else PARTLY if held else NOT_REPRODUCED


@dataclass
class Figure:
    """Data for one plot: `lines` maps a legend label to (x values, y values)."""
    name: str                                  # file stem, e.g. "loss_curves"
    title: str
    xlabel: str
    ylabel: str
    lines: dict[str, tuple[Sequence[float], Sequence[float]]]
    logy: bool = False


@dataclass
class Measurement:
    """What one run (one mode, one seed) measured."""
    metrics: dict[str, float]
    tables: dict[str, list[dict]] = field(default_factory=dict)     # name -> rows (dicts of str/float)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Experiment:
    """One article's claim and how to measure it (see the module docstring)."""
    name: str                                  # the module's name, used on the command line
    title: str                                 # the article's title (Chinese original, English gloss)
    url: str                                   # https://kexue.fm/archives/NNNN
    claim: str                                 # one sentence: the article's number or the spec's stated target
    setup: str                                 # what is run: data, model, budget
    checks: list[Check]                        # the pass criterion, as code
    run: Callable[[str, int], Measurement]     # run(mode, seed) with mode in MODES
    seeds: dict[str, int] = field(default_factory=lambda: {"quick": 1, "full": 3})
    deviations: dict[str, str] = field(default_factory=dict)   # mode -> how it departs from the spec's recipe
    exclusive: bool = False                    # measures wall time: the runner never runs it beside another

    def __post_init__(self):
        """`run` refuses a bad mode or seed by name before any work, for every experiment alike."""
        inner = self.run

        @functools.wraps(inner)
        def run(mode: str, seed: int) -> Measurement:
            check_choice("mode", mode, (*MODES, SMOKE))
            check_int("seed", seed, low=0)
            return inner(mode, seed)
        self.run = run
