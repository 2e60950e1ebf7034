"""Spec core/12 "How to verify" (https://kexue.fm/archives/6705) and the reparameterisation checks of core/10."""
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from kexue.nn.reparam import (
    GaussianHead, TemperatureSchedule, categorical_kl_to_uniform, exact_discrete_expectation, gumbel_max_sample,
    gumbel_softmax, normal_rsample, reparameterize, sample_gumbel, score_function_surrogate,
)


def test_gumbel_max_matches_softmax_chi_square():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, generator=g)
    n = 10**6
    y = gumbel_max_sample(logits.expand(n, 5), generator=g)
    counts = torch.bincount(y, minlength=5).numpy()
    expected = logits.double().softmax(-1).numpy() * n
    assert stats.chisquare(counts, expected).pvalue > 0.01


def test_gumbel_softmax_argmax_is_gumbel_max_for_every_tau():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 7, generator=g)
    noise = sample_gumbel(logits.shape, generator=g)
    y = gumbel_max_sample(logits, noise=noise)
    for tau in (10.0, 1.0, 0.1, 0.01):
        assert torch.equal(gumbel_softmax(logits, tau, noise=noise).argmax(-1), y)
    assert gumbel_softmax(logits, 1e-3, noise=noise).amax(-1).min() > 0.99  # tau -> 0: one-hot


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_equals_torch_for_same_noise(hard):
    logits = torch.randn(16, 6, requires_grad=True)
    torch.manual_seed(123)
    ref = F.gumbel_softmax(logits, tau=0.5, hard=hard)
    torch.manual_seed(123)
    ours = gumbel_softmax(logits, tau=0.5, hard=hard)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    w = torch.randn(16, 6)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), logits)
    (g_ours,) = torch.autograd.grad((ours * w).sum(), logits)
    torch.testing.assert_close(g_ours, g_ref)


def test_gumbel_softmax_hard_is_one_hot_with_soft_gradient():
    logits = torch.randn(32, 5, requires_grad=True)
    noise = sample_gumbel(logits.shape, generator=torch.Generator().manual_seed(2))
    hard = gumbel_softmax(logits, 0.7, hard=True, noise=noise)
    soft = gumbel_softmax(logits, 0.7, hard=False, noise=noise)
    assert torch.equal(hard.detach(), F.one_hot(soft.argmax(-1), 5).float())
    w = torch.randn(32, 5)
    (gh,) = torch.autograd.grad((hard * w).sum(), logits)
    (gs,) = torch.autograd.grad((soft * w).sum(), logits)
    torch.testing.assert_close(gh, gs)


def test_gumbel_softmax_statistics_match_torch():
    """Same distribution as F.gumbel_softmax with independent noise: mean of the soft samples per class."""
    logits = torch.tensor([0.5, -1.0, 2.0, 0.0])
    n = 200_000
    torch.manual_seed(0)
    ref = F.gumbel_softmax(logits.expand(n, 4), tau=0.5).mean(0)
    ours = gumbel_softmax(logits.expand(n, 4), tau=0.5, generator=torch.Generator().manual_seed(9)).mean(0)
    torch.testing.assert_close(ours, ref, atol=5e-3, rtol=0)


def test_gumbel_softmax_bias_shrinks_with_tau():
    """E[f(y_soft)] differs from the exact expectation at tau = 1 and the gap shrinks as tau -> 0 (linear f)."""
    logits = torch.tensor([1.0, -0.5, 0.3])
    f = torch.tensor([3.0, -2.0, 0.5])
    exact = exact_discrete_expectation(logits, f)
    noise = sample_gumbel((400_000, 3), generator=torch.Generator().manual_seed(3))
    gaps = [abs(float((gumbel_softmax(logits.expand_as(noise), tau, noise=noise) @ f).mean() - exact))
            for tau in (1.0, 0.3, 0.05)]
    assert gaps[0] > 0.05 and gaps[0] > gaps[1] > gaps[2]


