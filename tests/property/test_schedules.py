"""The one schedule function, the one LR scheduler and the one mixup (issue 9) on generated arguments.

Tables draw keys and values of every kind (valid ints and floats, negative, float keys, bool, NaN, inf,
strings); the outcome must match an independent rule: a valid table gives the closed-form interpolation (and the
scheduler the same learning rates), any other one a clear error naming `schedule`."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.ops import piecewise_linear
from kexue.optim import PiecewiseLinearScheduler
from kexue.regularizers import MixupCollate
from kexue.train import Mixup
from tests.property.clear_error import assert_finite, valid_or_clear_error

KEY = st.one_of(*[st.integers(0, 50)] * 3, st.sampled_from([-1, 2.5, True, "3", None]))
VALUE = st.one_of(*[st.floats(0, 3)] * 3, st.sampled_from([-0.5, float("nan"), float("inf"), True, "1"]))
TABLE = st.one_of(st.dictionaries(KEY, VALUE, min_size=0, max_size=4), st.sampled_from([[(0, 1.0)], None, 3]))


def _valid_table(table, low=None) -> bool:
    if not isinstance(table, dict) or not table:
        return False
    for k, v in table.items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            return False
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if low is not None and v < low:
            return False
    return True


def _reference(step, table, from_zero):
    pts = sorted((k, float(v)) for k, v in table.items())
    if from_zero and pts[0][0] != 0:
        pts.insert(0, (0, 0.0))
    if step <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if step <= x1:
            return y0 + (step - x0) / (x1 - x0) * (y1 - y0)
    return pts[-1][1]


@pytest.mark.timeout(60)
@settings(max_examples=150)
@given(table=TABLE, step=st.one_of(st.integers(0, 60), st.floats(0, 60)), from_zero=st.booleans())
def test_piecewise_linear_is_the_interpolation_or_a_clear_error(table, step, from_zero):
    with valid_or_clear_error("schedule"):
        out = piecewise_linear(step, table, from_zero)
        assert _valid_table(table), f"accepted a bad table {table!r}"
        assert out == pytest.approx(_reference(step, table, from_zero), abs=1e-9)
        tensor = piecewise_linear(torch.tensor([float(step)]), table, from_zero)
        assert_finite(tensor)
        assert float(tensor[0]) == pytest.approx(out, abs=1e-9)
        return
    assert not _valid_table(table)


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(table=TABLE, from_zero=st.booleans())
def test_scheduler_gives_base_lr_times_the_function(table, from_zero):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    with valid_or_clear_error("schedule"):
        sched = PiecewiseLinearScheduler(opt, table, from_zero)
        assert _valid_table(table, low=0.0), f"accepted a bad table {table!r}"
        for t in range(12):
            lr = opt.param_groups[0]["lr"]
            assert math.isfinite(lr) and lr == pytest.approx(0.5 * _reference(t, table, from_zero), abs=1e-12)
            opt.step()
            sched.step()
        return
    assert not _valid_table(table, low=0.0)
    assert "initial_lr" not in opt.param_groups[0]                 # refused before torch touched the optimizer


ALPHA = st.one_of(*[st.floats(0, 2)] * 3, st.sampled_from([-1.0, float("nan"), float("inf"), True, "1", None]))
CLASSES = st.one_of(*[st.integers(1, 4)] * 3, st.sampled_from([0, -1, 2.0, True, "3"]), st.none())


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(alpha=ALPHA, num_classes=CLASSES, mode=st.sampled_from(["mixup", "sample_pairing", "cutmix", 1]),
       B=st.integers(1, 4), seed=st.integers(0, 3))
def test_both_mixup_forms_agree_or_refuse_alike(alpha, num_classes, mode, B, seed):
    x = torch.randn(B, 3, generator=torch.Generator().manual_seed(seed))
    y = torch.randint(0, 4, (B,), generator=torch.Generator().manual_seed(seed + 1))
    errors = []
    for build in (lambda: Mixup(alpha, num_classes, mode, seed=seed),
                  lambda: MixupCollate(alpha, num_classes, mode, generator=torch.Generator().manual_seed(seed))):
        with valid_or_clear_error("alpha", "num_classes", "mode"):
            build()
            errors.append(None)
            continue
        errors.append("error")
    assert errors[0] == errors[1]                                   # one check, in one place
    if errors[0] is None:
        callback, collate = Mixup(alpha, num_classes, mode, seed=seed), \
            MixupCollate(alpha, num_classes, mode, generator=torch.Generator().manual_seed(seed))
        with valid_or_clear_error("num_classes", "labels"):
            xa, ya = callback.on_train_batch_data((x, y))
            xb, yb = collate.mix((x, y))
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert_finite(xa, ya)
