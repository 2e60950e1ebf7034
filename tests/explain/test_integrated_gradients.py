"""integrated_gradients: closed forms, saturation, dummy features, batching and captum parity
(spec nlp/12, https://kexue.fm/archives/7533)."""
import pytest
import torch
from captum.attr import IntegratedGradients

from kexue.explain import METHODS, integrated_gradients, quadrature

RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def _mlp(D=5, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    w1, w2 = torch.randn(D, 8, generator=g, dtype=torch.float64), torch.randn(8, C, generator=g, dtype=torch.float64)
    return lambda x: (torch.tanh(x @ w1) @ w2).softmax(-1)                 # [R, D] -> [R, C]


@pytest.mark.parametrize("method", RULES)
def test_linear_function_is_exact_for_every_rule(method):
    g = torch.Generator().manual_seed(1)
    w, x, base = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((5,), (3, 5), (3, 5)))
    for n in (2, 7):
        attr, delta = integrated_gradients(lambda z: z @ w, x, base, n_steps=n, method=method)
        torch.testing.assert_close(attr, w * (x - base), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(delta, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["riemann_middle", "riemann_trapezoid", "gausslegendre"])
def test_quadratic_closed_form(method):
    """F = Σ a_i x_i², x' = 0: the integrand 2 a_i α x_i is linear in α, so IG_i = a_i x_i² exactly."""
    a = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.2, 2.0, 0.7]], dtype=torch.float64)
    attr, delta = integrated_gradients(lambda z: (a * z ** 2).sum(-1), x, n_steps=4, method=method)
    torch.testing.assert_close(attr, a * x ** 2, rtol=1e-12, atol=1e-12)
    assert abs(float(delta)) < 1e-12


def test_saturation_gradient_misses_what_ig_catches():
    """F(x) = 1 - ReLU(1 - x) at x = 2, baseline 0 (the IG paper): gradient 0, IG = F(2) - F(0) = 1."""
    f = lambda z: 1 - torch.relu(1 - z[:, 0])                                # noqa: E731
    x = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(f(x).sum(), x)
    assert float(grad) == 0.0
    attr, delta = integrated_gradients(f, x.detach(), n_steps=50, method="riemann_middle")
    assert abs(float(attr) - 1.0) < 1e-12 and abs(float(delta)) < 1e-12


def test_dummy_feature_gets_exactly_zero():
    f = _mlp(D=3)
    fn = lambda z: f(z[:, :3])                                               # noqa: E731  ignores z[:, 3:]
    x = torch.randn(4, 5, dtype=torch.float64)
    attr, _ = integrated_gradients(fn, x, target=1)
    assert torch.equal(attr[:, 3:], torch.zeros(4, 2, dtype=torch.float64))
    const, delta = integrated_gradients(lambda z: torch.ones(z.shape[0]), x)
    assert torch.equal(const, torch.zeros_like(x)) and torch.equal(delta, torch.zeros(4, dtype=torch.float64))


