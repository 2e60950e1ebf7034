"""EMAWeights / ExponentialMovingAverage: closed forms of spec nlp/04 and parity with torch's AveragedModel."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from kexue.optim import EMAWeights, ExponentialMovingAverage, GradientAccumulation


def test_constant_weights_closed_forms():
    theta = nn.Parameter(torch.randn(5))
    m, t = 0.9, 30
    zero = EMAWeights([theta], decay=m, init="zeros", bias_correction=False)
    corrected = EMAWeights([theta], decay=m, init="zeros", bias_correction=True)
    copy = EMAWeights([theta], decay=m, init="copy")
    for _ in range(t):
        for e in (zero, corrected, copy):
            e.update()
    assert torch.allclose(zero.shadow[0], (1 - m ** t) * theta, atol=1e-14, rtol=0)
    assert torch.allclose(corrected.averaged()[0], theta, atol=1e-14, rtol=0)
    assert torch.allclose(copy.shadow[0], theta, atol=1e-14, rtol=0)


def test_linear_trajectory_geometric_sum():
    """θ_t = t·v: zero-init θ̄_t = (1 − m)·v·Σ_s s·m^(t−s) = v·(t(1 − m) − m(1 − m^t))/(1 − m)."""
    v = torch.randn(4)
    theta = nn.Parameter(torch.zeros(4))
    m = 0.8
    ema = EMAWeights([theta], decay=m, bias_correction=False)
    for t in range(1, 26):
        with torch.no_grad():
            theta.copy_(t * v)
        ema.update()
        expect = v * (t * (1 - m) - m * (1 - m ** t)) / (1 - m)
        assert torch.allclose(ema.shadow[0], expect, atol=1e-12, rtol=0)


def test_apply_restore_bit_exact_and_errors(kit):
    model = kit.mlp()
    ema = EMAWeights(model, decay=0.5)
    with pytest.raises(RuntimeError, match="num_updates=0"):
        ema.apply()
    ema.update()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = kit.snapshot(model)
    with ema.applied():
        assert torch.allclose(next(model.parameters()), before[0] - 1.0, atol=1e-14)
        with pytest.raises(RuntimeError, match="apply\\(\\) called twice"):
            ema.apply()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    with pytest.raises(RuntimeError, match="without a previous apply"):
        ema.restore()


def test_parity_with_averaged_model(kit):
    model = kit.mlp()
    opt = ExponentialMovingAverage(torch.optim.Adam(model.parameters(), lr=1e-2), decay=0.9, init="copy")
    avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=False)
    avg.update_parameters(model)                                 # first call copies θ0
    for x, y in kit.batches(20):
        opt.zero_grad()
        kit.loss(model, x, y).backward()
        opt.step()
        avg.update_parameters(model)
    with opt:
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), avg.module.parameters()))


def test_wrapper_leaves_the_trajectory_and_counts_real_updates(kit):
    a, b = kit.mlp(), kit.mlp()
    oa = ExponentialMovingAverage(GradientAccumulation(torch.optim.Adam(a.parameters(), lr=1e-2), 2))
    ob = GradientAccumulation(torch.optim.Adam(b.parameters(), lr=1e-2), 2)
    for opt, model in ((oa, a), (ob, b)):
        for x, y in kit.batches(10):
            opt.zero_grad()
            kit.loss(model, x, y).backward()
            opt.step()
    assert kit.max_diff(a, b) == 0.0
    assert oa.ema.num_updates == 5


def test_module_buffers_and_state_dict(kit):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMAWeights(model, decay=0.9, init="copy", include_buffers=True)
    assert len(ema.shadow) == 6                                 # 4 params + running mean/var
    model.train()
    model(torch.randn(8, 3))
    ema.update()
    other = EMAWeights(model, decay=0.9, init="copy", include_buffers=True)
    other.load_state_dict(ema.state_dict())
    assert all(torch.equal(s, t) for s, t in zip(other.shadow, ema.shadow)) and other.num_updates == 1
    ema.reset()
    assert ema.num_updates == 0 and all(torch.equal(s, t) for s, t in zip(ema.shadow, ema.tensors))


def test_bad_arguments_raise(kit):
    with pytest.raises(ValueError, match=r"decay must be a finite number in \[0.0, 1.0\), got 1.5"):
        EMAWeights(kit.mlp(), decay=1.5)
    with pytest.raises(ValueError, match=r"init must be one of \['zeros', 'copy'\], got 'ones'"):
        EMAWeights(kit.mlp(), init="ones")
    with pytest.raises(TypeError, match="got one Tensor"):
        EMAWeights(torch.zeros(3))


@pytest.mark.parametrize("init", ["zeros", "copy"])
def test_callback_and_optimizer_wrapper_are_one_average(kit, init):
    """Issue 9: the three EMA names are one core. `kexue.train.EMA` (callback) and `ExponentialMovingAverage`
    (optimizer wrapper) each keep an `EMAWeights` and update it after the same real updates: equal shadows."""
    from kexue.train import EMA, Trainer
    model = kit.mlp()
    opt = ExponentialMovingAverage(GradientAccumulation(torch.optim.SGD(model.parameters(), lr=0.1), 2),
                                   decay=0.9, init=init)
    callback = EMA(decay=0.9, init=init, include_buffers=False)
    xs, ys = zip(*kit.batches(8))
    data = torch.utils.data.TensorDataset(torch.cat(xs), torch.cat(ys))                 # 64 samples
    trainer = Trainer(model, opt, loss_fn=lambda out, y: ((out - y) ** 2).mean())
    trainer.fit(data, epochs=1, batch_size=8, callbacks=[callback], shuffle=False, verbose=0)
    assert isinstance(callback.ema, EMAWeights) and isinstance(opt.ema, EMAWeights)
    assert callback.ema.num_updates == opt.ema.num_updates == 4                    # 8 micro-batches / 2
    assert all(torch.equal(a, b) for a, b in zip(callback.ema.shadow, opt.ema.shadow))
    with opt.applied():
        wrapped = [p.clone() for p in model.parameters()]
    with trainer.averaged_weights():
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), wrapped))
