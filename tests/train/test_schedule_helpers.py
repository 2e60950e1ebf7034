"""linear_warmup_decay equals transformers' linear schedule; ScalarSchedule interpolates its table."""
from __future__ import annotations

import pytest
import torch
import transformers

from kexue.train import ScalarSchedule, linear_warmup_decay


def _lrs(make, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched, out = make(opt), []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("warmup,total", [(10, 50), (0, 20), (7, 8)])
def test_linear_warmup_decay_equals_transformers(warmup, total):
    ours = _lrs(lambda o: linear_warmup_decay(o, warmup, total), total + 5)
    ref = _lrs(lambda o: transformers.get_linear_schedule_with_warmup(o, warmup, total), total + 5)
    assert ours == pytest.approx(ref, abs=1e-12)


def test_linear_warmup_decay_final_ratio_and_errors():
    lrs = _lrs(lambda o: linear_warmup_decay(o, 4, 12, final_ratio=0.1), 20)
    assert lrs[4] == pytest.approx(0.5) and lrs[8] == pytest.approx(0.5 * 0.55) and lrs[15] == pytest.approx(0.05)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    with pytest.raises(ValueError, match="warmup_steps=5, total_steps=5"):
        linear_warmup_decay(opt, 5, 5)


def test_scalar_schedule_values():
    s = ScalarSchedule({0: 1.0, 10: 0.0, 20: 0.5}, unit="epoch")
    assert [s.value(t) for t in (0, 5, 10, 15, 20, 99)] == pytest.approx([1.0, 0.5, 0.0, 0.25, 0.5, 0.5])
    with pytest.raises(ValueError, match="unit must be 'step' or 'epoch'"):
        ScalarSchedule({0: 1.0}, unit="batch")
