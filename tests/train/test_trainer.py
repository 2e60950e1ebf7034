"""Trainer: accumulation, weighted metrics, loss conventions, clipping, autocast, hooks, schedule."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from kexue.ops import piecewise_linear
from kexue.train import Callback, CSVLogger, LambdaCallback, PiecewiseLinearSchedule, Trainer
from kexue.train.data import ResumableSampler


def _data(n=32, d=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    return TensorDataset(x, (x[:, 0] + 0.3 * x[:, 1] > 0).long())


def _model(d=5, dtype=torch.float64, seed=1, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 2)).to(dtype)


def _params(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_accumulation_equals_big_batch_and_hand_loop():
    ds = _data()
    runs = {}
    for k, bs in [(1, 16), (2, 8), (4, 4)]:
        m = _model()
        Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy, accum_steps=k).fit(
            ds, epochs=2, batch_size=bs, verbose=0)
        runs[k] = _params(m)
    # hand-written loop over the same sampler order, batch 16
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for epoch in range(2):
        s = ResumableSampler(ds, shuffle=True, seed=0)
        s.set_epoch(epoch)
        idx = list(s)
        for i in range(0, len(idx), 16):
            x, y = ds[idx[i:i + 16]]
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
    ref = _params(m)
    for k, p in runs.items():
        torch.testing.assert_close(p, ref, atol=1e-12, rtol=0, msg=f"accum_steps={k}")


def test_ragged_tail_group_is_mean_of_present_micro_batches():
    ds = _data(n=12)                      # batch 4, accum 2 -> groups of (4, 4) and (4) alone
    m = _model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy, accum_steps=2)
    tr.fit(ds, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert tr.global_step == 2
    m2 = _model()
    opt = torch.optim.SGD(m2.parameters(), lr=0.1)
    for sl in (slice(0, 8), slice(8, 12)):
        x, y = ds[sl]
        opt.zero_grad()
        F.cross_entropy(m2(x), y).backward()
        opt.step()
    torch.testing.assert_close(_params(m), _params(m2), atol=1e-12, rtol=0)


def test_epoch_metrics_are_weighted_by_batch_size():
    ds = _data(n=10)                      # batches of 4, 4, 2
    m = _model()
    acc = lambda out, y: (out.argmax(-1) == y).double().mean()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.0), F.cross_entropy, {"acc": acc})
    hist = tr.fit(ds, epochs=1, batch_size=4, verbose=0)
    x, y = ds.tensors
    with torch.no_grad():
        out = m(x)
    assert hist.history["loss"][0] == pytest.approx(F.cross_entropy(out, y).item(), abs=1e-12)
    assert hist.history["acc"][0] == pytest.approx(acc(out, y).item(), abs=1e-12)
    ev = tr.evaluate(ds, batch_size=3)
    assert ev["loss"] == pytest.approx(F.cross_entropy(out, y).item(), abs=1e-12)
    torch.testing.assert_close(tr.predict(ds, batch_size=3), out)


class _LossModel(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.lin, self.kind = nn.Linear(3, 1), kind

    def forward(self, x, y):
        loss = F.mse_loss(self.lin(x).squeeze(-1), y)
        if self.kind == "dict":
            return {"loss": loss, "pred": self.lin(x)}
        if self.kind == "obj":
            return type("Out", (), {"loss": loss})()
        return loss


@pytest.mark.parametrize("kind", ["scalar", "dict", "obj"])
def test_model_that_returns_its_loss(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    torch.manual_seed(0)
    m = _LossModel(kind)
    tr = Trainer(m, torch.optim.Adam(m.parameters(), lr=0.05))
    hist = tr.fit(TensorDataset(x, y), epochs=20, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.1 * hist.history["loss"][0]      # 5 seeds x 3 SIMD levels: ratio <= 0.0012


def test_non_scalar_loss_and_bad_arguments_raise():
    m = _model()
    with pytest.raises(ValueError, match="accum_steps"):
        Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), accum_steps=0)
    with pytest.raises(ValueError, match="precision"):
        Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), precision="fp8")
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), lambda o, y: F.cross_entropy(o, y, reduction="none"))
    with pytest.raises(TypeError, match="scalar"):
        tr.fit(_data(), epochs=1, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        tr.fit(_data(), epochs=1, batch_size=0, verbose=0)


def test_clipping_matches_clip_grad_norm():
    ds = _data(n=8)
    m, m2 = _model(), _model()
    Trainer(m, torch.optim.SGD(m.parameters(), lr=0.5), F.cross_entropy, clip_grad_norm=0.01).fit(
        ds, epochs=1, batch_size=8, shuffle=False, verbose=0)
    opt = torch.optim.SGD(m2.parameters(), lr=0.5)
    F.cross_entropy(m2(ds.tensors[0]), ds.tensors[1]).backward()
    norm = nn.utils.clip_grad_norm_(m2.parameters(), 0.01)
    assert norm > 0.01                   # clipping was active
    opt.step()
    torch.testing.assert_close(_params(m), _params(m2), atol=1e-12, rtol=0)


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_on_cpu(precision, dtype):
    ds = _data(n=64, dtype=torch.float32)
    m = _model(dtype=torch.float32)
    seen = []
    m[0].register_forward_hook(lambda mod, i, o: seen.append(o.dtype))
    tr = Trainer(m, torch.optim.Adam(m.parameters(), lr=0.02), F.cross_entropy, precision=precision)
    hist = tr.fit(ds, epochs=8, batch_size=16, verbose=0)
    assert seen[0] == dtype and all(p.dtype == torch.float32 for p in m.parameters())
    assert tr.scaler.is_enabled() == (precision == "fp16")
    assert all(math.isfinite(v) for v in hist.history["loss"])
    assert hist.history["loss"][-1] < hist.history["loss"][0]     # 5 seeds x 3 SIMD levels: ratio 0.19-0.31


def test_hook_order_signatures_and_stop_training():
    calls = []

    class Rec(Callback):
        def on_train_begin(self, logs=None): calls.append(("train_begin",))
        def on_epoch_begin(self, epoch, logs=None): calls.append(("epoch_begin", epoch))
        def on_train_batch_begin(self, batch, logs=None): calls.append(("batch_begin", batch))
        def on_before_optimizer_step(self, batch, logs=None): calls.append(("pre_step", batch, sorted(logs)))
        def on_train_batch_end(self, batch, logs=None): calls.append(("batch_end", batch, sorted(logs)))
        def on_epoch_end(self, epoch, logs=None): calls.append(("epoch_end", epoch, sorted(logs)))
        def on_test_begin(self, logs=None): calls.append(("test_begin",))
        def on_test_end(self, logs=None): calls.append(("test_end",))
        def on_train_end(self, logs=None): calls.append(("train_end",))

    ds = _data(n=16)
    m = _model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    tr.fit(ds, epochs=1, batch_size=8, valid_data=ds, callbacks=[Rec()], verbose=0)
    assert calls == [("train_begin",), ("epoch_begin", 0),
                     ("batch_begin", 0), ("pre_step", 0, ["loss"]), ("batch_end", 0, ["loss"]),
                     ("batch_begin", 1), ("pre_step", 1, ["loss"]), ("batch_end", 1, ["loss"]),
                     ("test_begin",), ("test_end",), ("epoch_end", 0, ["loss", "val_loss"]), ("train_end",)]

    def stop(batch, logs):
        if tr.global_step == 3:
            tr.stop_training = True
    m = _model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    tr.fit(ds, epochs=5, batch_size=4, callbacks=[LambdaCallback(on_train_batch_end=stop)], verbose=0)
    assert tr.global_step == 3 and tr.epoch == 0 and tr.batch_in_epoch == 3
    with pytest.raises(ValueError, match="unknown hook"):
        LambdaCallback(on_batch_finish=stop)


def test_piecewise_linear_schedule_per_update():
    ds = _data(n=40)
    m = _model()
    lrs = []
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.2), F.cross_entropy)
    rec = LambdaCallback(on_before_optimizer_step=lambda b, logs: lrs.append(tr.optimizer.param_groups[0]["lr"]))
    tr.fit(ds, epochs=3, batch_size=8, callbacks=[PiecewiseLinearSchedule({4: 1.0, 8: 0.5}), rec], verbose=0)
    assert len(lrs) == 15
    expect = [0.2 * piecewise_linear(t, {4: 1.0, 8: 0.5}) for t in range(15)]
    assert lrs == pytest.approx(expect, abs=1e-15)
    assert expect[:5] == pytest.approx([0, 0.05, 0.1, 0.15, 0.2]) and expect[10] == pytest.approx(0.1)


def test_csv_logger_matches_history(tmp_path):
    ds = _data(n=16)
    m = _model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    path = tmp_path / "log.csv"
    hist = tr.fit(ds, epochs=3, batch_size=8, valid_data=ds, callbacks=[CSVLogger(path)], verbose=0)
    rows = path.read_text().strip().splitlines()
    assert rows[0] == "epoch,loss,val_loss" and len(rows) == 4
    assert [float(r.split(",")[2]) for r in rows[1:]] == pytest.approx(hist.history["val_loss"], rel=1e-12)


def test_schedule_callback_matches_kexue_optim_piecewise_linear_lr():
    from kexue.optim import PiecewiseLinearLR
    ds, schedule = _data(n=40), {4: 1.0, 8: 0.5}
    a, b = _model(), _model()
    Trainer(a, torch.optim.SGD(a.parameters(), lr=0.2), F.cross_entropy).fit(
        ds, epochs=3, batch_size=8, callbacks=[PiecewiseLinearSchedule(schedule)], verbose=0)
    Trainer(b, PiecewiseLinearLR(torch.optim.SGD(b.parameters(), lr=0.2), schedule), F.cross_entropy).fit(
        ds, epochs=3, batch_size=8, verbose=0)
    torch.testing.assert_close(_params(a), _params(b), atol=1e-12, rtol=0)
