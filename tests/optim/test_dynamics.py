"""kexue.optim.dynamics against closed forms (spec core/05, https://kexue.fm/archives/5655): the Euler order of
GD, the heavy-ball <-> damped-particle map, the quadratic iteration counts, the exact stationary variance of
noisy SGD / heavy ball, the lr/B trade, and Langevin's Boltzmann density."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from kexue.optim import (HeavyBall, LangevinSGD, effective_lr, gradient_flow, momentum_from_ode, ode_from_momentum,
                         quadratic_stationary_variance, second_order_flow, sgd_temperature)


def _spd(d: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    return q @ torch.diag(torch.linspace(0.5, 3.0, d)) @ q.T


# ---------------------------------------------------------------- GD = Euler for the gradient flow
def test_gradient_flow_rk4_matches_matrix_exponential():
    A, theta0 = _spd(), torch.ones(10)
    t = torch.tensor([0.0, 0.5, 1.0, 2.0])
    flow = gradient_flow(lambda th: A @ th, theta0, t)                          # [4, 10]
    exact = torch.stack([torch.linalg.matrix_exp(-A * ti) @ theta0 for ti in t])
    assert flow.shape == (4, 10)
    torch.testing.assert_close(flow, exact, atol=1e-9, rtol=0)


def _gd_error(A, theta0, gamma, T=2.0):
    theta = theta0.clone()
    err = 0.0
    for n in range(1, round(T / gamma) + 1):
        theta = theta - gamma * A @ theta
        err = max(err, float((theta - torch.linalg.matrix_exp(-A * n * gamma) @ theta0).abs().max()))
    return err


def test_gd_is_euler_first_order():
    """GD iterates at n = t/γ vs the flow: halving γ halves the max error (within 10 %)."""
    A, theta0 = _spd(), torch.ones(10)
    e1, e2 = _gd_error(A, theta0, 0.02), _gd_error(A, theta0, 0.01)
    assert e1 / e2 == pytest.approx(2.0, rel=0.1)


def test_gradient_flow_euler_with_one_substep_is_gd():
    A, theta0, gamma = _spd(), torch.ones(10), 0.05
    t = gamma * torch.arange(1, 6, dtype=torch.float64)
    flow = gradient_flow(lambda th: A @ th, theta0, t, method="euler", substeps=1)
    theta, gd = theta0.clone(), []
    for _ in range(5):
        theta = theta - gamma * A @ theta
        gd.append(theta)
    torch.testing.assert_close(flow, torch.stack(gd), atol=1e-14, rtol=0)


# ---------------------------------------------------------------- momentum = damped particle
def test_momentum_ode_maps_are_inverse():
    lr, beta = momentum_from_ode(0.1, 2.0)
    assert (lr, beta) == pytest.approx((0.01, 0.8))
    assert ode_from_momentum(lr, beta) == pytest.approx((0.1, 2.0))
    assert effective_lr(0.01, 0.9) == pytest.approx(0.1)


def _run(opt, x, grad_fn, steps):
    out = []
    for _ in range(steps):
        x.grad = grad_fn(x.detach())
        opt.step()
        out.append(x.detach().clone())
    return torch.stack(out)


def test_heavy_ball_from_ode_equals_torch_sgd():
    A = _spd()
    x1, x2 = torch.ones(10, requires_grad=True), torch.ones(10, requires_grad=True)
    hb = HeavyBall.from_ode([x1], h=0.1, friction=3.0)
    sgd = torch.optim.SGD([x2], lr=0.1 ** 2, momentum=1 - 3.0 * 0.1)
    assert torch.equal(_run(hb, x1, lambda th: A @ th, 50), _run(sgd, x2, lambda th: A @ th, 50))
    assert hb.ode == pytest.approx((0.1, 3.0))


def _hb_vs_flow_error(A, h, friction=2.0, T=3.0):
    theta0 = torch.ones(10)
    x = theta0.clone().requires_grad_()
    n = round(T / h)
    iterates = _run(HeavyBall.from_ode([x], h, friction), x, lambda th: A @ th, n)    # θ_1 .. θ_n
    # the torch buffer starts at g_0, i.e. v(0) = -h ∇L(θ_0) ≈ 0: compare with the particle at rest
    flow = second_order_flow(lambda th: A @ th, theta0, torch.zeros(10), friction,
                             h * torch.arange(1, n + 1, dtype=torch.float64), substeps=4)
    return float((iterates - flow).abs().max())


def test_heavy_ball_follows_second_order_flow_with_first_order_error():
    A = _spd()
    e1, e2 = _hb_vs_flow_error(A, 0.02), _hb_vs_flow_error(A, 0.01)
    assert e2 < 0.05
    assert e1 / e2 == pytest.approx(2.0, rel=0.15)


def _iterations(opt_fn, A, x0, tol=1e-6, iters=5000):
    x = x0.clone().requires_grad_()
    opt = opt_fn([x])
    for t in range(iters):
        if x.detach().norm() < tol * x0.norm():
            return t
        x.grad = A @ x.detach()
        opt.step()
    return iters


def test_quadratic_iteration_counts_match_the_spec():
    """κ = 100, 50-d diagonal, until ‖θ‖ < 1e-6‖θ0‖: GD 611, heavy ball 85, Nesterov 139 (spec's numpy check)."""
    L, mu = 100.0, 1.0
    A, x0, k = torch.diag(torch.linspace(mu, L, 50)), torch.ones(50), L / mu
    r = (math.sqrt(k) - 1) / (math.sqrt(k) + 1)
    assert _iterations(lambda p: torch.optim.SGD(p, lr=2 / (L + mu)), A, x0) == 611
    assert _iterations(lambda p: HeavyBall(p, lr=4 / (math.sqrt(L) + math.sqrt(mu)) ** 2, momentum=r * r), A, x0) == 85
    # torch's nesterov tracks the look-ahead sequence, shifted by one step from the textbook x_n
    nag = _iterations(lambda p: HeavyBall(p, lr=1 / L, momentum=r, nesterov=True), A, x0)
    assert abs(nag - 139) <= 1


# ---------------------------------------------------------------- SGD noise: temperature lr/B
def _stationary_var(lr, curvature, noise_std, momentum=0.0, chains=2000, steps=3000, burn=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(chains, requires_grad=True)
    opt = torch.optim.SGD([x], lr=lr, momentum=momentum)
    acc, n = 0.0, 0
    for t in range(steps):
        x.grad = curvature * x.detach() + noise_std * torch.randn(chains, generator=g)
        opt.step()
        if t >= burn:
            acc += float(x.detach().square().mean())
            n += 1
    return acc / n


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_stationary_variance_matches_the_exact_discrete_formula(momentum):
    lr, lam, s = 0.1, 1.0, 1.0
    measured = _stationary_var(lr, lam, s, momentum)
    assert measured == pytest.approx(quadratic_stationary_variance(lr, lam, s * s, momentum), rel=0.02)


def test_stationary_variance_tends_to_temperature_over_curvature():
    for beta in (0.0, 0.9):
        ratio = quadratic_stationary_variance(1e-6, 2.0, 3.0, beta) * 2.0 / sgd_temperature(1e-6, 1, 3.0, beta)
        assert ratio == pytest.approx(1.0, abs=1e-5)


def test_batch_lr_trade_same_stationary_variance():
    """B = 64 at lr η vs B = 32 at lr η/2: the same temperature, the same variance (ηλ = 0.01, within 5 %)."""
    lr, lam, sigma = 0.01, 1.0, 4.0
    assert sgd_temperature(lr, 64, sigma ** 2) == sgd_temperature(lr / 2, 32, sigma ** 2)
    v64 = _stationary_var(lr, lam, sigma / 8, chains=4000, steps=2000, burn=500, seed=1)
    v32 = _stationary_var(lr / 2, lam, sigma / math.sqrt(32), chains=4000, steps=3000, burn=1000, seed=2)
    assert v64 / v32 == pytest.approx(1.0, rel=0.05)


# ---------------------------------------------------------------- Langevin
def test_langevin_double_well_is_boltzmann():
    """L = (θ² − 1)², T = 0.5, lr 1e-3: the chains' positions follow ∝ exp(−L/T) (KS p > 0.01)."""
    T, chains = 0.5, 4000
    x = torch.where(torch.arange(chains) % 2 == 0, 1.0, -1.0).requires_grad_()
    opt = LangevinSGD(torch.optim.SGD([x], lr=1e-3), temperature=T, seed=0)
    for _ in range(4000):
        x.grad = 4 * x.detach() * (x.detach().square() - 1)
        opt.step()
    density = lambda u: math.exp(-((u * u - 1) ** 2) / T)
    z = integrate.quad(density, -4, 4)[0]
    cdf = lambda v: integrate.quad(density, -4, min(max(v, -4), 4))[0] / z
    sample = x.detach().numpy()
    grid = sorted(sample)
    table = {v: cdf(v) for v in grid[::40]}               # interpolate the CDF on a grid of the sample
    keys = sorted(table)
    p = stats.kstest(sample, lambda v: np.interp(v, keys, [table[k] for k in keys])).pvalue
    assert p > 0.01


def test_langevin_seeded_repeatable_and_zero_temperature_is_inner():
    def run(temperature, seed):
        x = torch.ones(5, requires_grad=True)
        opt = LangevinSGD(torch.optim.SGD([x], lr=0.1), temperature=temperature, seed=seed)
        return _run(opt, x, lambda th: th, 10)
    assert torch.equal(run(0.3, 7), run(0.3, 7))
    assert not torch.equal(run(0.3, 7), run(0.3, 8))
    x = torch.ones(5, requires_grad=True)
    assert torch.equal(run(0.0, 1), _run(torch.optim.SGD([x], lr=0.1), x, lambda th: th, 10))


def test_langevin_leaves_parameters_without_gradient_alone():
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = LangevinSGD(torch.optim.SGD([a, b], lr=0.1), temperature=1.0, seed=0)
    a.grad = torch.zeros(3)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3)) and not torch.equal(a.detach(), torch.ones(3))


