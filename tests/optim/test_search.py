"""Sampling-based parameter search (spec core/06, https://kexue.fm/archives/7521; 0-1 toy numbers from
specs/checks/samp.py)."""
import math

import pytest
import torch
from scipy import integrate

from kexue.optim.search import ParamSpaceSearch, effective_sample_size, importance_weights, sampled_update


def _quadratic(seed=0, d=5):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    H = Q @ torch.diag(torch.linspace(1.0, 10.0, d, dtype=torch.float64)) @ Q.T  # SPD, cond 10
    b = torch.randn(d, generator=g, dtype=torch.float64)
    theta = torch.randn(d, generator=g, dtype=torch.float64) * 0.3
    return H, b, theta, g


@pytest.mark.parametrize("alpha", [0.01, 0.1, 1.0])
def test_newton_limit_of_the_sampled_step(alpha):
    """Quadratic loss (5-d, cond 10), flat base: the target N(-H^-1 g, alpha H^-1) has the Newton step as its
    mean whatever alpha.  Proposal N(0, s^2 I) with s = 3 x the target's largest scale sqrt(alpha / lambda_min);
    theta is placed 2 target scales from the optimum so that the proposal covers the target (a zero-centred
    proposal cannot reach a Newton step many scales away).  m = 10^6 (20 000 leaves an ESS of ~20 here)."""
    H, b, _, g = _quadratic()
    scale = math.sqrt(alpha / 1.0)  # lambda_min = 1
    direction = torch.nn.functional.normalize(torch.randn(5, generator=g, dtype=torch.float64), dim=0)
    theta = -torch.linalg.solve(H, b) + 2 * scale * direction
    grad = H @ theta + b
    newton = -torch.linalg.solve(H, grad)
    d = 3 * scale * torch.randn(1_000_000, 5, generator=g, dtype=torch.float64)
    dl = d @ grad + 0.5 * ((d @ H) * d).sum(1)
    w = importance_weights(dl, -0.5 * (d / (3 * scale)).square().sum(1), alpha)
    assert (w @ d - newton).norm() / newton.norm() < 0.05


def test_gradient_descent_limit_with_gaussian_base():
    """Linear loss g.d with base N(0, s0^2 I): target N(-(s0^2 / alpha) g, s0^2 I), i.e. GD with lr s0^2 / alpha."""
    g = torch.Generator().manual_seed(1)
    grad = torch.randn(5, generator=g, dtype=torch.float64)
    s0, alpha = 0.3, 0.5
    expected = -(s0**2 / alpha) * grad
    sigma = 0.6
    d = sigma * torch.randn(1_000_000, 5, generator=g, dtype=torch.float64)
    w = importance_weights(d @ grad, -0.5 * (d / sigma).square().sum(1), alpha, -0.5 * (d / s0).square().sum(1))
    assert ((w @ d) - expected).norm() / expected.norm() < 0.05


def test_nonsmooth_1d_matches_quadrature_and_error_shrinks_like_inverse_sqrt_m():
    """l(theta) = |theta - 1| at theta = 0 on the box [-eps, eps], flat base, uniform proposal."""
    eps, alpha = 2.0, 0.5

    def dl(x):
        return torch.abs(x - 1) - 1.0

    num = integrate.quad(lambda x: x * math.exp(-(abs(x - 1) - 1) / alpha), -eps, eps, points=[1])[0]
    den = integrate.quad(lambda x: math.exp(-(abs(x - 1) - 1) / alpha), -eps, eps, points=[1])[0]
    exact = num / den
    g = torch.Generator().manual_seed(2)
    rms = {}
    for m in (400, 6400):
        x = (torch.rand(300, m, generator=g, dtype=torch.float64) * 2 - 1) * eps  # 300 repeats
        logw = -dl(x) / alpha
        est = (torch.softmax(logw, 1) * x).sum(1)
        w0 = importance_weights(dl(x[0]), torch.zeros(m, dtype=torch.float64), alpha)
        torch.testing.assert_close(w0 @ x[0], est[0])
        rms[m] = (est - exact).square().mean().sqrt().item()
    assert rms[6400] < 0.02
    assert 2.5 < rms[400] / rms[6400] < 6.5  # sqrt(16) = 4


def test_alpha_to_zero_is_random_search_and_never_increases_the_loss():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(6, generator=g)
    p = torch.nn.Parameter(torch.zeros(6))

    def task_loss():  # non-differentiable: count of coordinates off by more than 0.5
        return float(((p.detach() - target).abs() > 0.5).sum() + (p.detach() - target).abs().sum() * 1e-3)

    opt = ParamSpaceSearch([p], num_samples=16, alpha=1e-9, sigma=0.5, generator=g)
    losses = [task_loss()]
    for _ in range(30):
        info = opt.step(task_loss)
        best = int(torch.argmax(info["weights"]))
        assert info["weights"][best] > 1 - 1e-9
        assert info["best_delta_loss"] <= 0
        losses.append(task_loss())
    assert all(b <= a + 1e-12 for a, b in zip(losses, losses[1:]))
    assert losses[-1] < losses[0]


def test_weights_invariances_and_ess_range():
    g = torch.Generator().manual_seed(4)
    dl, lq = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    w = importance_weights(dl, lq, 0.3)
    torch.testing.assert_close(importance_weights(dl + 123.0, lq, 0.3), w)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert 1 <= effective_sample_size(w) <= 50
    assert effective_sample_size(torch.full((50,), 1 / 50, dtype=torch.float64)) == pytest.approx(50)
    huge = importance_weights(torch.tensor([0.0, 1e4, -1e4]), torch.zeros(3), 1.0)  # dl / alpha up to 1e4
    assert torch.isfinite(huge).all() and huge[2] == 1.0


