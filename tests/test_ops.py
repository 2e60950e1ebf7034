"""kexue.ops mask helpers against brute-force references written with Python loops (issue 8: the mutant
"reverse_padded reverses across padding" survived the suite). `sequence_padding` is tested with the data helpers."""
from __future__ import annotations

import pytest
import torch

from kexue.ops import (apply_mask, causal_mask, combine_masks, masked_max, masked_mean, masked_softmax,
                       piecewise_linear, reverse_padded, sequence_mask, unilm_mask)


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


# ---- sequence_mask ----------------------------------------------------------------------------------------
def test_sequence_mask_equals_loop():
    lengths = torch.tensor([0, 3, 5, 1])
    for max_len in (None, 5, 7, 2):
        out = sequence_mask(lengths, max_len)
        L = 5 if max_len is None else max_len
        ref = torch.tensor([[j < int(l) for j in range(L)] for l in lengths])
        assert out.dtype == torch.bool and torch.equal(out, ref)


def test_sequence_mask_bad_arguments():
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        sequence_mask(torch.tensor([2, -1]))
    with pytest.raises(ValueError, match="lengths must be 1-D"):
        sequence_mask(torch.tensor([[2]]))
    with pytest.raises(TypeError, match=r"lengths must hold integers, got dtype torch.float32"):
        sequence_mask(torch.tensor([2.5]))
    with pytest.raises(ValueError, match=r"max_len must be an int >= 0, got -1"):
        sequence_mask(torch.tensor([2]), -1)
    assert sequence_mask(torch.zeros(0, dtype=torch.long)).shape == (0, 0)    # an empty batch


# ---- apply_mask / masked reductions -------------------------------------------------------------------------
def test_apply_mask_equals_loop():
    x = torch.randn(5, 7, 3)
    m = _masks()
    for value, fill in ((0.0, 0.0), (-5.0, -5.0), ("-inf", torch.finfo(x.dtype).min), ("+inf", torch.finfo(x.dtype).max)):
        out = apply_mask(x, m, value)
        for b in range(5):
            for i in range(7):
                assert torch.equal(out[b, i], x[b, i] if m[b, i] else torch.full((3,), fill))
    assert apply_mask(x, None) is x


def test_apply_mask_on_other_axes():
    x = torch.randn(2, 3, 4, 4)                     # [B, H, n, n]: mask the key axis
    m = _masks(2, 4)
    out = apply_mask(x, m, -1.0, axes=-1)
    ref = torch.where(m[:, None, None, :], x, torch.tensor(-1.0))
    assert torch.equal(out, ref)
    m2 = torch.rand(2, 4, 4) < 0.5                  # two axes at once: [B, n, n] on axes (2, 3)
    assert torch.equal(apply_mask(x, m2, 0.0, axes=(2, 3)), torch.where(m2[:, None], x, torch.tensor(0.0)))


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


# ---- reverse_padded -----------------------------------------------------------------------------------------
def _reverse_loop(x, m):
    """Reverse the real steps of each row among themselves; padding stays where it is."""
    out = x.clone()
    for b in range(x.shape[0]):
        real = [i for i in range(x.shape[1]) if m[b, i]]
        for i, j in zip(real, reversed(real)):
            out[b, i] = x[b, j]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_reverse_padded_equals_loop(seed):
    x = torch.randn(5, 7, 2)
    m = _masks(seed=seed)
    assert torch.equal(reverse_padded(x, m), _reverse_loop(x, m))
    assert torch.equal(reverse_padded(reverse_padded(x, m), m), x)          # an involution
    ids = torch.arange(35).reshape(5, 7)                                    # 2-D input too
    assert torch.equal(reverse_padded(ids, m), _reverse_loop(ids, m))


def test_reverse_padded_right_padding_keeps_the_tail():
    x = torch.tensor([[1, 2, 3, 0, 0]])
    m = torch.tensor([[1, 1, 1, 0, 0]])
    assert reverse_padded(x, m).tolist() == [[3, 2, 1, 0, 0]]


def test_reverse_padded_shape_mismatch():
    with pytest.raises(ValueError, match=r"mask has shape \(2, 4\); expected x's first two dims \(2, 5\)"):
        reverse_padded(torch.zeros(2, 5, 3), torch.ones(2, 4))


# ---- attention masks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,m", [(1, 1), (4, 4), (3, 6), (5, 2)])
def test_causal_mask_equals_loop(n, m):
    ref = torch.tensor([[j <= i + (m - n) for j in range(m)] for i in range(n)])
    assert torch.equal(causal_mask(n, m=m), ref)
    if n == m:
        assert torch.equal(causal_mask(n), ref)


def test_unilm_mask_equals_loop():
    seg = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    out = unilm_mask(seg)
    for b in range(3):
        src = [i for i in range(6) if seg[b, i] == 0 and (seg[b, :i + 1] == 0).all()]
        for i in range(6):
            for j in range(6):
                # source tokens see the source; target tokens see the source and the target up to themselves
                expected = j in src if i in src else (j in src or j <= i)
                assert bool(out[b, i, j]) == expected, (b, i, j)


def test_combine_masks_is_and_ignoring_none():
    a, b = torch.rand(2, 3, 4) < 0.5, torch.rand(1, 3, 4) < 0.5
    assert torch.equal(combine_masks(a, None, b), a & b)
    assert torch.equal(combine_masks(None, torch.tensor([1, 0, 1])), torch.tensor([True, False, True]))
    assert combine_masks(None, None) is None and combine_masks() is None


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
