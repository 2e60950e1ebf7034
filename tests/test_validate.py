"""kexue._validate: every refusal names the argument and the value; accepted values come back unchanged."""
import math

import numpy as np
import pytest

from kexue._validate import check_bool, check_choice, check_float, check_int


def test_check_int_accepts_ints_in_range_and_numpy_ints():
    assert check_int("n", 3, 1, 5) == 3
    assert check_int("n", np.int64(4), 0) == 4 and type(check_int("n", np.int64(4))) is int


@pytest.mark.parametrize("value, exc", [(True, TypeError), (3.0, TypeError), (1e8, TypeError), ("3", TypeError),
                                        (0, ValueError), (6, ValueError), (-1, ValueError)])
def test_check_int_refuses(value, exc):
    with pytest.raises(exc, match=r"num_heads must be an int.*got") as e:
        check_int("num_heads", value, 1, 5)
    assert repr(value) in str(e.value) or str(value) in str(e.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, 0.0])
def test_check_float_refuses_non_finite_and_out_of_range(value):
    with pytest.raises(ValueError, match="eps must be a finite number in \\(0"):
        check_float("eps", value, 0.0, low_open=True)


def test_check_float_bounds_and_types():
    assert check_float("p", 1, 0.0, 1.0) == 1.0
    with pytest.raises(ValueError, match=r"in \[0.0, 1.0\)"):
        check_float("p", 1.0, 0.0, 1.0, high_open=True)
    with pytest.raises(TypeError, match="p must be a real number, got '0.5'"):
        check_float("p", "0.5")
    with pytest.raises(TypeError):
        check_float("p", False)


def test_check_choice_and_bool():
    assert check_choice("mode", "min", ("min", "max")) == "min"
    with pytest.raises(ValueError, match=r"mode must be one of \['min', 'max'\], got 'mean'"):
        check_choice("mode", "mean", ("min", "max"))
    assert check_bool("tie", False) is False
    with pytest.raises(TypeError, match="tie must be a bool, got 'no'"):
        check_bool("tie", "no")
