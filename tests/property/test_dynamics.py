"""Property tests of kexue.optim.dynamics (https://kexue.fm/archives/5655): any numbers give a finite result that
satisfies the closed forms, or a clear error naming the argument."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kexue.optim import (LangevinSGD, effective_lr, momentum_from_ode, ode_from_momentum,
                         quadratic_stationary_variance, sgd_temperature)
from tests.property.clear_error import assert_finite, valid_or_clear_error

ANY = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans(),
                st.sampled_from(["1", None]))


@pytest.mark.timeout(30)
@given(h=ANY, friction=ANY)
def test_momentum_from_ode_round_trip_or_clear_error(h, friction):
    with valid_or_clear_error("h", "friction"):
        lr, beta = momentum_from_ode(h, friction)
        assert_finite(lr, beta)
        assert 0.0 <= beta <= 1.0 and lr > 0
        if lr > 1e-150:
            h2, f2 = ode_from_momentum(lr, beta)
            assert h2 == pytest.approx(h, rel=1e-9) and f2 == pytest.approx(friction, rel=1e-6, abs=1e-6 / h)


@pytest.mark.timeout(30)
@given(lr=ANY, batch=ANY, var=ANY, beta=ANY)
def test_temperature_is_finite_nonnegative_or_clear_error(lr, batch, var, beta):
    with valid_or_clear_error("lr", "batch_size", "grad_noise_var", "momentum"):
        t = sgd_temperature(lr, batch, var, beta)
        assert_finite(t)
        assert t >= 0
        assert t == pytest.approx(effective_lr(lr, beta) * var / (2 * batch), rel=1e-12)


@pytest.mark.timeout(30)
@given(lr=ANY, curvature=ANY, var=ANY, beta=ANY)
def test_stationary_variance_finite_and_above_small_lr_limit_or_clear_error(lr, curvature, var, beta):
    with valid_or_clear_error("lr", "curvature", "noise_var", "momentum"):
        v = quadratic_stationary_variance(lr, curvature, var, beta)
        assert_finite(v)
        # the discrete variance is never below T/λ (the denominators 2 - ηλ, 2(1+β) - ηλ are below 2, 2(1+β))
        limit = sgd_temperature(lr, 1, var, beta) / curvature
        if math.isfinite(limit):
            assert v >= limit * (1 - 1e-12)


@pytest.mark.timeout(30)
@given(temperature=ANY, seed=st.one_of(st.none(), st.integers(-3, 3), st.floats(0, 2)))
def test_langevin_constructor_clear_error(temperature, seed):
    with valid_or_clear_error("temperature", "seed"):
        x = torch.ones(2, requires_grad=True)
        opt = LangevinSGD(torch.optim.SGD([x], lr=0.1), temperature, seed=seed)
        x.grad = torch.ones(2)
        opt.step()
        assert_finite(x.detach())