# ---------------------------------------------------------------- bad input: clear errors
@pytest.mark.parametrize("call, match", [
    (lambda: momentum_from_ode(0.0, 1.0), "h must be"),
    (lambda: momentum_from_ode(0.5, 3.0), "friction \\* h must be <= 1"),
    (lambda: momentum_from_ode(0.1, float("nan")), "friction must be"),
    (lambda: ode_from_momentum(0.01, 1.5), "momentum must be"),
    (lambda: effective_lr(0.1, 1.0), "momentum must be"),
    (lambda: sgd_temperature(0.1, 0, 1.0), "batch_size must be"),
    (lambda: sgd_temperature(0.1, 2.0, 1.0), "batch_size must be an int"),
    (lambda: sgd_temperature(0.1, 2, -1.0), "grad_noise_var must be"),
    (lambda: quadratic_stationary_variance(3.0, 1.0, 1.0), "lr \\* curvature must be < 2"),
    (lambda: gradient_flow(lambda t: t, torch.ones(2), torch.tensor([1.0, 0.5])), "non-decreasing"),
    (lambda: gradient_flow(lambda t: t, torch.ones(2), torch.tensor([1.0]), method="rk45"), "method must be"),
    (lambda: second_order_flow(lambda t: t, torch.ones(2), torch.ones(3), 1.0, torch.tensor([1.0])), "v0 must"),
    (lambda: LangevinSGD(torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=0.1), -1.0), "temperature"),
    (lambda: HeavyBall.from_ode([torch.ones(1, requires_grad=True)], 0.1, 1.0, nesterov="yes"), "nesterov"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_tiny_or_huge_h_is_refused_not_rounded():
    """h = 1e-200 would give lr = 0.0 and h = 1e200 lr = inf: both refused, naming h."""
    for h in (1e-200, 1e200):
        with pytest.raises(ValueError, match="h must have a finite, non-zero square"):
            momentum_from_ode(h, 0.0)


def test_langevin_overflowing_noise_is_refused_before_any_change():
    x = torch.ones(2, dtype=torch.float32, requires_grad=True)
    opt = LangevinSGD(torch.optim.SGD([x], lr=0.1), temperature=1e78, seed=0)
    x.grad = torch.ones(2, dtype=torch.float32)
    with pytest.raises(ValueError, match="temperature"):
        opt.step()
    assert torch.equal(x.detach(), torch.ones(2, dtype=torch.float32))