def test_score_function_unbiased_and_baseline_reduces_variance():
    """K = 4, fixed f table: mean SF gradient = exact gradient within 3 standard errors; baselines lower the
    variance.  The leave-one-out baseline keeps the mean; a batch mean that includes the sample itself
    shrinks it by exactly (1 - 1/S) (S = samples sharing the baseline), so it is checked against that."""
    torch.manual_seed(4)
    logits = torch.randn(4)
    f = torch.tensor([11.0, 14.0, 8.0, 10.5])  # far from 0: where a baseline matters
    exact = torch.autograd.functional.jacobian(lambda o: exact_discrete_expectation(o, f), logits)
    n, groups = 100_000, 1000  # 1000 groups of 100 samples share a mean baseline
    grads = {}
    for baseline in ("none", "mean", "leave_one_out"):
        o = logits.repeat(groups, n // groups, 1).requires_grad_(True)  # [G, S, K]
        y = gumbel_max_sample(o.detach())
        logp = o.log_softmax(-1).gather(-1, y[..., None]).squeeze(-1)  # [G, S]
        score_function_surrogate(logp, f[y], baseline, dim=1).sum().backward()
        grads[baseline] = o.grad.reshape(n, 4)
    shrink = {"none": 1.0, "mean": 1 - groups / n, "leave_one_out": 1.0}
    for b, gr in grads.items():
        se = gr.std(0) / math.sqrt(n)
        assert ((gr.mean(0) - shrink[b] * exact).abs() <= 3 * se + 1e-6).all(), b
    assert (grads["mean"].var(0) < grads["none"].var(0)).all()
    assert (grads["leave_one_out"].var(0) < grads["none"].var(0)).all()


def test_variance_reparam_4_vs_score_function_30():
    """f(z) = z^2, z ~ N(1, 1): d/dmu estimators 2z (variance 4) and z^2 (z - mu) (variance 30), +-3 %."""
    n = 4_000_000
    mu = torch.ones(n, requires_grad=True)
    z = normal_rsample(mu, std=torch.ones(n), generator=torch.Generator().manual_seed(5))
    (g_rep,) = torch.autograd.grad(z.square().sum(), mu)
    mu2 = torch.ones(n, requires_grad=True)
    logp = torch.distributions.Normal(mu2, 1.0).log_prob(z.detach())
    (g_sf,) = torch.autograd.grad(score_function_surrogate(logp, z.detach().square()).sum(), mu2)
    assert abs(g_rep.double().mean() - 2) < 0.01 and abs(g_sf.double().mean() - 2) < 0.05
    assert abs(g_rep.double().var() / 4 - 1) < 0.03
    assert abs(g_sf.double().var() / 30 - 1) < 0.03


def test_normal_rsample_gradient_equals_torch_rsample():
    mu = torch.randn(8, requires_grad=True)
    std = torch.rand(8).add(0.1).requires_grad_(True)
    torch.manual_seed(6)
    ref = torch.distributions.Normal(mu, std).rsample()
    torch.manual_seed(6)
    eps = torch.randn(8)
    ours = normal_rsample(mu, std=std, noise=eps)
    torch.testing.assert_close(ours, ref)
    w = torch.randn(8)
    torch.testing.assert_close(torch.autograd.grad((ours * w).sum(), (mu, std)),
                               torch.autograd.grad((ref * w).sum(), (mu, std)))


def test_reparameterize_moment_gradients():
    """d/dmu E[z^2] = 2 mu and d/dsigma E[z^2] = 2 sigma through z = mu + exp(logvar / 2) eps (10^5 samples, 1 %)."""
    mu = torch.tensor(0.7, requires_grad=True)
    logvar = torch.tensor(math.log(1.3**2), requires_grad=True)
    torch.manual_seed(7)
    z = reparameterize(mu.expand(100_000), logvar.expand(100_000))
    g_mu, g_lv = torch.autograd.grad(z.square().mean(), (mu, logvar))
    sigma = 1.3
    assert abs(g_mu.item() / (2 * 0.7) - 1) < 0.01
    assert abs((g_lv.item() * 2 / sigma) / (2 * sigma) - 1) < 0.01  # d/dsigma = d/dlogvar * 2 / sigma


def test_gaussian_head_and_logvar_clamp():
    head = GaussianHead(5, 3)
    mu, lv = head(torch.randn(4, 5))
    assert mu.shape == lv.shape == (4, 3)
    z = normal_rsample(torch.zeros(3), logvar=torch.tensor([1e4, -1e4, 0.0]))
    assert torch.isfinite(z).all()


def test_temperature_schedule_closed_form():
    s = TemperatureSchedule(1.0, 0.01, 0.999)
    assert s(0) == 1.0 and abs(s(1000) - (0.01 + 0.99 * 0.999**1000)) < 1e-12
    assert all(s(t) > s(t + 1) > 0.01 for t in range(0, 5000, 500))
    e = TemperatureSchedule(1.0, 0.01, 0.9, per="epoch", steps_per_epoch=100)
    assert e(99) == 1.0 and e(100) == pytest.approx(0.01 + 0.99 * 0.9)
    r = TemperatureSchedule.reaching(0.1, 2000)
    assert r(2000) == pytest.approx(0.1)


def test_categorical_kl_to_uniform_matches_torch():
    logits = torch.randn(10, 6)
    p = torch.distributions.Categorical(logits=logits)
    u = torch.distributions.Categorical(probs=torch.full((6,), 1 / 6))
    torch.testing.assert_close(categorical_kl_to_uniform(logits), torch.distributions.kl_divergence(p, u))


@pytest.mark.parametrize("call, match", [
    (lambda: gumbel_softmax(torch.randn(3), tau=0.0), "tau"),
    (lambda: normal_rsample(torch.zeros(2)), "exactly one"),
    (lambda: TemperatureSchedule(0.01, 1.0), "tau_min"),
    (lambda: score_function_surrogate(torch.zeros(3), torch.zeros(3), "median"), "baseline"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_gaussian_head_clamps_logvar_to_the_documented_range():
    """Issue 8 mutant (GaussianHead without its clamp): with inputs that drive logvar to +-1e4, the head returns
    exactly the documented bounds LOGVAR_RANGE = (-30, 20), so exp(logvar), exp(logvar / 2) and the KL stay
    finite (exp(1e4) = inf in any float type), and in-range values pass unchanged."""
    from kexue.nn.reparam import LOGVAR_RANGE
    from kexue.nn.losses import kl_std_normal
    assert LOGVAR_RANGE == (-30.0, 20.0)
    head = GaussianHead(2, 3)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.zero_()
        head.proj.weight[3:, 0] = torch.tensor([1.0, -1.0, 1e-3])   # logvar rows: +x, -x, x / 1000
    h = torch.tensor([[1e4, 0.0], [-1e4, 0.0], [3.0, 0.0]])
    mu, lv = head(h)
    assert torch.equal(lv[0], torch.tensor([20.0, -30.0, 10.0]))
    assert torch.equal(lv[1], torch.tensor([-30.0, 20.0, -10.0]))
    torch.testing.assert_close(lv[2], torch.tensor([3.0, -3.0, 3e-3]))
    for t in (lv.exp(), (0.5 * lv).exp(), kl_std_normal(mu, lv, reduction="none"), reparameterize(mu, lv)):
        assert torch.isfinite(t).all()
    lv.sum().backward()   # d logvar / d w = h where the clamp is inactive, 0 where it clips
    torch.testing.assert_close(head.proj.weight.grad[3:, 0], torch.tensor([3.0, 3.0, 1e4 - 1e4 + 3.0]))


@pytest.mark.parametrize("args, exc, name", [
    ((0, 2), ValueError, "in_features"), ((3, -1), ValueError, "latent_size"),
    ((3.0, 2), TypeError, "in_features"), ((3, True), TypeError, "latent_size"),
])
def test_gaussian_head_sizes_checked_by_name(args, exc, name):
    with pytest.raises(exc, match=name):
        GaussianHead(*args)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: normal_rsample(torch.zeros(2), std=torch.tensor([1.0, float("nan")])), ValueError, "std"),
    (lambda: normal_rsample(torch.zeros(2), std=torch.tensor([1.0, float("inf")])), ValueError, "std"),
    (lambda: TemperatureSchedule()(float("nan")), ValueError, "step"),
    (lambda: TemperatureSchedule()(-1), ValueError, "step"),
    (lambda: TemperatureSchedule(tau_max=float("inf")), ValueError, "tau_max"),
    (lambda: TemperatureSchedule(per="epoch", steps_per_epoch=2.5), TypeError, "steps_per_epoch"),
    (lambda: gumbel_softmax(torch.zeros(3), hard="yes"), TypeError, "hard"),
])
def test_sampling_arguments_checked_by_name(call, exc, name):
    """A NaN / inf std or a NaN step used to pass NaN samples / temperatures on."""
    with pytest.raises(exc, match=name):
        call()
