"""Spec core/08: mixup / SamplePairing as a linearity regulariser (items 1-5; timm is not installed)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kexue.regularizers.mixup import (MixupCollate, SamplePairingSchedule, linearity_gap, mixup,
                                      mixup_cross_entropy, mixup_embeddings, sample_mix_coef, sample_pairing)


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_mix_coef_moments(alpha):
    lam = sample_mix_coef(alpha, (100_000,), generator=torch.Generator().manual_seed(0)).double()
    assert abs(lam.mean().item() - 0.5) < 0.005
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.02)
    assert torch.equal(sample_mix_coef(0.0, (3,)), torch.ones(3))


def test_mixup_is_the_explicit_convex_combination():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 2, generator=g), torch.randint(0, 4, (8,), generator=g)
    xm, ym, lam, perm = mixup(x, y, alpha=1.0, num_classes=4, generator=g)
    assert torch.equal(perm.sort().values, torch.arange(8))
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(ym.sum(-1), torch.ones(8))
    torch.testing.assert_close(ym, lam * F.one_hot(y, 4) + (1 - lam) * F.one_hot(y[perm], 4))
    xs, ys, lam_s, _ = mixup(x, y, num_classes=4, per_sample_lam=True, perm=perm, generator=g)
    assert lam_s.shape == (8,)
    torch.testing.assert_close(xs, lam_s[:, None, None] * x + (1 - lam_s[:, None, None]) * x[perm])
    x1, y1, _, _ = mixup(x, y, num_classes=4, lam=1.0)
    assert torch.equal(x1, x) and torch.equal(y1, F.one_hot(y, 4).float())
    with pytest.raises(ValueError, match="num_classes"):
        mixup(x, y)
    with pytest.raises(ValueError, match="permutation"):
        mixup(x, y, num_classes=4, perm=torch.zeros(8, dtype=torch.long))


@pytest.mark.parametrize("per_sample", [False, True])
def test_mixed_loss_equals_soft_label_cross_entropy(per_sample):
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (16,), generator=g)
    _, ym, lam, perm = mixup(torch.zeros(16, 1), y, num_classes=5, per_sample_lam=per_sample, generator=g)
    ref = F.cross_entropy(logits, ym.double())                                 # PyTorch, probability targets
    got = mixup_cross_entropy(logits, y, y[perm], lam.double())
    assert got.item() == pytest.approx(ref.item(), abs=1e-6)


def test_sample_pairing_symmetry_over_both_orders():
    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    ce_primary, ce_soft = [], []
    with torch.no_grad():
        for i in range(6):
            for j in range(6):
                xt, yt = sample_pairing(x[[i, j]], y[[i, j]], perm=torch.tensor([1, 0]))
                ce_primary.append(F.cross_entropy(f(xt[:1]), yt[:1]))
                soft = (F.one_hot(y[i], 4) + F.one_hot(y[j], 4)).double()[None] / 2
                ce_soft.append(F.cross_entropy(f(xt[:1]), soft))
    assert torch.stack(ce_primary).mean().item() == pytest.approx(torch.stack(ce_soft).mean().item(), abs=1e-12)


def test_linearity_gap_zero_for_linear_and_positive_for_mlp():
    g = torch.Generator().manual_seed(0)
    xa, xb, eps = torch.randn(50, 4, generator=g), torch.randn(50, 4, generator=g), torch.rand(50, generator=g)
    assert linearity_gap(nn.Linear(4, 3), xa, xb, eps).max().item() < 1e-5
    mlp = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))
    assert linearity_gap(mlp, xa, xb, eps).mean().item() > 1e-3


def _train(mix: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 2, generator=g)
    y = ((x[:, 0] * x[:, 1] > 0).long() + (x[:, 0] > 1).long())                   # 3 classes, nonlinear
    torch.manual_seed(seed)
    f = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.Adam(f.parameters(), lr=1e-2)
    for _ in range(150):
        xb, yb = mixup(x, y, num_classes=3, per_sample_lam=True, generator=g)[:2] if mix else (x, y)
        opt.zero_grad()
        F.cross_entropy(f(xb), yb).backward()
        opt.step()
    return f


@pytest.mark.parametrize("seed", [0, 1])
def test_mixup_training_makes_the_predicted_distribution_more_linear(seed):
    # mixed labels are probabilities, so the functional equation is on p(y|x) = softmax(f(x))
    g = torch.Generator().manual_seed(99)
    xa, xb, eps = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g), torch.rand(500, generator=g)
    gaps = {}
    for mix in (False, True):
        f = _train(mix, seed)
        gaps[mix] = linearity_gap(lambda z: f(z).softmax(-1), xa, xb, eps).mean().item()
    # measured over seeds 0-4 x ATEN_CPU_CAPABILITY in {default, avx2, avx512}: ratio 0.43 to 0.52
    assert gaps[True] < 0.7 * gaps[False]                                           # >= 30 % smaller


def test_schedule_collate_and_embeddings():
    s = SamplePairingSchedule(start_epoch=2, on_epochs=2, off_epochs=1, stop_epoch=8)
    assert [s.active(e) for e in range(9)] == [False, False, True, True, False, True, True, False, False]
    ds = TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    xb, yb = next(iter(DataLoader(ds, batch_size=8, collate_fn=MixupCollate(0.4, num_classes=2))))
    assert xb.shape == (8, 3) and yb.shape == (8, 2)
    torch.testing.assert_close(yb.sum(-1), torch.ones(8))
    xp, yp = next(iter(DataLoader(ds, batch_size=8, collate_fn=MixupCollate(mode="sample_pairing"))))
    assert torch.equal(yp, ds.tensors[1])
    a, b = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    torch.testing.assert_close(mixup_embeddings(a, b, torch.tensor([0.3, 1.0])),
                               torch.stack([0.3 * a[0] + 0.7 * b[0], a[1]]))
    with pytest.raises(ValueError, match="same shape"):
        mixup_embeddings(a, b[:, :3], 0.5)


@pytest.mark.parametrize("mode", ["mixup", "sample_pairing"])
def test_mixup_callback_is_the_collate_mixer(mode):
    """Issue 9: one mixup. The Trainer callback and the collate_fn wrapper mix a collated batch with the same
    code: with generators in the same state they give bit-identical batches."""
    from kexue.train import Mixup
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, generator=g), torch.randint(0, 4, (6,), generator=g)
    callback = Mixup(alpha=0.4, num_classes=4, mode=mode, seed=3)
    collate = MixupCollate(0.4, num_classes=4, mode=mode, generator=torch.Generator().manual_seed(3))
    for _ in range(3):
        xa, ya = callback.on_train_batch_data((x, y))
        xb, yb = collate([(x[i], y[i]) for i in range(6)])
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert isinstance(callback.mixer, MixupCollate)


@pytest.mark.parametrize("kw, exc, name", [
    (dict(alpha=float("nan")), ValueError, "alpha"), (dict(alpha="1"), TypeError, "alpha"),
    (dict(mode="cutmix"), ValueError, "mode"), (dict(num_classes=0), ValueError, "num_classes"),
    (dict(num_classes=2.0), TypeError, "num_classes"),
])
def test_both_mixup_forms_check_their_arguments_when_built(kw, exc, name):
    """The callback accepted alpha=nan and num_classes=0 and failed at the first batch (or mixed with NaN)."""
    from kexue.train import Mixup
    for build in (Mixup, MixupCollate):
        with pytest.raises(exc, match=name):
            build(**kw)
