"""VAE KL terms and loss (spec core/10, https://kexue.fm/archives/5253), focal loss, multilabel categorical CE
and masked token CE, each against torch.distributions / F.cross_entropy or a float64 brute-force formula."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from kexue.nn.losses import (
    ClassPrior, VAELoss, binary_focal_loss, focal_loss, kl_diag_normals, kl_std_normal, masked_cross_entropy,
    multilabel_categorical_crossentropy,
)


def test_kl_std_normal_matches_torch_distributions_and_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    std = (0.5 * logvar).exp()
    ref = kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(-1)  # [4]
    torch.testing.assert_close(kl_std_normal(mu, logvar, reduction="none"), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(kl_std_normal(mu, logvar, reduction="sum"), ref.sum(), atol=1e-6, rtol=0)
    torch.testing.assert_close(kl_std_normal(mu, logvar, reduction="mean"), ref.mean(), atol=1e-6, rtol=0)
    q = Normal(mu[0], std[0])
    z = q.sample((10**6,))
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean()
    assert abs(mc / ref[0] - 1) < 0.01


def test_kl_diag_normals_matches_torch_distributions():
    torch.manual_seed(1)
    mq, lq, mp, lp = torch.randn(4, 5, 3, dtype=torch.float64).unbind(0)
    ref = kl_divergence(Normal(mq, (0.5 * lq).exp()), Normal(mp, (0.5 * lp).exp())).sum(-1)
    torch.testing.assert_close(kl_diag_normals(mq, lq, mp, lp, reduction="none"), ref, atol=1e-10, rtol=0)
    ref_unit = kl_divergence(Normal(mq, (0.5 * lq).exp()), Normal(mp, 1.0)).sum(-1)
    torch.testing.assert_close(kl_diag_normals(mq, lq, mp, reduction="none"), ref_unit, atol=1e-10, rtol=0)
    torch.testing.assert_close(kl_diag_normals(mq, lq, torch.zeros_like(mq), reduction="none"),
                               kl_std_normal(mq, lq, reduction="none"))


def test_vae_loss_terms_match_references():
    torch.manual_seed(2)
    x = torch.rand(6, 1, 4, 4)
    logits, mu, lv = torch.randn(6, 1, 4, 4), torch.randn(6, 2), torch.randn(6, 2)
    out = VAELoss("bce")(x, logits, mu, lv)
    rec = F.binary_cross_entropy(logits.sigmoid(), x, reduction="sum") / 6
    kl = kl_divergence(Normal(mu, (0.5 * lv).exp()), Normal(0.0, 1.0)).sum() / 6
    torch.testing.assert_close(out["recon"], rec, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["kl"], kl, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out["loss"], rec + kl, rtol=1e-5, atol=1e-5)
    g = VAELoss("gaussian", beta=0.5, reduction="none")(x, logits, mu, lv)
    torch.testing.assert_close(g["recon"], -Normal(logits, 1.0).log_prob(x).flatten(1).sum(1))
    prior = torch.randn(6, 2)
    c = VAELoss("mse")(x, logits, mu, lv, prior_mu=prior)
    torch.testing.assert_close(c["kl"], kl_diag_normals(mu, lv, prior, reduction="mean"))


def test_class_prior_means_and_samples():
    prior = ClassPrior(3, 2)
    assert torch.equal(prior(torch.tensor([0, 2])), torch.zeros(2, 2))  # starts as N(0, I)
    with torch.no_grad():
        prior.means.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 1.0]]))
    z = prior.sample(torch.full((20_000,), 2), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), torch.tensor([-3.0, 1.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(2), atol=0.03, rtol=0)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        prior(torch.tensor([3]))


def test_vae_loss_beta0_is_deterministic_autoencoder():
    """beta = 0 and a zero-variance code: the loss is the autoencoder's summed squared error."""
    x, xr = torch.rand(5, 8), torch.rand(5, 8)
    mu = torch.randn(5, 2)
    z = torch.distributions.Normal(mu, 1e-8).rsample()
    torch.testing.assert_close(z, mu)
    out = VAELoss("mse", beta=0.0)(x, xr, mu, torch.full((5, 2), -30.0))
    torch.testing.assert_close(out["loss"], (x - xr).square().sum(1).mean())


