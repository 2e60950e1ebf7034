"""Regularizers of the articles: noise, gradient penalty, FGM/PGD/VAT, mixup, Lipschitz tools."""
from .adversarial import input_gradient_penalty, FGM, PGD, VAT, adversarial_step, resolve_targets, token_embedding
from .lipschitz import (
    spectral_norm_estimate, conv_operator_norm, SpectralNormRegularizer, apply_spectral_norm, project_spectral_norm_,
    lipschitz_upper_bound, empirical_lipschitz, gradient_penalty, wgan_critic_loss, wgan_generator_loss
)
from .mixup import (
    sample_mix_coef, mixup, mixup_cross_entropy, sample_pairing, SamplePairingSchedule, MixupCollate,
    linearity_gap, mixup_embeddings
)
from .noise import gaussian_noise, GaussianNoise, output_gradient_penalty

__all__ = [
    'input_gradient_penalty', 'FGM', 'PGD', 'VAT', 'adversarial_step', 'resolve_targets', 'token_embedding',
    'spectral_norm_estimate', 'conv_operator_norm', 'SpectralNormRegularizer', 'apply_spectral_norm',
    'project_spectral_norm_',
    'lipschitz_upper_bound', 'empirical_lipschitz', 'gradient_penalty', 'wgan_critic_loss', 'wgan_generator_loss',
    'sample_mix_coef', 'mixup', 'mixup_cross_entropy', 'sample_pairing', 'SamplePairingSchedule', 'MixupCollate',
    'linearity_gap', 'mixup_embeddings', 'gaussian_noise', 'GaussianNoise', 'output_gradient_penalty'
]
