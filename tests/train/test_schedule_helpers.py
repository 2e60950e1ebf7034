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
    with pytest.raises(ValueError, match=r"unit must be one of \['step', 'epoch'\], got 'batch'"):
        ScalarSchedule({0: 1.0}, unit="batch")


# ---- one LR schedule behind every name (issue 9) -------------------------------------------------------------
SCHEDULE = {4: 1.0, 10: 0.2, 14: 0.5}


def _sgd(lr=0.5):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _closed_form(steps, lr=0.5):
    """lr x the linear interpolation through (0, 0), (4, 1), (10, 0.2), (14, 0.5), constant after."""
    pts = [(0, 0.0), (4, 1.0), (10, 0.2), (14, 0.5)]
    out = []
    for t in range(steps):
        v = pts[-1][1]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if t <= x1:
                v = y0 + (t - x0) / (x1 - x0) * (y1 - y0)
                break
        out.append(lr * v)
    return out


def test_every_schedule_name_gives_the_one_schedule():
    from kexue.optim import PiecewiseLinearLR, PiecewiseLinearScheduler, piecewise_linear_lambda
    ref = _closed_form(20)
    assert _lrs(lambda o: PiecewiseLinearScheduler(o, SCHEDULE), 20) == pytest.approx(ref, abs=1e-12)
    lam = _lrs(lambda o: torch.optim.lr_scheduler.LambdaLR(o, piecewise_linear_lambda(SCHEDULE)), 20)
    assert lam == pytest.approx(ref, abs=1e-12)
    # the bert4keras optimizer wrapper: the same multiplier, applied inside its step
    wrapped = PiecewiseLinearLR(_sgd(), SCHEDULE)
    seen = []
    for _ in range(20):
        seen.append(wrapped.param_groups[0]["lr"] * wrapped.multiplier)
        wrapped.param_groups[0]["params"][0].grad = torch.ones(1)
        wrapped.step()
    assert seen == pytest.approx(ref, abs=1e-12)


def test_linear_warmup_decay_is_the_scheduler_with_a_two_point_table():
    import kexue.optim
    import kexue.train
    from kexue.optim import PiecewiseLinearScheduler
    assert kexue.train.linear_warmup_decay is kexue.optim.linear_warmup_decay
    import kexue.ops
    assert kexue.optim.piecewise_linear is kexue.ops.piecewise_linear                  # a re-export, not a copy
    sched = linear_warmup_decay(_sgd(), 4, 12, final_ratio=0.1)
    assert isinstance(sched, PiecewiseLinearScheduler) and sched.schedule == {4: 1.0, 12: 0.1}
    ours = _lrs(lambda o: linear_warmup_decay(o, 4, 12, final_ratio=0.1), 16)
    ref = _lrs(lambda o: PiecewiseLinearScheduler(o, {4: 1.0, 12: 0.1}), 16)
    assert ours == ref


def test_piecewise_linear_schedule_callback_attaches_the_one_scheduler():
    from kexue.optim import PiecewiseLinearScheduler
    from kexue.train import PiecewiseLinearSchedule, Trainer
    model = torch.nn.Linear(2, 1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), loss_fn=torch.nn.functional.mse_loss)
    cb = PiecewiseLinearSchedule(SCHEDULE)
    x, y = torch.randn(20, 2), torch.randn(20, 1)
    trainer.fit(list(zip(x, y)), epochs=1, batch_size=1, callbacks=[cb], shuffle=False, verbose=0)
    assert isinstance(trainer.scheduler, PiecewiseLinearScheduler) and cb.scheduler is trainer.scheduler
    assert trainer.scheduler.schedule == SCHEDULE
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(_closed_form(21)[20])


def test_scalar_schedule_is_the_schedule_function_without_the_zero_start():
    from kexue.ops import piecewise_linear
    s = ScalarSchedule(SCHEDULE)
    assert [s.value(t) for t in range(20)] == [piecewise_linear(t, SCHEDULE, from_zero=False) for t in range(20)]


def test_scheduler_checks_its_table_before_touching_the_optimizer():
    from kexue.optim import PiecewiseLinearScheduler
    opt = _sgd()
    with pytest.raises(ValueError, match=r"schedule\[4\] must be a finite number"):
        PiecewiseLinearScheduler(opt, {4: float("nan")})
    assert "initial_lr" not in opt.param_groups[0]
