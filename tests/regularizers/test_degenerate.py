"""Issue 8 on the regularizers: empty batches give finite (zero) penalties, never NaN; rates, sizes and
coefficients are checked by name before anything is computed."""
import math

import pytest
import torch
from torch import nn

from kexue.regularizers.lipschitz import (SpectralNormRegularizer, empirical_lipschitz, gradient_penalty,
                                          spectral_norm_estimate, wgan_critic_loss, wgan_generator_loss)
from kexue.regularizers.mixup import (MixupCollate, SamplePairingSchedule, mixup, mixup_cross_entropy,
                                      sample_mix_coef, sample_pairing)
from kexue.regularizers.noise import GaussianNoise, gaussian_noise, output_gradient_penalty


def _critic():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


EMPTY = {
    "gradient_penalty": lambda: gradient_penalty(_critic(), torch.zeros(0, 3), torch.zeros(0, 3)),
    "wgan_critic_loss": lambda: wgan_critic_loss(torch.zeros(0, requires_grad=True), torch.zeros(0)),
    "wgan_generator_loss": lambda: wgan_generator_loss(torch.zeros(0, requires_grad=True)),
    "mixup_cross_entropy": lambda: mixup_cross_entropy(torch.zeros(0, 3, requires_grad=True),
                                                       torch.zeros(0, dtype=torch.long),
                                                       torch.zeros(0, dtype=torch.long), 0.3),
    "output_gradient_penalty": lambda: output_gradient_penalty(_critic(), torch.zeros(0, 3)),
    "output_gradient_penalty_exact": lambda: output_gradient_penalty(_critic(), torch.zeros(0, 3),
                                                                     estimator="exact"),
}


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_empty_batches_give_zero_not_nan(name):
    out = EMPTY[name]()
    assert out.shape == () and out.item() == 0.0


def test_mixup_of_an_empty_batch_is_empty():
    x_mix, y_mix, lam, perm = mixup(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), 0.4, num_classes=2)
    assert x_mix.shape == (0, 3) and y_mix.shape == (0, 2) and perm.shape == (0,)


def test_gradient_penalty_at_a_zero_gradient_is_finite():
    """A critic that is flat at x_hat has |grad| = 0: the norm's derivative there must not be NaN."""
    x = torch.zeros(4, 3)
    w = torch.zeros(3, requires_grad=True)
    gp = gradient_penalty(lambda t: (t @ w) ** 2, x, x)
    gp.backward()
    assert gp.item() == pytest.approx(10.0) and torch.isfinite(w.grad).all()


@pytest.mark.parametrize("call, exc, name", [
    (lambda: gradient_penalty(_critic(), torch.zeros(2, 3), torch.zeros(2, 3), lam=float("nan")), ValueError, "lam"),
    (lambda: gradient_penalty(_critic(), torch.zeros(2, 3), torch.zeros(2, 3), target=float("inf")), ValueError,
     "target"),
    (lambda: SpectralNormRegularizer(nn.Linear(3, 2), coef=float("nan")), ValueError, "coef"),
    (lambda: SpectralNormRegularizer(nn.Linear(3, 2), iters=1.5), TypeError, "iters"),
    (lambda: SpectralNormRegularizer(nn.Linear(3, 2), layout="tf"), ValueError, "layout"),
    (lambda: spectral_norm_estimate(torch.ones(3, 2), iters=0), ValueError, "iters"),
    (lambda: empirical_lipschitz(lambda t: t, torch.zeros(0, 3)), ValueError, "x"),
    (lambda: empirical_lipschitz(lambda t: t, torch.ones(2, 3), n_pairs=0), ValueError, "n_pairs"),
    (lambda: empirical_lipschitz(lambda t: t, torch.ones(2, 3), radius=0.0), ValueError, "radius"),
    (lambda: sample_mix_coef(float("nan")), ValueError, "alpha"),
    (lambda: sample_mix_coef(float("inf")), ValueError, "alpha"),
    (lambda: mixup(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), alpha=float("nan"), num_classes=2),
     ValueError, "alpha"),
    (lambda: mixup(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), num_classes=2, lam=float("nan")),
     ValueError, "lam"),
    (lambda: mixup(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), num_classes=2, lam=1.5), ValueError, "lam"),
    (lambda: mixup(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), num_classes=0), ValueError, "num_classes"),
    (lambda: sample_pairing(torch.zeros(2, 3), torch.zeros(2), coef=float("nan")), ValueError, "coef"),
    (lambda: SamplePairingSchedule(on_epochs=1.5), TypeError, "on_epochs"),
    (lambda: SamplePairingSchedule(off_epochs=-1), ValueError, "off_epochs"),
    (lambda: MixupCollate(alpha=float("nan")), ValueError, "alpha"),
    (lambda: gaussian_noise(torch.zeros(2), float("inf")), ValueError, "sigma"),
    (lambda: GaussianNoise(float("nan")), ValueError, "sigma"),
])
def test_arguments_checked_by_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


@pytest.mark.parametrize("call, exc, name", [
    (lambda: __import__("kexue").regularizers.conv_operator_norm(torch.ones(2, 1, 3, 3), (5, 5), iters=0),
     ValueError, "iters"),
    (lambda: __import__("kexue").regularizers.adversarial_step(
        nn.Linear(3, 2), torch.nn.functional.cross_entropy, (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)),
        torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=0.1), weight=float("nan"), target="weight"),
     ValueError, "weight"),
])
def test_more_arguments_checked_by_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
