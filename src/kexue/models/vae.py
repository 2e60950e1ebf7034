"""Reference VAE and conditional VAE (https://kexue.fm/archives/5253), the importance-weighted bound used to
evaluate them, and the generator anchor of the variational-inference view of GANs
(https://kexue.fm/archives/5716, arXiv 1807.05936).

    encoder: x -> N(mu(x), diag exp(logvar(x)))    each sample its own posterior
    decoder: z -> logits of Bernoulli pixels ("bernoulli") or the mean of N(., exp(obs_logvar)) ("gaussian")
    -ELBO  = E_q[-log p(x|z)] + KL(q(z|x) || p(z)),  p(z) = N(0, I) (VAE) or N(mu^Y, I) (CVAE, ClassPrior)
    IWAE_k = E[log 1/k sum_i p(x, z_i) / q(z_i|x)],  ELBO = IWAE_1 <= IWAE_k <= IWAE_{k+1} <= log p(x)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_choice, check_float, check_int
from kexue.nn import ClassPrior, GaussianHead, kl_diag_normals, normal_rsample

__all__ = ["VAE", "CVAE", "iwae_bound", "GeneratorAnchor"]

_LOG_2PI = math.log(2 * math.pi)


def _gaussian_log_prob(x: Tensor, mean: Tensor, logvar: Tensor | float) -> Tensor:
    """log N(x; mean, exp(logvar)) summed over the last dim."""
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    return (-0.5 * ((x - mean).square() / logvar.exp() + logvar + _LOG_2PI)).sum(-1)


class VAE(nn.Module):
    """MLP VAE  input_size -> hidden_size -> (mu, logvar) [latent_size] -> hidden_size -> input_size
    (hidden_size=None: linear encoder and decoder, e.g. the linear-Gaussian model whose log p(x) is known).

    likelihood "bernoulli": targets in [0, 1], decoder logits, BCE summed over pixels (the author's set-up);
    "gaussian": decoder mean with fixed variance exp(obs_logvar) per element.  x [B, input_size].
    """

    def __init__(self, input_size: int, latent_size: int, hidden_size: int | None = 128,
                 likelihood: str = "bernoulli", obs_logvar: float = 0.0):
        super().__init__()
        input_size, latent_size = check_int("input_size", input_size, 1), check_int("latent_size", latent_size, 1)
        if hidden_size is not None:
            hidden_size = check_int("hidden_size", hidden_size, 1)
        check_choice("likelihood", likelihood, ("bernoulli", "gaussian"))
        self.obs_logvar = check_float("obs_logvar", obs_logvar, -30.0, 20.0)
        self.input_size, self.latent_size, self.likelihood = input_size, latent_size, likelihood
        if hidden_size is None:
            self.encoder_body, self.decoder = nn.Identity(), nn.Linear(latent_size, input_size)
            self.head = GaussianHead(input_size, latent_size)
        else:
            self.encoder_body = nn.Sequential(nn.Linear(input_size, hidden_size), nn.ReLU())
            self.head = GaussianHead(hidden_size, latent_size)
            self.decoder = nn.Sequential(nn.Linear(latent_size, hidden_size), nn.ReLU(),
                                         nn.Linear(hidden_size, input_size))

    def _check_x(self, x: Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: x must be [batch, input_size={self.input_size}], "
                             f"got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():  # NaN would slip past the range check below and poison the loss
            raise ValueError(f"{type(self).__name__}: x must be finite, got a non-finite value "
                             f"{x[~torch.isfinite(x)][0].item()}")
        if self.likelihood == "bernoulli" and x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(f"{type(self).__name__}(likelihood='bernoulli'): x must lie in [0, 1], got range "
                             f"[{x.min().item():g}, {x.max().item():g}]")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, input_size] -> (mu, logvar) [B, latent_size] each."""
        self._check_x(x)
        return self.head(self.encoder_body(x))

    def decode(self, z: Tensor) -> Tensor:
        """z [..., latent_size] -> decoder output [..., input_size] (Bernoulli logits or Gaussian mean)."""
        if z.dim() < 1 or z.shape[-1] != self.latent_size:
            raise ValueError(f"{type(self).__name__}.decode: z must be [..., latent_size={self.latent_size}], "
                             f"got shape {tuple(z.shape)}")
        return self.decoder(z)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) summed over input elements; x [B, D], z [..., B, L] -> [..., B]."""
        out = self.decode(z)
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(-1)
        return _gaussian_log_prob(x, out, self.obs_logvar)

    def prior_mean(self, y: Tensor | None, like: Tensor) -> Tensor:
        """Mean of p(z): zero for the VAE (y is ignored)."""
        return torch.zeros_like(like)

    def log_prior(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """log p(z) summed over latent dims; z [..., B, L] -> [..., B]."""
        return _gaussian_log_prob(z, self.prior_mean(y, z), 0.0)

    def loss(self, x: Tensor, y: Tensor | None = None, beta: float = 1.0,
             generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One-sample negative ELBO (mean over the batch) {"loss", "recon", "kl"}; beta weights the KL."""
        beta = check_float("beta", beta, 0.0)
        mu, logvar = self.encode(x)
        z = normal_rsample(mu, logvar=logvar, generator=generator)  # [B, L]
        recon = -self.log_likelihood(x, z)  # [B]
        kl = kl_diag_normals(mu, logvar, self.prior_mean(y, mu), reduction="none")  # [B]
        return {"loss": (recon + beta * kl).mean(), "recon": recon.mean(), "kl": kl.mean()}

    def elbo(self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Per-sample one-sample ELBO estimate [B] (analytic KL, sampled reconstruction term)."""
        mu, logvar = self.encode(x)
        z = normal_rsample(mu, logvar=logvar, generator=generator)
        return self.log_likelihood(x, z) - kl_diag_normals(mu, logvar, self.prior_mean(y, mu), reduction="none")

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n decoded prior samples [n, input_size]: pixel probabilities (bernoulli) or means (gaussian)."""
        n = check_int("n", n, 1)
        ref = next(self.decoder.parameters())
        z = torch.randn(n, self.latent_size, generator=generator, dtype=ref.dtype, device=ref.device)
        z = z + self.prior_mean(y, z)
        out = self.decode(z)
        return out.sigmoid() if self.likelihood == "bernoulli" else out


class CVAE(VAE):
    """The author's conditional VAE: the encoder and decoder see only x and z; class y enters through a
    learned prior mean mu^Y (ClassPrior), KL(N(mu, sigma^2) || N(mu^Y, I)), and z ~ N(mu^Y, I) generates
    class y (https://kexue.fm/archives/5253, bojone/vae cvae_keras.py).  y [B] class ids."""

    def __init__(self, input_size: int, latent_size: int, num_classes: int, hidden_size: int | None = 128,
                 likelihood: str = "bernoulli", obs_logvar: float = 0.0):
        super().__init__(input_size, latent_size, hidden_size, likelihood, obs_logvar)
        self.prior = ClassPrior(check_int("num_classes", num_classes, 1), latent_size)

    def prior_mean(self, y: Tensor | None, like: Tensor) -> Tensor:
        if y is None:
            raise ValueError("CVAE: class ids y are required (the prior mean is mu^Y), got y=None")
        if y.dim() != 1 or y.shape[0] != like.shape[-2 if like.dim() > 1 else 0]:
            raise ValueError(f"CVAE: y must be [batch={like.shape[-2] if like.dim() > 1 else like.shape[0]}] "
                             f"class ids, got shape {tuple(y.shape)}")
        return self.prior(y).to(like.dtype).expand_as(like)


def iwae_bound(model: VAE, x: Tensor, k: int = 100, y: Tensor | None = None,
               generator: torch.Generator | None = None, chunk_size: int = 100) -> Tensor:
    """Importance-weighted bound log 1/k sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), per sample [B]
    (Burda et al. 2015; evaluation of https://kexue.fm/archives/5253's VAE).  k = 1 is the one-sample ELBO
    with a sampled KL; the bound rises with k towards log p(x), and equals it for every k when q is the exact
    posterior.  The k samples are drawn in chunks of `chunk_size` (memory k x B x input_size per chunk)."""
    k, chunk_size = check_int("k", k, 1), check_int("chunk_size", chunk_size, 1)
    mu, logvar = model.encode(x)  # [B, L]
    std = torch.exp(0.5 * logvar)
    parts = []
    for start in range(0, k, chunk_size):
        n = min(chunk_size, k - start)
        eps = torch.randn((n,) + tuple(mu.shape), generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + std * eps  # [n, B, L]
        log_q = _gaussian_log_prob(z, mu, logvar)  # [n, B]
        parts.append(model.log_likelihood(x, z) + model.log_prior(z, y) - log_q)
    log_w = torch.cat(parts, 0)  # [k, B]
    return torch.logsumexp(log_w, 0) - math.log(k)


class GeneratorAnchor:
    """Surrogate of KL(q(x) || q_old(x)) for the generator loss (arXiv 1807.05936, https://kexue.fm/archives/5716):
    lam * mean((G(z) - G_old(z))^2) with the same z, G_old the generator before the update.

    Call snapshot(z) before the generator steps on that z batch, then add penalty(G(z)) to the generator
    loss.  Right after the snapshot the penalty and its gradient are 0: take >= 2 generator steps per
    snapshot (the author's schedule) or it does nothing.  reduction "mean" (per element, the author's
    lam = 5) or "sum" (over elements, divided by the batch size: the equivalent lam is 5 / elements)."""

    def __init__(self, generator: nn.Module, lam: float = 5.0, reduction: str = "mean"):
        if not isinstance(generator, nn.Module):
            raise TypeError(f"GeneratorAnchor: generator must be an nn.Module, got {type(generator).__name__}")
        self.generator, self.lam = generator, check_float("lam", lam, 0.0)
        self.reduction = check_choice("reduction", reduction, ("mean", "sum"))
        self.anchor: Tensor | None = None

    @torch.no_grad()
    def snapshot(self, z: Tensor) -> None:
        """Store G_old(z) (no gradient) for the coming generator steps on this z batch."""
        self.anchor = self.generator(z).detach()

    def penalty(self, fake: Tensor) -> Tensor:
        """lam * mean((fake - G_old(z))^2) (or the per-sample sum); fake = G(z) for the snapshot's z."""
        if self.anchor is None:
            raise RuntimeError("GeneratorAnchor.penalty: call snapshot(z) first (no anchor stored)")
        if fake.shape != self.anchor.shape:
            raise ValueError(f"GeneratorAnchor.penalty: fake shape {tuple(fake.shape)} != snapshot shape "
                             f"{tuple(self.anchor.shape)} (use the snapshot's z)")
        sq = (fake - self.anchor).square()
        return self.lam * (sq.mean() if self.reduction == "mean" else sq.sum() / max(sq.shape[0], 1))