def test_vae_loss_rejects_bce_targets_outside_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VAELoss("bce")(torch.full((2, 3), 2.0), torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(2, 1))


def test_focal_loss_closed_form_and_ce_limit():
    torch.manual_seed(3)
    logits, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 4, (10,))
    torch.testing.assert_close(focal_loss(logits, y, gamma=0.0), F.cross_entropy(logits.float(), y))
    p = logits.softmax(-1)[torch.arange(10), y]
    alpha = torch.tensor([0.1, 0.2, 0.3, 0.4])
    ref = (-alpha[y] * (1 - p) ** 2 * p.log()).float()
    torch.testing.assert_close(focal_loss(logits, y, 2.0, alpha, reduction="none"), ref)
    assert (focal_loss(logits, y, 2.0, reduction="none") <= F.cross_entropy(logits.float(), y, reduction="none")).all()


def test_binary_focal_loss_closed_form():
    """torchvision's sigmoid_focal_loss formula written out: -alpha_t (1 - p_t)^gamma log p_t."""
    torch.manual_seed(4)
    s, t = torch.randn(20, dtype=torch.float64), torch.randint(0, 2, (20,)).double()
    p = s.sigmoid()
    p_t = torch.where(t == 1, p, 1 - p)
    a_t = torch.where(t == 1, 0.25, 0.75)
    ref = -a_t * (1 - p_t) ** 2 * p_t.log()
    torch.testing.assert_close(binary_focal_loss(s, t, 2.0, 0.25, reduction="none"), ref)
    torch.testing.assert_close(binary_focal_loss(s, t, 0.0), F.binary_cross_entropy_with_logits(s, t))


def _mlce_bruteforce(s, t):
    neg = [math.exp(v) for v, y in zip(s, t) if not y]
    pos = [math.exp(-v) for v, y in zip(s, t) if y]
    return math.log(1 + sum(neg)) + math.log(1 + sum(pos))


def test_multilabel_categorical_crossentropy_bruteforce_and_mask():
    torch.manual_seed(5)
    s, t = torch.randn(6, 7, dtype=torch.float64), torch.randint(0, 2, (6, 7))
    ref = torch.tensor([_mlce_bruteforce(a.tolist(), b.tolist()) for a, b in zip(s, t)], dtype=torch.float64)
    torch.testing.assert_close(multilabel_categorical_crossentropy(s, t, reduction="none").double(), ref)
    mask = torch.rand(6, 7) > 0.3
    ref_m = torch.tensor([_mlce_bruteforce(a[m].tolist(), b[m].tolist()) for a, b, m in zip(s, t, mask)],
                         dtype=torch.float64)
    torch.testing.assert_close(multilabel_categorical_crossentropy(s, t, mask, reduction="none").double(), ref_m)


def test_multilabel_ce_threshold_zero_and_finite_for_huge_logits():
    """Perfect separation around 0 drives the loss to 0; logits of 1e4 stay finite in value and gradient."""
    t = torch.tensor([[1, 0, 1, 0]])
    s = torch.tensor([[1e4, -1e4, 50.0, -50.0]], requires_grad=True)
    loss = multilabel_categorical_crossentropy(s, t)
    loss.backward()
    assert loss.item() < 1e-20 and torch.isfinite(s.grad).all()
    s2 = torch.tensor([[-1e4, 1e4, 0.0, 0.0]])
    assert math.isfinite(multilabel_categorical_crossentropy(s2, t).item())


