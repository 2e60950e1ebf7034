"""Replacement-rate schedules of BERT-of-Theseus (https://kexue.fm/archives/7575; Xu et al. 2020,
`JetRunner/BERT-of-Theseus` replacement_scheduler.py): p is the probability that a module position runs
the successor. Call `step()` once per optimisation step; the model reads `rate`."""
from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["ConstantReplacement", "LinearReplacement"]


def _check_rate(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


class _Schedule(ABC):
    t: int

    @property
    @abstractmethod
    def rate(self) -> float:
        """The current replacement probability."""

    def step(self) -> float:
        """Advance one optimisation step and return the new rate."""
        self.t += 1
        return self.rate

    def state_dict(self) -> dict:
        return {"t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])


class ConstantReplacement(_Schedule):
    """p = rate until `steps_until_full` steps have been taken, then 1.0 (successor-only fine-tuning)."""

    def __init__(self, rate: float = 0.5, steps_until_full: int | None = None):
        self.base_rate = _check_rate("rate", rate)
        if steps_until_full is not None and (isinstance(steps_until_full, bool) or not isinstance(steps_until_full, int)
                                             or steps_until_full < 1):
            raise ValueError(f"steps_until_full must be None or an int >= 1, got {steps_until_full!r}")
        self.steps_until_full, self.t = steps_until_full, 0

    @property
    def rate(self) -> float:
        if self.steps_until_full is not None and self.t >= self.steps_until_full:
            return 1.0
        return self.base_rate


class LinearReplacement(_Schedule):
    """Curriculum p_t = min(1, k t + b) (README values b = 0.3, k = 6e-4)."""

    def __init__(self, base_rate: float = 0.3, k: float = 6e-4):
        self.base_rate = _check_rate("base_rate", base_rate)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not k >= 0:
            raise ValueError(f"k must be a non-negative slope, got {k!r}")
        self.k, self.t = float(k), 0

    @property
    def rate(self) -> float:
        return min(self.k * self.t + self.base_rate, 1.0)
