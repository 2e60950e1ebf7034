"""VAE / CVAE / iwae_bound / GeneratorAnchor against closed forms (https://kexue.fm/archives/5253, 5716).

The linear-Gaussian model p(z) = N(0, 1), p(x|z) = N(a z + b, s^2) has log p(x) = log N(x; b, a^2 + s^2) and
the exact posterior N(a (x - b) / (s^2 + a^2), s^2 / (s^2 + a^2)); a VAE with hidden_size=None represents it
exactly, so the ELBO, the IWAE bound and log p(x) can be compared with numbers that come from algebra.
"""
import math

import pytest
import torch
from torch import nn

from kexue.models import CVAE, VAE, GeneratorAnchor, iwae_bound

A, B, S2 = 1.5, 0.3, 0.5  # decoder slope, offset, observation variance


def _linear_gaussian(exact_posterior: bool) -> VAE:
    m = VAE(1, 1, hidden_size=None, likelihood="gaussian", obs_logvar=math.log(S2)).double()
    with torch.no_grad():
        m.decoder.weight.fill_(A), m.decoder.bias.fill_(B)
        w = m.head.proj.weight  # [2, 1]: rows mu, logvar
        if exact_posterior:
            c = A / (S2 + A * A)
            w.copy_(torch.tensor([[c], [0.0]], dtype=torch.float64))
            m.head.proj.bias.copy_(torch.tensor([-B * c, math.log(S2 / (S2 + A * A))], dtype=torch.float64))
        else:  # a deliberately wrong posterior
            w.copy_(torch.tensor([[0.2], [0.0]])), m.head.proj.bias.copy_(torch.tensor([0.1, math.log(0.3)]))
    return m


def _log_px(x):
    var = A * A + S2
    return -0.5 * ((x - B) ** 2 / var + math.log(2 * math.pi * var))


def _closed_form_elbo(m, x):
    """E_q[log p(x|z)] - KL(q || p) for the linear-Gaussian model, from q's mean and variance."""
    mu, logvar = m.encode(x)
    var = logvar.exp()
    rec = -0.5 * (((x - A * mu - B) ** 2 + A * A * var) / S2 + math.log(2 * math.pi * S2))
    kl = 0.5 * (mu ** 2 + var - logvar - 1)
    return (rec - kl).squeeze(-1)


X = torch.tensor([[-1.0], [0.0], [0.7], [2.5]], dtype=torch.float64)


def test_monte_carlo_elbo_matches_closed_form_and_stays_below_log_px():
    m = _linear_gaussian(exact_posterior=False)
    g = torch.Generator().manual_seed(0)
    mc = m.elbo(X.repeat(20000, 1), generator=g).view(20000, len(X)).mean(0)  # 20000 draws per x
    exact = _closed_form_elbo(m, X).detach()
    torch.testing.assert_close(mc.detach(), exact, atol=0.02, rtol=0)
    assert (exact < _log_px(X).squeeze(-1) - 1e-3).all()


def test_exact_posterior_makes_elbo_and_every_iwae_equal_log_px():
    m = _linear_gaussian(exact_posterior=True)
    target = _log_px(X).squeeze(-1)
    torch.testing.assert_close(_closed_form_elbo(m, X).detach(), target, atol=1e-10, rtol=0)
    for k in (1, 7, 250):  # every importance weight equals p(x): no variance at all
        torch.testing.assert_close(iwae_bound(m, X, k=k, chunk_size=64).detach(), target, atol=1e-10, rtol=0)


def test_iwae_rises_with_k_towards_log_px():
    m = _linear_gaussian(exact_posterior=False)
    g = torch.Generator().manual_seed(1)
    draws = {k: iwae_bound(m, X.repeat(400, 1), k=k, generator=g).view(400, len(X)).detach() for k in (1, 10, 100)}
    means = {k: d.mean(0) for k, d in draws.items()}
    log_px = _log_px(X).squeeze(-1)
    se = draws[1].std(0) / 20  # k = 1 is the ELBO (with a sampled KL): within 4 standard errors
    assert ((means[1] - _closed_form_elbo(m, X).detach()).abs() < 4 * se).all()
    assert (means[1] < means[10]).all() and (means[10] < means[100]).all() and (means[100] <= log_px + 1e-3).all()
    assert ((log_px - means[100]) < 0.25 * (log_px - means[1])).all()


def test_beta_zero_and_zero_variance_is_the_autoencoder_loss():
    torch.manual_seed(0)
    m = VAE(6, 3, hidden_size=8)
    with torch.no_grad():  # logvar -> -30: sigma ~ 3e-7, z = mu
        m.head.proj.weight[3:].zero_(), m.head.proj.bias[3:].fill_(-30.0)
    x = torch.rand(5, 6)
    out = m.loss(x, beta=0.0)
    mu, _ = m.encode(x)
    ae = nn.functional.binary_cross_entropy_with_logits(m.decode(mu), x, reduction="none").sum(1).mean()
    torch.testing.assert_close(out["loss"], ae, atol=1e-4, rtol=0)


