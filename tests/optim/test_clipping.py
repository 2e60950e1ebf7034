"""Hard/soft clipping: torch parity, closed forms, and the (L0, L1)-smoothness toy of spec core/04."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.optim import GradientAccumulation, GradientClipping, clip_grads_, clip_scale, smoothness_probe


def grads_of(kit, model):
    (x, y), = kit.batches(1)
    model.zero_grad()
    (100 * kit.loss(model, x, y)).backward()                    # large norm so clipping is active
    return [p.grad.clone() for p in model.parameters()]


def test_hard_equals_clip_grad_norm(kit):
    a, b = kit.mlp(), kit.mlp()
    grads_of(kit, a), grads_of(kit, b)
    na = clip_grads_(a.parameters(), 1.0, mode="hard")
    nb = torch.nn.utils.clip_grad_norm_(b.parameters(), 1.0)
    assert torch.equal(na, nb)
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters()))


def test_soft_closed_forms():
    gamma = 0.7
    assert clip_scale(torch.tensor(gamma), gamma, "soft").item() == pytest.approx(0.5)
    assert clip_scale(torch.tensor(1e-12), gamma, "soft").item() == pytest.approx(1.0)
    big = torch.tensor(1e12)
    assert (clip_scale(big, gamma, "soft") * big).item() == pytest.approx(gamma, rel=1e-9)
    norms = torch.rand(1000, dtype=torch.float64) * 10 ** torch.linspace(-3, 3, 1000)
    hard, soft = clip_scale(norms, gamma, "hard", eps=0.0), clip_scale(norms, gamma, "soft")
    assert bool(((0.5 * hard <= soft + 1e-15) & (soft <= hard + 1e-15)).all())   # sandwich


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_direction_kept_and_norm_bounded(kit, mode):
    model = kit.mlp()
    g = torch.cat([x.flatten() for x in grads_of(kit, model)])
    norm = clip_grads_(model.parameters(), 0.5, mode=mode)
    c = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert norm.item() == pytest.approx(g.norm().item())
    assert torch.nn.functional.cosine_similarity(g, c, dim=0).item() == pytest.approx(1.0, abs=1e-12)
    assert c.norm().item() <= 0.5 + 1e-12
    if mode == "soft":
        assert c.norm().item() < min(0.5, g.norm().item())


def toy_steps(theta0, lr, gamma=None, mode="hard", tol=1e-6, max_steps=10**5):
    """GD on f = θ⁴/4 + θ²/2 with clip scale c(|f'|), counted until |θ| < tol (spec core/04 table)."""
    theta = torch.tensor(theta0)
    for t in range(max_steps):
        if abs(theta.item()) < tol:
            return t
        g = theta ** 3 + theta
        c = clip_scale(g.abs(), gamma, mode, eps=0.0) if gamma else 1.0
        theta = theta - lr * c * g
    return max_steps


@pytest.mark.parametrize("theta0,soft,hard,gd_lr,gd", [(3.0, 14, 24, 8.6e-2, 145), (10.0, 35, 38, 8.0e-3, 1711),
                                                      (30.0, 95, 78, None, None)])
def test_clipping_toy_table(theta0, soft, hard, gd_lr, gd):
    assert abs(toy_steps(theta0, 1.0, 1 / 3, "soft") - soft) <= 0.05 * soft
    assert abs(toy_steps(theta0, 0.5, 1.0, "hard") - hard) <= 0.05 * hard
    if gd_lr is not None:                                       # fixed lr needs ~θ0² steps
        assert abs(toy_steps(theta0, gd_lr) - gd) <= 0.05 * gd


def test_wrapper_equals_manual_clip_then_step(kit):
    a, b = kit.mlp(), kit.mlp()
    oa = GradientClipping(torch.optim.SGD(a.parameters(), lr=0.1), gamma=0.3, mode="soft")
    ob = torch.optim.SGD(b.parameters(), lr=0.1)
    for x, y in kit.batches(10):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            (10 * kit.loss(m, x, y)).backward()
            if o is ob:
                clip_grads_(b.parameters(), 0.3, mode="soft")
            o.step()
    assert kit.max_diff(a, b) < 1e-14
    assert 0 < oa.last_scale < 1 and oa.last_grad_norm > 0.3


def test_clipping_inside_accumulation_clips_the_mean_gradient(kit):
    micro = kit.batches(4, size=2)
    a, b = kit.mlp(), kit.mlp()
    oa = GradientAccumulation(GradientClipping(torch.optim.SGD(a.parameters(), lr=0.1), gamma=0.1), 4)
    for x, y in micro:
        oa.zero_grad()
        kit.loss(a, x, y).backward()
        oa.step()
    x, y = torch.cat([m[0] for m in micro]), torch.cat([m[1] for m in micro])
    kit.loss(b, x, y).backward()
    torch.nn.utils.clip_grad_norm_(b.parameters(), 0.1)
    torch.optim.SGD(b.parameters(), lr=0.1).step()
    assert kit.max_diff(a, b) < 1e-14


def test_per_tensor_and_nonfinite(kit):
    model = kit.mlp()
    grads_of(kit, model)
    GradientClipping(torch.optim.SGD(model.parameters(), lr=0.0), gamma=0.01, per_tensor=True).step()
    assert all(p.grad.norm().item() <= 0.01 + 1e-12 for p in model.parameters())
    next(model.parameters()).grad[0, 0] = float("inf")
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grads_(model.parameters(), 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match=r"gamma must be a finite number in \(0.0, inf\), got 0.0"):
        clip_grads_(model.parameters(), 0)
    with pytest.raises(ValueError, match=r"mode must be one of \['hard', 'soft'\], got 'medium'"):
        clip_scale(torch.tensor(1.0), 1.0, "medium")


@pytest.mark.parametrize("theta0", [0.5, 2.0])
def test_smoothness_probe_recovers_curvature(theta0):
    """f = θ⁴/4 + θ²/2: f'' = 3θ² + 1 and |f'| = |θ³ + θ|; the (1, 3) envelope 1 + 3|f'| bounds f''."""
    theta = nn.Parameter(torch.tensor([theta0]))
    smooth, gnorm = smoothness_probe(lambda: (theta ** 4 / 4 + theta ** 2 / 2).sum(), [theta], radius=1e-6)
    assert smooth == pytest.approx(3 * theta0 ** 2 + 1, rel=1e-4)
    assert gnorm == pytest.approx(theta0 ** 3 + theta0)
    assert smooth <= 1 + 3 * gnorm
    assert theta.item() == theta0
