"""kexue.ops masked reductions and the piecewise-linear schedule against brute-force references written with
Python loops. `sequence_padding` is tested with the data helpers."""
from __future__ import annotations

import pytest
import torch

from kexue.ops import masked_max, masked_mean, masked_softmax, piecewise_linear


def _masks(B=5, n=7, seed=0):
    """Random 0/1 masks [B, n] with every kind of row: right-padded, left-padded, holes, all real, all pad."""
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(B, n, generator=g) < 0.6)
    rows = [torch.arange(n) < 4,                    # right padding
            torch.arange(n) >= 2,                   # left padding
            torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)]
    for b, row in enumerate(rows[:B]):
        m[b] = row
    return m


# ---- masked reductions -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_masked_mean_max_softmax_equal_loops(dtype):
    x = (torch.randn(5, 7, 3) * 3).to(dtype)
    m = _masks()
    mean, mx = masked_mean(x, m), masked_max(x, m)
    for b in range(5):
        real = [x[b, i].double() for i in range(7) if m[b, i]]
        if real:
            ref_mean = sum(real) / len(real)
            ref_max = torch.stack(real).max(0).values
        else:                                        # a fully masked row gives zeros, never NaN
            ref_mean = ref_max = torch.zeros(3, dtype=torch.float64)
        tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(mean[b].double(), ref_mean, atol=tol, rtol=tol)
        assert torch.equal(mx[b].double(), ref_max.to(dtype).double())
    logits = (torch.randn(5, 7) * 3).to(dtype)
    p = masked_softmax(logits, m)
    for b in range(5):
        z = sum(float(torch.exp(logits[b, j].double())) for j in range(7) if m[b, j])
        for i in range(7):
            ref = float(torch.exp(logits[b, i].double())) / z if m[b, i] else 0.0
            assert abs(float(p[b, i]) - ref) <= (1e-2 if dtype == torch.bfloat16 else 1e-6)
            if not m[b, i]:
                assert float(p[b, i]) == 0.0         # masked entries are exactly zero


def test_reductions_without_mask_are_the_plain_ones():
    x = torch.randn(3, 5, 2)
    torch.testing.assert_close(masked_mean(x, None), x.mean(1))
    assert torch.equal(masked_max(x, None), x.amax(1))
    assert torch.equal(masked_softmax(x, None), x.softmax(-1))


def test_masked_mean_is_not_biased_by_padding_values():
    x = torch.randn(2, 6, 4)
    m = _masks(2, 6)
    y = x.clone()
    y[~m] = 1e4                                     # whatever sits in the padding
    torch.testing.assert_close(masked_mean(y, m), masked_mean(x, m))
    assert torch.equal(masked_max(y, m), masked_max(x, m))


# ---- piecewise_linear ---------------------------------------------------------------------------------------
def _interp(step, points):
    if step <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if step <= x1:
            return y0 + (step - x0) / (x1 - x0) * (y1 - y0)
    return points[-1][1]


@pytest.mark.parametrize("schedule,from_zero", [({1000: 1.0, 2000: 0.1}, True), ({1000: 1.0, 2000: 0.1}, False),
                                                ({0: 0.5, 10: 2.0, 30: 1.0}, True), ({5: 3.0}, True)])
def test_piecewise_linear_float_and_tensor_paths_equal_the_interpolation(schedule, from_zero):
    points = sorted(schedule.items())
    if from_zero and points[0][0] != 0:
        points = [(0, 0.0)] + points
    steps = [0, 1, 4, 5, 6, 10, 17, 30, 31, 500, 999, 1000, 1500, 2000, 10 ** 6]
    tensor = piecewise_linear(torch.tensor(steps), schedule, from_zero)
    for i, s in enumerate(steps):
        ref = _interp(s, points)
        assert piecewise_linear(s, schedule, from_zero) == pytest.approx(ref, abs=1e-12)
        assert float(tensor[i]) == pytest.approx(ref, abs=1e-9)


def test_piecewise_linear_empty_schedule():
    with pytest.raises(ValueError, match="schedule must contain"):
        piecewise_linear(3, {})


@pytest.mark.parametrize("schedule, exc, match", [
    ({1.5: 1.0}, TypeError, r"schedule key 1\.5 must be an int"),       # was truncated to step 1 in silence
    ({-5: 1.0}, ValueError, r"schedule key -5 must be an int >= 0"),
    ({0: float("nan")}, ValueError, r"schedule\[0\] must be a finite number"),
    ({10: float("inf")}, ValueError, r"schedule\[10\] must be a finite number"),
    ([(0, 1.0)], TypeError, r"schedule must be a \{step: value\} dict, got list"),
])
def test_piecewise_linear_checks_its_schedule_by_name(schedule, exc, match):
    """The one schedule function checks the table, so every alias built on it refuses the same bad tables."""
    with pytest.raises(exc, match=match):
        piecewise_linear(3, schedule)


@pytest.mark.parametrize("step", [float("nan"), torch.tensor([1.0, float("nan")])])
def test_piecewise_linear_refuses_a_nan_step(step):
    """A NaN step gave a NaN learning rate (float path) or the last value (tensor path)."""
    with pytest.raises(ValueError, match="step must be (a )?finite"):
        piecewise_linear(step, {10: 1.0})