def test_cvae_kl_uses_the_class_mean():
    torch.manual_seed(0)
    m = CVAE(4, 2, num_classes=3, hidden_size=8)
    with torch.no_grad():
        m.prior.means.weight.copy_(torch.tensor([[0.0, 0.0], [3.0, -1.0], [1.0, 1.0]]))
    x, y = torch.rand(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    mu, logvar = m.encode(x)
    kl = 0.5 * ((mu - m.prior.means.weight[y]) ** 2 + logvar.exp() - logvar - 1).sum(1).mean()
    torch.testing.assert_close(m.loss(x, y)["kl"], kl)
    samples = m.sample(5, y=torch.full((5,), 1))
    assert samples.shape == (5, 4) and ((samples >= 0) & (samples <= 1)).all()
    with pytest.raises(ValueError, match="y"):
        m.loss(x)


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"input_size": 0, "latent_size": 2}, ValueError, "input_size"),
    ({"input_size": 4, "latent_size": 2.0}, TypeError, "latent_size"),
    ({"input_size": 4, "latent_size": 2, "likelihood": "poisson"}, ValueError, "likelihood"),
    ({"input_size": 4, "latent_size": 2, "obs_logvar": float("nan")}, ValueError, "obs_logvar"),
])
def test_bad_construction_is_named(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        VAE(**kwargs)


def test_bad_inputs_are_named():
    m = VAE(4, 2, hidden_size=8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.loss(torch.full((2, 4), 2.0))
    with pytest.raises(ValueError, match="input_size=4"):
        m.encode(torch.rand(2, 5))
    with pytest.raises(ValueError, match="k must"):
        iwae_bound(m, torch.rand(2, 4), k=0)
    with pytest.raises(ValueError, match="beta"):
        m.loss(torch.rand(2, 4), beta=-1.0)


def _generator():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))


def test_anchor_is_zero_with_zero_gradient_at_the_snapshot_then_pulls_back():
    g = _generator()
    anchor, z = GeneratorAnchor(g, lam=5.0), torch.randn(32, 2)
    anchor.snapshot(z)
    pen = anchor.penalty(g(z))
    pen.backward()
    assert pen.item() == 0.0 and all((p.grad == 0).all() for p in g.parameters())
    opt = torch.optim.SGD(g.parameters(), lr=0.1)
    opt.zero_grad()
    (-g(z).sum()).backward()  # a step that moves G(z)
    opt.step()
    opt.zero_grad()
    fake = g(z)
    pen = anchor.penalty(fake)
    torch.testing.assert_close(pen, 5.0 * (fake - anchor.anchor).square().mean())
    pen.backward()
    assert sum(p.grad.abs().sum() for p in g.parameters()) > 0


def test_large_lambda_keeps_the_generator_at_its_snapshot():
    moved = {}
    for lam in (0.0, 1e3):
        g = _generator()
        anchor, z = GeneratorAnchor(g, lam=lam), torch.randn(32, 2)
        anchor.snapshot(z)
        opt = torch.optim.Adam(g.parameters(), lr=1e-2)
        for _ in range(200):  # minimise -mean G(z) + penalty: the anchor wins for large lam
            opt.zero_grad()
            fake = g(z)
            (-fake.mean() + anchor.penalty(fake)).backward()
            opt.step()
        moved[lam] = (g(z) - anchor.anchor).abs().max().item()
    assert moved[1e3] < 0.01 < 0.5 < moved[0.0]


def test_anchor_errors_are_named():
    g = _generator()
    with pytest.raises(RuntimeError, match="snapshot"):
        GeneratorAnchor(g).penalty(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="lam"):
        GeneratorAnchor(g, lam=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        GeneratorAnchor(g, reduction="max")
    a = GeneratorAnchor(g)
    a.snapshot(torch.randn(4, 2))
    with pytest.raises(ValueError, match="snapshot shape"):
        a.penalty(torch.zeros(3, 2))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_non_finite_pixels_are_refused_not_passed_on(likelihood):
    m = VAE(4, 2, hidden_size=8, likelihood=likelihood)
    x = torch.rand(2, 4)
    x[1, 3] = float("nan")  # NaN slips past a [0, 1] range check: it must be refused by itself
    with pytest.raises(ValueError, match="x must be finite"):
        m.loss(x)
    with pytest.raises(ValueError, match="x must be finite"):
        iwae_bound(m, x, k=3)