def test_step_moves_exactly_by_weighted_deltas_and_restores_between_candidates():
    torch.manual_seed(5)
    model = torch.nn.Linear(3, 2)
    x = torch.randn(20, 3)
    seen = []

    def task_loss():
        seen.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
        return float((model(x) > 0).float().mean())

    torch.nn.functional.mse_loss(model(x), torch.zeros(20, 2)).backward()  # surrogate gradient in p.grad
    theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    opt = ParamSpaceSearch(model.parameters(), num_samples=8, alpha="auto", sigma=0.1, eta=0.5,
                           generator=torch.Generator().manual_seed(0))
    info = opt.step(task_loss)
    expected = (theta.double() + (info["weights"][:, None] * info["deltas"]).sum(0)).to(theta.dtype)
    assert torch.equal(torch.nn.utils.parameters_to_vector(model.parameters()).detach(), expected)
    assert torch.equal(seen[0], theta)  # l(theta) first, at the untouched parameters
    for s, d in zip(seen[1:], info["deltas"]):
        assert torch.equal(s, (theta.double() + d).to(theta.dtype))
    assert 1 <= info["ess"] <= 9 and info["alpha"] > 0


def test_sampled_update_equals_one_optimizer_step():
    X, y = torch.randn(30, 3), (torch.rand(30) > 0.5).double()

    def make():
        torch.manual_seed(12)
        return torch.nn.Linear(3, 1)

    def task(m, batch):
        with torch.no_grad():
            return ((m(batch[0]).squeeze(1) > 0).double() != batch[1]).double().mean()

    def surrogate(m, batch):
        return torch.nn.functional.binary_cross_entropy_with_logits(m(batch[0]).squeeze(1), batch[1])

    a, b = make(), make()
    theta = torch.nn.utils.parameters_to_vector(a.parameters()).detach().clone()
    step = sampled_update(a, task, (X, y), surrogate, num_samples=16, sigma=0.1, alpha=0.01,
                          generator=torch.Generator().manual_seed(3))
    surrogate(b, (X, y)).backward()
    ParamSpaceSearch(b.parameters(), num_samples=16, sigma=0.1, alpha=0.01,
                     generator=torch.Generator().manual_seed(3)).step(lambda: task(b, (X, y)))
    vec_a = torch.nn.utils.parameters_to_vector(a.parameters()).detach()
    assert torch.equal(vec_a, torch.nn.utils.parameters_to_vector(b.parameters()).detach())
    torch.testing.assert_close(step, (vec_a - theta).double())
    assert all(p.grad is None for p in a.parameters())


def _toy(seed=0):
    """Two Gaussian classes plus 40 class-1 outliers on the class-0 side (samp.py)."""
    g = torch.Generator().manual_seed(seed)
    n = 500
    x0 = torch.tensor([-1.0, 0.0]) + 0.7 * torch.randn(n, 2, generator=g)
    x1 = torch.tensor([1.0, 0.0]) + 0.7 * torch.randn(n, 2, generator=g)
    xo = torch.tensor([-8.0, 6.0]) + 0.3 * torch.randn(40, 2, generator=g)
    X = torch.cat([x0, x1, xo])
    y = torch.cat([torch.zeros(n), torch.ones(n + 40)])
    return X, y, g


def _zero_one_search(seed, steps=400):
    X, y, g = _toy(seed)
    model = torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)

    def zero_one():
        with torch.no_grad():
            return ((model(X).squeeze(1) > 0).float() != y).float().mean().item()

    opt = ParamSpaceSearch(model.parameters(), num_samples=64, alpha=0.002, sigma=0.05, eta=0.5, mix=0.5,
                           include_zero_candidate=False, generator=g)
    for _ in range(steps):
        model.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(1), y).backward()  # surrogate
        opt.step(zero_one)
    return zero_one()


def test_cross_entropy_training_is_dragged_by_outliers():
    X, y, _ = _toy(0)
    model = torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():  # the CE optimum (samp.py reaches it with 3000 GD steps)
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(X).squeeze(1), y)
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        err = ((model(X).squeeze(1) > 0).float() != y).float().mean().item()
    assert err >= 0.19


def test_zero_one_loss_search_beats_cross_entropy():
    """samp.py: CE-trained 0.202, sampling search on the 0-1 loss from zero init 0.104 (spec target <= 0.12,
    held over 5 seeds by the slow test below). Measured over seeds 0-4 x ATEN_CPU_CAPABILITY in {default, avx2,
    avx512}: 0.103 to 0.116 (seed 0: 0.1115 on all three; the SIMD level moves a seed by up to 0.004), so a
    single run is checked at 0.15, well above the worst seed and well below the cross-entropy optimum (>= 0.19)."""
    assert _zero_one_search(0) <= 0.15


@pytest.mark.slow
def test_zero_one_loss_search_five_seeds():
    """Spec target over 5 seeds: mean 0-1 error <= 0.12 (seed 1's data sits at 0.123, so each seed <= 0.13)."""
    errs = [_zero_one_search(seed) for seed in range(5)]
    assert sum(errs) / 5 <= 0.12 and max(errs) <= 0.13


@pytest.mark.parametrize("kw, match", [
    (dict(num_samples=0), "num_samples"),
    (dict(alpha=0.0), "alpha"),
    (dict(sigma=-1.0), "sigma"),
    (dict(num_samples=3, antithetic=True), "even"),
])
def test_bad_input_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        ParamSpaceSearch([torch.nn.Parameter(torch.zeros(2))], **kw)
