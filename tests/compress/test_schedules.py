"""Replacement schedules (https://kexue.fm/archives/7575) against the reference semantics of
JetRunner/BERT-of-Theseus `replacement_scheduler.py`."""
import pytest

from kexue.compress import ConstantReplacement, LinearReplacement


class _RefConstant:
    """JetRunner ConstantReplacementScheduler.step, minus the encoder it drives."""

    def __init__(self, replacing_rate, replacing_steps=None):
        self.replacing_rate, self.replacing_steps, self.step_counter = replacing_rate, replacing_steps, 0

    def step(self):
        self.step_counter += 1
        if self.replacing_steps is None or self.replacing_rate == 1.0:
            return self.replacing_rate
        if self.step_counter >= self.replacing_steps:
            self.replacing_rate = 1.0
        return self.replacing_rate


class _RefLinear:
    """JetRunner LinearReplacementScheduler.step."""

    def __init__(self, base_replacing_rate, k):
        self.base_replacing_rate, self.k, self.step_counter = base_replacing_rate, k, 0

    def step(self):
        self.step_counter += 1
        return min(self.k * self.step_counter + self.base_replacing_rate, 1.0)


def test_constant_switches_to_one_exactly_at_steps_until_full():
    s = ConstantReplacement(0.5, steps_until_full=3)
    assert s.rate == 0.5
    assert [s.step() for _ in range(4)] == [0.5, 0.5, 1.0, 1.0]
    assert ConstantReplacement(0.3).step() == 0.3


def test_linear_follows_kt_plus_b_and_clips_at_one():
    s = LinearReplacement(0.3, 6e-4)
    rates = [s.step() for _ in range(2000)]
    assert s.rate == 1.0 and rates[0] == 6e-4 + 0.3 and max(rates) == 1.0
    first_full = next(t for t, r in enumerate(rates, 1) if r == 1.0)
    assert abs(first_full - (1 - 0.3) / 6e-4) <= 1


@pytest.mark.parametrize("ours,ref", [
    (lambda: ConstantReplacement(0.5, 2500), lambda: _RefConstant(0.5, 2500)),
    (lambda: ConstantReplacement(0.7), lambda: _RefConstant(0.7)),
    (lambda: LinearReplacement(0.3, 6e-4), lambda: _RefLinear(0.3, 6e-4)),
    (lambda: LinearReplacement(0.1, 1e-3), lambda: _RefLinear(0.1, 1e-3))])
def test_parity_with_the_reference_schedulers(ours, ref):
    a, b = ours(), ref()
    assert [a.step() for _ in range(3000)] == [b.step() for _ in range(3000)]


def test_state_dict_round_trip_and_validation():
    s = LinearReplacement(0.3, 1e-2)
    for _ in range(7):
        s.step()
    t = LinearReplacement(0.3, 1e-2)
    t.load_state_dict(s.state_dict())
    assert t.rate == s.rate and t.step() == s.step()
    with pytest.raises(ValueError, match="rate"):
        ConstantReplacement(1.5)
    with pytest.raises(ValueError, match="steps_until_full"):
        ConstantReplacement(0.5, steps_until_full=0)
    with pytest.raises(ValueError, match="base_rate"):
        LinearReplacement(-0.1)
    with pytest.raises(ValueError, match="k must"):
        LinearReplacement(0.3, k=-1e-3)