def test_internal_batch_size_does_not_change_the_result():
    f, x = _mlp(), torch.randn(3, 5, dtype=torch.float64)
    ref, dref = integrated_gradients(f, x, 0.1, target=torch.tensor([0, 2, 1]), n_steps=20)
    for ibs in (1, 3, 7, 1000):
        attr, delta = integrated_gradients(f, x, 0.1, target=torch.tensor([0, 2, 1]), n_steps=20,
                                           internal_batch_size=ibs)
        torch.testing.assert_close(attr, ref, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(delta, dref, rtol=1e-12, atol=1e-14)


def test_per_example_targets_equal_separate_runs():
    f, x = _mlp(), torch.randn(3, 5, dtype=torch.float64)
    t = torch.tensor([2, 0, 1])
    attr, _ = integrated_gradients(f, x, target=t, n_steps=10)
    for b in range(3):
        single, _ = integrated_gradients(f, x[b:b + 1], target=int(t[b]), n_steps=10)
        torch.testing.assert_close(attr[b:b + 1], single, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle", "gausslegendre"])
def test_matches_captum_integrated_gradients(method):
    f, x = _mlp(), torch.randn(4, 5, dtype=torch.float64)
    base, target = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    ours, delta = integrated_gradients(f, x, base, target, n_steps=25, method=method)
    theirs, cdelta = IntegratedGradients(f).attribute(x, base, target=target, n_steps=25, method=method,
                                                      return_convergence_delta=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(delta, cdelta, rtol=1e-4, atol=1e-6)   # both ~1e-9 for Gauss-Legendre


def test_trapezoid_is_the_true_rule_where_captum_underweights():
    """captum 0.9's riemann_trapezoid weights n nodes by 1/n with halved ends (they sum to (n-1)/n): ours is
    its attribution times n/(n-1), and only ours is exact for a linear F."""
    f, x, n = _mlp(), torch.randn(2, 5, dtype=torch.float64), 10
    ours, _ = integrated_gradients(f, x, target=1, n_steps=n, method="riemann_trapezoid")
    theirs = IntegratedGradients(f).attribute(x, target=1, n_steps=n, method="riemann_trapezoid")
    torch.testing.assert_close(ours, theirs * n / (n - 1), rtol=1e-4, atol=1e-10)
    w = torch.randn(5, dtype=torch.float64)
    lin = IntegratedGradients(lambda z: z @ w).attribute(x, n_steps=n, method="riemann_trapezoid")
    torch.testing.assert_close(lin, w * x * (n - 1) / n, rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("method", RULES)
def test_quadrature_weights_integrate_polynomials(method):
    n = 8
    alphas, weights = quadrature(method, n)
    assert alphas.shape == weights.shape == (n,) and bool(((alphas >= 0) & (alphas <= 1)).all())
    assert abs(float(weights.sum()) - 1.0) < 1e-12
    exact_degree = {"gausslegendre": 2 * n - 1, "riemann_middle": 1, "riemann_trapezoid": 1}.get(method, 0)
    for d in range(exact_degree + 1):
        assert abs(float((weights * alphas ** d).sum()) - 1 / (d + 1)) < 1e-12
    assert quadrature("gauss_legendre", n)[0].equal(quadrature("gausslegendre", n)[0])


def test_demo_compatible_breaks_completeness_by_the_closed_form():
    """The author's demo averages grad * α x over α_k = k/(n-1): for a linear F that is half of w ⊙ x."""
    w, x = torch.randn(5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    attr, delta = integrated_gradients(lambda z: z @ w, x, n_steps=20, demo_compatible=True)
    torch.testing.assert_close(attr, 0.5 * w * x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(delta, -0.5 * (x @ w), rtol=1e-12, atol=1e-12)


def test_bad_input_is_rejected_with_a_named_argument():
    f, x = _mlp(), torch.randn(2, 5, dtype=torch.float64)
    cases = [
        (dict(method="simpson"), ValueError, "method"),
        (dict(n_steps=0), ValueError, "n_steps"),
        (dict(n_steps=1, method="riemann_trapezoid"), ValueError, "n_steps"),
        (dict(baseline=torch.zeros(3)), ValueError, "baseline"),
        (dict(), ValueError, "target is required"),
        (dict(target=3), ValueError, "target"),
        (dict(target=1.5), TypeError, "target"),
        (dict(target=0, internal_batch_size=0), ValueError, "internal_batch_size"),
    ]
    for kwargs, exc, words in cases:
        with pytest.raises(exc, match=words):
            integrated_gradients(f, x, **kwargs)
    with pytest.raises(TypeError, match="inputs"):
        integrated_gradients(f, torch.ones(2, 5, dtype=torch.long), target=0)
    with pytest.raises(ValueError, match="non-finite|not finite"):
        integrated_gradients(lambda z: z.sum(-1) * float("nan"), x)
    with pytest.raises(ValueError, match="rows"):
        integrated_gradients(lambda z: z.sum(), x)
    assert set(RULES) == set(METHODS)
