"""kexue.models' generative models (VAE, CVAE, iwae_bound, GeneratorAnchor, VQAutoencoder, CodePrior) on
generated arguments and inputs: every outcome is a valid, finite result or a clear error naming the argument."""
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from kexue.models import CVAE, VAE, CodePrior, GeneratorAnchor, VQAutoencoder, iwae_bound
from tests.property.clear_error import assert_finite, valid_or_clear_error

SIZE = st.one_of(*[st.integers(1, 6)] * 3, st.sampled_from([0, -2, 2.0, True, "3", None]))
REAL = st.one_of(*[st.floats(-3, 3)] * 3, st.sampled_from([float("nan"), float("inf"), -40.0, True, "1"]))
PIXEL = st.one_of(*[st.floats(0, 1)] * 4, st.sampled_from([float("nan"), float("inf"), -0.5, 1.5]))


@pytest.mark.timeout(60)
@given(input_size=SIZE, latent_size=SIZE, hidden_size=st.one_of(SIZE, st.none()),
       likelihood=st.sampled_from(["bernoulli", "gaussian", "poisson"]), obs_logvar=REAL)
def test_vae_construction(input_size, latent_size, hidden_size, likelihood, obs_logvar):
    with valid_or_clear_error("input_size", "latent_size", "hidden_size", "likelihood", "obs_logvar"):
        m = VAE(input_size, latent_size, hidden_size, likelihood, obs_logvar)
        assert m.latent_size == latent_size


@pytest.mark.timeout(60)
@given(pixels=st.lists(PIXEL, min_size=8, max_size=8), likelihood=st.sampled_from(["bernoulli", "gaussian"]),
       k=st.one_of(st.integers(1, 20), st.sampled_from([0, -1, 2.5, None])), batch=st.integers(0, 2))
def test_vae_losses_on_generated_pixels(pixels, likelihood, k, batch):
    torch.manual_seed(0)
    m = VAE(4, 2, hidden_size=8, likelihood=likelihood)
    x = torch.tensor(pixels).view(2, 4)[:batch]
    with valid_or_clear_error("x", "k"):
        out = m.loss(x)
        bound = iwae_bound(m, x, k=k)
        if batch:
            assert_finite(out["loss"], bound, m.elbo(x))


@pytest.mark.timeout(60)
@given(y=st.lists(st.integers(-2, 4), min_size=0, max_size=3), n_y=st.integers(0, 4))
def test_cvae_class_ids(y, n_y):
    torch.manual_seed(0)
    m = CVAE(4, 2, num_classes=3, hidden_size=8)
    x = torch.rand(len(y), 4)
    with valid_or_clear_error("y", "class ids"):
        out = m.loss(x, torch.tensor(y, dtype=torch.long))
        if y:
            assert_finite(out["loss"])
    with valid_or_clear_error("y", "class ids", "n"):
        s = m.sample(n_y, y=torch.tensor(y, dtype=torch.long))
        assert s.shape == (n_y, 4) and len(y) == n_y


@pytest.mark.timeout(60)
@given(lam=REAL, reduction=st.sampled_from(["mean", "sum", "max"]), rows=st.integers(1, 4))
def test_generator_anchor(lam, reduction, rows):
    torch.manual_seed(0)
    gen = torch.nn.Linear(2, 2)
    with valid_or_clear_error("lam", "reduction", "shape"):
        anchor = GeneratorAnchor(gen, lam=lam, reduction=reduction)
        z = torch.randn(3, 2)
        anchor.snapshot(z)
        pen = anchor.penalty(gen(torch.randn(rows, 2)))
        assert_finite(pen)
        assert pen.item() >= 0


@pytest.mark.timeout(60)
@given(values=st.lists(REAL.filter(lambda v: not isinstance(v, str)), min_size=12, max_size=12),
       ema=st.booleans(), train=st.booleans())
def test_vq_autoencoder_on_generated_inputs(values, ema, train):
    torch.manual_seed(0)
    m = VQAutoencoder(6, num_tokens=2, embedding_size=3, num_codes=4, hidden_size=8, ema=ema).train(train)
    x = torch.tensor([float(v) for v in values]).view(2, 6)
    with valid_or_clear_error("x"):
        out = m(x)
        assert_finite(out["loss"], out["x_hat"], m.quantizer.codebook)


@pytest.mark.timeout(60)
@given(n=SIZE, length=SIZE, temperature=REAL)
def test_code_prior_sampling(n, length, temperature):
    torch.manual_seed(0)
    prior = CodePrior(5, embedding_size=4, hidden_size=8)
    with valid_or_clear_error("n", "length", "temperature"):
        codes = prior.sample(n, length, temperature=temperature)
        assert codes.shape == (n, length) and 0 <= codes.min() and codes.max() < 5
        assert_finite(prior.log_prob(codes))
