"""Regularizers through the Trainer's step hooks equal the same regularizers in a hand-written loop."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from kexue.regularizers.adversarial import FGM, PGD, VAT, input_gradient_penalty
from kexue.regularizers.mixup import mixup
from kexue.train import AdversarialTraining, GradientPenalty, Mixup, Trainer, VirtualAdversarial


class _Text(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(13, 6), nn.Linear(6, 3)

    def forward(self, ids):
        return self.head(torch.tanh(self.embed(ids)).mean(1))


def _text_data():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 13, (16, 5), generator=g)
    return TensorDataset(ids, ids[:, 0] % 3)


def _manual(model, ds, micro_loss, batch=4, accum=2, lr=0.1):
    """Reference loop: shuffle=False, `accum` micro-batches per SGD step, micro_loss(model, x, y, scale)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = ds.tensors
    for s in range(0, len(x), batch * accum):
        opt.zero_grad()
        for i in range(s, s + batch * accum, batch):
            micro_loss(model, x[i:i + batch], y[i:i + batch], 1.0 / accum)
        opt.step()


def _fit(model, ds, callbacks, **kw):
    tr = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), F.cross_entropy, accum_steps=2, **kw)
    tr.fit(ds, epochs=1, batch_size=4, shuffle=False, callbacks=callbacks, verbose=0)
    return tr


def _assert_same(a, b, atol=1e-6):
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=atol)


def test_fgm_callback_with_accumulation_equals_manual_fgm():
    ds = _text_data()
    a, b = _Text(), _Text()
    _fit(a, ds, [AdversarialTraining(FGM(a, "embedding", epsilon=0.5))])

    def micro(m, x, y, scale):
        loss = F.cross_entropy(m(x), y)
        (g,) = torch.autograd.grad(loss, m.embed.weight, retain_graph=True)   # this micro-batch only
        (scale * loss).backward()
        fgm = FGM(m, "embedding", epsilon=0.5)
        fgm.attack([g])
        (scale * F.cross_entropy(m(x), y)).backward()
        fgm.restore()
    _manual(b, ds, micro)
    _assert_same(a, b)
    plain = _Text()
    _fit(plain, ds, [])
    assert not torch.allclose(plain.head.weight, a.head.weight)


def test_gradient_penalty_callback_equals_manual():
    ds = _text_data()
    a, b = _Text(), _Text()
    _fit(a, ds, [GradientPenalty(a.embed, epsilon=1.0)])

    def micro(m, x, y, scale):
        loss = F.cross_entropy(m(x), y)
        (scale * (loss + input_gradient_penalty(loss, m.embed.weight, 1.0))).backward()
    _manual(b, ds, micro)
    _assert_same(a, b)


def test_vat_callback_equals_manual_with_the_same_generator():
    ds = _text_data()
    a, b = _Text(), _Text()
    _fit(a, ds, [VirtualAdversarial(VAT(a, target=a.embed, epsilon=1.0, xi=1e-2,
                                        generator=torch.Generator().manual_seed(3)), weight=0.5)])
    vat = VAT(b, target=b.embed, epsilon=1.0, xi=1e-2, generator=torch.Generator().manual_seed(3))

    def micro(m, x, y, scale):
        (scale * (F.cross_entropy(m(x), y) + 0.5 * vat.loss(x))).backward()
    _manual(b, ds, micro)
    _assert_same(a, b)


def test_pgd_callback_trains_and_restores():
    ds = _text_data()
    a = _Text()
    atk = PGD(a, "embedding", epsilon=0.5, alpha=0.2, steps=2)
    tr = _fit(a, ds, [AdversarialTraining(atk)])
    assert tr.global_step == 2 and not atk.backup and all(torch.isfinite(p).all() for p in a.parameters())


def test_mixup_callback_equals_manual_and_checkpoints_its_generator(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g)
    ds = TensorDataset(x, (x[:, 0] > 0).long())
    torch.manual_seed(0)
    a = nn.Linear(4, 2)
    torch.manual_seed(0)
    b = nn.Linear(4, 2)
    mix = Mixup(alpha=0.4, num_classes=2, seed=5)
    tr = _fit(a, ds, [mix])
    gen = torch.Generator().manual_seed(5)

    def micro(m, xb, yb, scale):
        xm, ym, _, _ = mixup(xb, yb, 0.4, 2, generator=gen)
        (scale * F.cross_entropy(m(xm), ym)).backward()
    _manual(b, ds, micro)
    _assert_same(a, b)
    tr.save_checkpoint(tmp_path / "ck.pt")
    state = torch.load(tmp_path / "ck.pt")["callbacks"]["Mixup:0"]["generator"]
    assert torch.equal(state, gen.get_state())
    with pytest.raises(TypeError, match="FGM or PGD"):
        AdversarialTraining(VAT(a))
