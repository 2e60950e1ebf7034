"""Spec core/07 items 1 and 5: input noise = Laplacian penalty (linear case), the label-free
output gradient penalty and its Rademacher estimator."""
import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from kexue.regularizers.noise import GaussianNoise, gaussian_noise, output_gradient_penalty


def test_linear_squared_loss_noise_equals_sigma2_norm_w_and_laplacian():
    g = torch.Generator().manual_seed(0)
    d, sigma = 6, 0.3
    w, x, y = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64), 0.7
    xs = gaussian_noise(x.expand(100_000, d), sigma, generator=g)                # [N, d]
    mc = ((xs @ w - y) ** 2).mean()
    exact = (w @ x - y) ** 2 + sigma ** 2 * w.pow(2).sum()
    assert abs(mc / exact - 1) < 0.01
    hess = torch.autograd.functional.hessian(lambda z: (w @ z - y) ** 2, x)       # [d, d]
    torch.testing.assert_close(0.5 * sigma ** 2 * hess.trace(), sigma ** 2 * w.pow(2).sum())


def test_gaussian_noise_modes_and_validation():
    x = torch.zeros(20000)
    assert gaussian_noise(x, 0.5, training=False) is x
    assert abs(gaussian_noise(x, 0.5).std().item() - 0.5) < 0.02
    layer = GaussianNoise(0.5).eval()
    assert layer(x) is x
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise(x, -1.0)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _jac(f, x):
    """Per-sample Jacobians [B, C, D] of f: [B, D] -> [B, C] (reference, via torch.func)."""
    return vmap(jacrev(lambda xi: f(xi[None])[0]))(x)


def test_exact_penalty_matches_jacobian_norms_mse_and_kl():
    f, x = _mlp(), torch.randn(4, 5, dtype=torch.float64)
    J = _jac(f, x)
    ref_mse = J.pow(2).sum((1, 2)).mean()
    torch.testing.assert_close(output_gradient_penalty(f, x, "mse", "exact"), ref_mse)
    p = f(x).softmax(-1)                                                           # [B, C]
    Jlog = _jac(lambda z: f(z).log_softmax(-1), x)
    ref_kl = (p * Jlog.pow(2).sum(-1)).sum(-1).mean()                              # sum_i p_i ||grad log p_i||^2
    torch.testing.assert_close(output_gradient_penalty(f, x, "kl", "exact"), ref_kl)


def test_rademacher_estimator_is_unbiased():
    f, x = _mlp(), torch.randn(16, 5, dtype=torch.float64)
    exact = output_gradient_penalty(f, x, "mse", "exact").item()
    est = output_gradient_penalty(f, x, "mse", "rademacher", n_samples=1000,
                                  generator=torch.Generator().manual_seed(0)).item()
    assert abs(est / exact - 1) < 0.01


def test_noise_consistency_term_is_sigma2_times_penalty():
    # E ||f(x + eps) - f(x)||^2 ~ sigma^2 sum_i ||grad f_i||^2 for small sigma (the article's step 2)
    f, x = _mlp(), torch.randn(8, 5, dtype=torch.float64)
    sigma, g = 1e-3, torch.Generator().manual_seed(1)
    with torch.no_grad():
        xs = gaussian_noise(x.repeat(4000, 1), sigma, generator=g)                 # [4000*B, D]
        mc = (f(xs) - f(x).repeat(4000, 1)).pow(2).sum(-1).mean()
    pen = output_gradient_penalty(f, x, "mse", "exact")
    assert abs(mc / (sigma ** 2 * pen) - 1) < 0.02


def test_penalty_is_differentiable_in_the_parameters():
    x = torch.randn(3, 4, dtype=torch.float64)
    W = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda W: output_gradient_penalty(lambda z: torch.tanh(z @ W), x, "mse", "exact"),
                                    (W,))
    with pytest.raises(ValueError, match="estimator"):
        output_gradient_penalty(lambda z: z, x, estimator="hutch")