def test_masked_cross_entropy_matches_ignore_index():
    torch.manual_seed(6)
    logits, target = torch.randn(3, 5, 11), torch.randint(0, 11, (3, 5))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]).bool()
    ignored = target.masked_fill(~mask, -100)
    for ls in (0.0, 0.1):
        ref = F.cross_entropy(logits.transpose(1, 2), ignored, ignore_index=-100, label_smoothing=ls)
        torch.testing.assert_close(masked_cross_entropy(logits, target.masked_fill(~mask, -1), mask, ls), ref)
    empty = masked_cross_entropy(logits, target, torch.zeros_like(mask))
    assert empty.item() == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda: kl_std_normal(torch.zeros(2, 3), torch.zeros(2, 2)), "logvar"),
    (lambda: kl_std_normal(torch.zeros(2, 3), torch.zeros(2, 3), reduction="avg"), "reduction"),
    (lambda: focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), gamma=-1.0), "gamma"),
    (lambda: masked_cross_entropy(torch.zeros(1, 2, 3), torch.tensor([[0, 7]])), r"\[0, 3\)"),
    (lambda: VAELoss("l1"), "recon"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


EMPTY_MEAN_LOSSES = {
    "kl_std_normal": lambda: kl_std_normal(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3), reduction="mean"),
    "kl_diag_normals": lambda: kl_diag_normals(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3),
                                               torch.zeros(0, 3), reduction="mean"),
    "focal_loss": lambda: focal_loss(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, dtype=torch.long)),
    "binary_focal_loss": lambda: binary_focal_loss(torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 3)),
    "multilabel": lambda: multilabel_categorical_crossentropy(torch.zeros(0, 3, requires_grad=True),
                                                              torch.zeros(0, 3)),
    "VAELoss": lambda: VAELoss()(torch.zeros(0, 3), torch.zeros(0, 3, requires_grad=True), torch.zeros(0, 2),
                                 torch.zeros(0, 2))["loss"],
    "VAELoss-mse": lambda: VAELoss("mse")(torch.zeros(0, 3), torch.zeros(0, 3, requires_grad=True),
                                          torch.zeros(0, 2), torch.zeros(0, 2))["loss"],
}


@pytest.mark.parametrize("name", sorted(EMPTY_MEAN_LOSSES))
def test_mean_over_an_empty_batch_is_zero_not_nan(name):
    """Issue 8 (the kind of the CRF's NaN): a mean over no sample is 0 with a graph, never NaN."""
    loss = EMPTY_MEAN_LOSSES[name]()
    assert loss.shape == () and loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("call, exc, name", [
    (lambda: VAELoss(beta=float("nan")), ValueError, "beta"),
    (lambda: VAELoss(beta=float("inf")), ValueError, "beta"),
    (lambda: focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), gamma=float("nan")), ValueError, "gamma"),
    (lambda: focal_loss(torch.zeros(2, 3), torch.tensor([0, 3])), ValueError, "target"),
    (lambda: focal_loss(torch.zeros(2, 3), torch.tensor([0.0, 1.0])), TypeError, "target"),
    (lambda: focal_loss(torch.zeros(2, 3), torch.tensor([0, 1]), alpha=torch.ones(2)), ValueError, "alpha"),
    (lambda: binary_focal_loss(torch.zeros(2), torch.zeros(2), gamma=float("nan")), ValueError, "gamma"),
    (lambda: binary_focal_loss(torch.zeros(2), torch.zeros(2), alpha=float("nan")), ValueError, "alpha"),
    (lambda: binary_focal_loss(torch.zeros(2), torch.zeros(2), alpha=1.5), ValueError, "alpha"),
    (lambda: ClassPrior(3.0, 2), TypeError, "num_classes"),
    (lambda: ClassPrior(3, 0), ValueError, "latent_size"),
    (lambda: masked_cross_entropy(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long),
                                  label_smoothing=float("nan")), ValueError, "label_smoothing"),
    (lambda: masked_cross_entropy(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long),
                                  mask=torch.tensor([[1.0, 0.5]])), ValueError, "mask"),
])
def test_arguments_checked_by_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_multilabel_target_other_than_01_is_refused():
    """0.5 in the target was read as a positive class by bool()."""
    with pytest.raises(ValueError, match="target"):
        multilabel_categorical_crossentropy(torch.zeros(1, 3), torch.tensor([[1.0, 0.5, 0.0]]))
