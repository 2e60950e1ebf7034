"""Capsules (https://kexue.fm/archives/5112, https://kexue.fm/archives/5155): squash, routing invariants,
margin loss, EM-routing M-step vs a NumPy diagonal-GMM M-step and the entropy identity."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kexue.nn.capsule import Capsule, EMRouting, capsule_lengths, em_m_step, margin_loss, squash


@pytest.mark.parametrize("variant,k", [("hinton", 1.0), ("su", 0.5)])
def test_squash_norm_direction_monotone_and_finite_grad(variant, k):
    x = torch.randn(50, 8, dtype=torch.float64) * torch.logspace(-2, 2, 50, dtype=torch.float64)[:, None]
    x = x[x.norm(dim=-1).argsort()]
    y = squash(x, variant=variant, eps=0.0)
    n = x.norm(dim=-1)
    torch.testing.assert_close(y.norm(dim=-1), n ** 2 / (k + n ** 2))
    assert (y.norm(dim=-1) < 1).all() and (y.norm(dim=-1).diff() > 0).all()
    torch.testing.assert_close(F.normalize(y, dim=-1), F.normalize(x, dim=-1))
    z = torch.zeros(3, 4, requires_grad=True)
    squash(z, variant=variant).sum().backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("routing", ["su", "hinton"])
@pytest.mark.parametrize("share", [True, False])
def test_coupling_rows_sum_to_one(routing, share):
    caps = Capsule(6, 4, 5, routings=3, share_weights=share, num_in_capsule=7, routing=routing)
    caps(torch.randn(2, 7, 6))
    torch.testing.assert_close(caps.last_coupling.sum(1), torch.ones(2, 7))


def test_one_routing_is_the_uniform_average():
    caps = Capsule(6, 4, 5, routings=1, activation=lambda o: o)
    u = torch.randn(2, 7, 6)
    u_hat = (u @ caps.weight).view(2, 7, 4, 5)
    torch.testing.assert_close(caps(u), u_hat.sum(1) / 4)


def test_shared_weights_are_permutation_invariant_and_accept_any_count():
    caps = Capsule(6, 4, 5, routings=3)
    u = torch.randn(2, 9, 6)
    torch.testing.assert_close(caps(u[:, torch.randperm(9)]), caps(u), atol=1e-6, rtol=1e-5)
    assert caps(torch.randn(2, 3, 6)).shape == (2, 4, 5)


def test_su_routing_converges_and_hinton_routing_sharpens():
    torch.manual_seed(0)
    u = torch.randn(4, 30, 6, dtype=torch.float64)
    su = Capsule(6, 5, 8, routings=200, activation=lambda o: o).double()   # a fixed-point iteration
    o200 = F.normalize(su(u), dim=-1)
    su.routings = 201
    assert (F.normalize(su(u), dim=-1) - o200).norm(dim=-1).max() < 1e-6
    hinton = Capsule(6, 5, 8, routing="hinton", activation="squash_hinton").double()
    with torch.no_grad():
        hinton.weight.mul_(5)
    sharp = []
    for r in (2, 10, 100):
        hinton.routings = r
        hinton(u)
        sharp.append(hinton.last_coupling.max(1).values.mean().item())
    assert sharp[0] < sharp[1] < sharp[2] and sharp[2] > 0.95


def test_margin_loss_closed_form_and_label_forms():
    lengths = torch.tensor([[0.95, 0.5, 0.05], [0.2, 0.8, 0.3]])
    expected = torch.tensor([0.25 * 0.4 ** 2, 0.1 ** 2 + 0.25 * (0.1 ** 2 + 0.2 ** 2)])
    torch.testing.assert_close(margin_loss(lengths, torch.tensor([0, 1]), reduction="none"), expected)
    torch.testing.assert_close(margin_loss(lengths, torch.tensor([[1, 0, 0], [0, 1, 0]])), expected.mean())
    with pytest.raises(ValueError, match="targets"):
        margin_loss(lengths, torch.zeros(2, 4))


def test_em_m_step_matches_numpy_diagonal_gmm():
    g = torch.Generator().manual_seed(0)
    B, N, J, P = 2, 6, 3, 4
    votes = torch.randn(B, N, J, P, generator=g, dtype=torch.float64)
    a_in = torch.rand(B, N, generator=g, dtype=torch.float64)
    R = torch.rand(B, N, J, generator=g, dtype=torch.float64).softmax(-1)
    beta_u, beta_a = torch.randn(J, dtype=torch.float64), torch.randn(J, dtype=torch.float64)
    mu, var, a_out = em_m_step(votes, a_in, R, beta_u, beta_a, 0.7)
    V, A, Rn = votes.numpy(), a_in.numpy(), R.numpy()
    for b in range(B):
        for j in range(J):
            w = Rn[b, :, j] * A[b]
            m = (w[:, None] * V[b, :, j]).sum(0) / w.sum()
            s2 = (w[:, None] * (V[b, :, j] - m) ** 2).sum(0) / w.sum()
            cost = ((beta_u[j].item() + 0.5 * np.log(s2)) * w.sum()).sum()
            np.testing.assert_allclose(mu[b, j].numpy(), m, atol=1e-12)
            np.testing.assert_allclose(var[b, j].numpy(), s2, atol=1e-12)
            np.testing.assert_allclose(a_out[b, j].item(), 1 / (1 + np.exp(-0.7 * (beta_a[j].item() - cost))))


def test_entropy_identity_of_the_fitted_gaussian():
    g = torch.Generator().manual_seed(1)
    votes = torch.randn(1, 20, 1, 5, generator=g, dtype=torch.float64) * 3
    r = torch.rand(20, generator=g, dtype=torch.float64)
    r = r / r.sum()
    mu, var, _ = em_m_step(votes, torch.ones(1, 20, dtype=torch.float64), r.view(1, 20, 1),
                           torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 1.0, min_var=0)
    logp = torch.distributions.Normal(mu[0, 0], var[0, 0].sqrt()).log_prob(votes[0, :, 0]).sum(-1)   # [20]
    S = -(r * logp).sum()
    d = 5
    expected = d / 2 + (0.5 * torch.log(var[0, 0]).sum() + d / 2 * math.log(2 * math.pi)) * r.sum()
    torch.testing.assert_close(S, expected, atol=1e-6, rtol=0)


def test_em_routing_output_shapes_ranges_and_gradients():
    torch.manual_seed(0)
    em = EMRouting(num_out=3, pose_dim=16, iters=3)
    votes = torch.randn(2, 8, 3, 16, requires_grad=True)
    poses, a = em(votes, torch.rand(2, 8))
    assert poses.shape == (2, 3, 16) and a.shape == (2, 3)
    assert ((a > 0) & (a < 1)).all()
    (poses.sum() + a.sum()).backward()
    assert torch.isfinite(votes.grad).all() and em.beta_a.grad is not None
    with pytest.raises(ValueError, match="votes"):
        em(torch.randn(2, 8, 4, 16), torch.rand(2, 8))


def test_parameter_count_of_the_mnist_capsule_model():
    trunk = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3), torch.nn.Conv2d(64, 64, 3), torch.nn.AvgPool2d(2),
                                torch.nn.Conv2d(64, 128, 3), torch.nn.Conv2d(128, 128, 3))
    head_caps = Capsule(128, 10, 16, 3, True)
    head_pool = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.Linear(128, 10))
    count = lambda *ms: sum(p.numel() for m in ms for p in m.parameters())   # noqa: E731
    assert count(head_caps) == 128 * 10 * 16
    assert abs(count(trunk, head_caps) - 270_000) < 0.05 * 270_000
    assert abs(count(trunk, head_caps) - count(trunk, head_pool)) < 0.02 * count(trunk, head_pool)
    assert capsule_lengths(head_caps(torch.randn(2, 12, 128))).shape == (2, 10)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_in_capsule"):
        Capsule(4, 3, 2, share_weights=False)
    with pytest.raises(ValueError, match="routing"):
        Capsule(4, 3, 2, routing="kmeans")
    with pytest.raises(ValueError, match="variant"):
        squash(torch.randn(3), variant="x")


@pytest.mark.parametrize("kw, exc, name", [
    (dict(num_capsule=0), ValueError, "num_capsule"), (dict(dim_capsule=0), ValueError, "dim_capsule"),
    (dict(in_features=0), ValueError, "in_features"), (dict(in_features=4.0), TypeError, "in_features"),
    (dict(num_capsule=-3), ValueError, "num_capsule"), (dict(routings=0), ValueError, "routings"),
    (dict(routings=2.0), TypeError, "routings"), (dict(routings=True), TypeError, "routings"),
    (dict(share_weights=False, num_in_capsule=0), ValueError, "num_in_capsule"),
    (dict(share_weights="no"), TypeError, "share_weights"),
])
def test_capsule_sizes_checked_by_name_at_construction(kw, exc, name):
    """Issue 8: Capsule(num_capsule=0) failed later with a reshape error naming no argument."""
    with pytest.raises(exc, match=name):
        Capsule(**{"in_features": 4, "num_capsule": 3, "dim_capsule": 5, **kw})


@pytest.mark.parametrize("kw, exc, name", [
    (dict(num_out=0), ValueError, "num_out"), (dict(pose_dim=-1), ValueError, "pose_dim"),
    (dict(iters=0), ValueError, "iters"), (dict(final_inverse_temp=float("nan")), ValueError, "final_inverse_temp"),
])
def test_em_routing_sizes_checked_by_name(kw, exc, name):
    with pytest.raises(exc, match=name):
        EMRouting(**{"num_out": 3, "pose_dim": 4, **kw})


def test_empty_batches_and_empty_capsule_sets():
    """B = 0 gives an empty output; N_in = 0 input capsules give zero outputs (nothing votes), never NaN."""
    caps = Capsule(4, 3, 5)
    assert caps(torch.zeros(0, 6, 4)).shape == (0, 3, 5)
    out = caps(torch.zeros(2, 0, 4))
    assert out.shape == (2, 3, 5) and torch.equal(out, torch.zeros(2, 3, 5))
    em = EMRouting(3, 4)
    poses, a = em(torch.zeros(0, 5, 3, 4), torch.zeros(0, 5))
    assert poses.shape == (0, 3, 4) and a.shape == (0, 3)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_margin_loss_of_an_empty_batch_is_zero(reduction):
    lengths = torch.zeros(0, 3, requires_grad=True)
    loss = margin_loss(lengths, torch.zeros(0, dtype=torch.long), reduction=reduction)
    assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("targets", [torch.tensor([0, 3]), torch.tensor([-1, 0]), torch.tensor([0.0, 1.0])])
def test_margin_loss_targets_checked(targets):
    with pytest.raises((ValueError, TypeError), match="targets"):
        margin_loss(torch.rand(2, 3), targets)


@pytest.mark.parametrize("kw, name", [(dict(k=0.0), "k"), (dict(k=float("nan")), "k"), (dict(eps=-1.0), "eps")])
def test_squash_constants_checked(kw, name):
    with pytest.raises(ValueError, match=name):
        squash(torch.zeros(2, 3), **kw)


def test_squash_of_the_zero_vector_is_zero_even_with_eps_zero():
    x = torch.zeros(2, 3, requires_grad=True)
    y = squash(x, eps=0.0)
    assert torch.equal(y, torch.zeros(2, 3))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
