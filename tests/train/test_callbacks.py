"""Callbacks: evaluate-and-save-best (+EMA, restart), early stopping, NaN guard, EMA evaluation."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from kexue.train import (EMA, EarlyStopping, EvaluateAndSaveBest, LambdaCallback, RestartPolicy, TerminateOnNaN,
                         Trainer)


def _setup(seed=0, n=24):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    ds = TensorDataset(x, (x[:, 0] > 0).long())
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    return ds, m, Trainer(m, torch.optim.Adam(m.parameters(), lr=0.05), F.cross_entropy)


def _snap(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_save_best_keeps_and_restores_the_best_epoch(tmp_path):
    ds, m, tr = _setup()
    scores, at_end = iter([0.5, 0.7, 0.6]), []
    best = EvaluateAndSaveBest(lambda model: {"acc": next(scores)}, monitor="acc", path=tmp_path / "best.pt",
                               use_ema=False)
    rec = LambdaCallback(on_epoch_end=lambda e, logs: at_end.append(_snap(m)))
    hist = tr.fit(ds, epochs=3, batch_size=8, callbacks=[rec, best], verbose=0)
    assert best.best == 0.7 and best.best_epoch == 1
    assert _equal(_snap(m), at_end[1]) and not _equal(at_end[1], at_end[2])
    assert _equal(torch.load(tmp_path / "best.pt"), at_end[1])
    assert hist.history["best_acc"] == [0.5, 0.7, 0.7]


def test_save_best_with_ema_saves_the_bias_corrected_average(tmp_path):
    ds, m, tr = _setup()
    decay, raw = 0.9, []
    scores = iter([0.1, 0.9, 0.2])
    rec = LambdaCallback(on_train_batch_end=lambda b, logs: raw.append(_snap(m)))
    best = EvaluateAndSaveBest(lambda model: next(scores), path=tmp_path / "best.pt", use_ema=True)
    tr.fit(ds, epochs=3, batch_size=8, callbacks=[rec, EMA(decay=decay), best], verbose=0)
    t = 6                                                   # 3 steps per epoch, best after epoch 1
    for k in raw[0]:
        avg = sum((1 - decay) * decay ** (t - 1 - s) * raw[s][k] for s in range(t)) / (1 - decay ** t)
        torch.testing.assert_close(torch.load(tmp_path / "best.pt")[k], avg, atol=1e-12, rtol=0)


def test_restart_reloads_best_resets_optimizer_lr_and_ema(tmp_path):
    ds, m, tr = _setup()
    scores, seen = iter([0.5, 0.7, 0.6, 0.8]), {}
    ema = EMA(decay=0.9)
    best = EvaluateAndSaveBest(lambda model: next(scores), path=None, use_ema=False,
                               restart=RestartPolicy(patience=1, every=None, lr=1e-3))

    def check(epoch, logs):
        if epoch == 1:
            seen["best"] = _snap(m)
        if epoch == 2:
            seen.update(state=len(tr.optimizer.state), lr=tr.optimizer.param_groups[0]["lr"],
                        weights=_snap(m), ema_updates=ema.ema.num_updates)
    tr.fit(ds, epochs=4, batch_size=8, callbacks=[ema, best, LambdaCallback(on_epoch_end=check)], verbose=0)
    assert best.restarts == 1 and seen["state"] == 0 and seen["lr"] == 1e-3 and seen["ema_updates"] == 0
    assert _equal(seen["weights"], seen["best"]) and best.best_epoch == 3


def test_early_stopping_patience_and_restore_best_weights():
    ds, m, tr = _setup()
    scores, snaps = iter([1.0, 2.0, 2.0, 2.0, 2.0]), []

    def put(epoch, logs):
        logs["score"] = next(scores)
        snaps.append(_snap(m))
    es = EarlyStopping(monitor="score", mode="max", patience=1, restore_best_weights=True)
    hist = tr.fit(ds, epochs=5, batch_size=8, callbacks=[LambdaCallback(on_epoch_end=put), es], verbose=0)
    assert len(hist.history["loss"]) == 3 and es.stopped_epoch == 2 and tr.epoch == 3
    assert _equal(_snap(m), snaps[1])
    with pytest.raises(KeyError, match="val_loss"):
        _setup()[2].fit(ds, epochs=1, batch_size=8, callbacks=[EarlyStopping()], verbose=0)


class _Poison(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.poison = inner, False

    def forward(self, x):
        out = self.inner(x)
        return out * float("nan") if self.poison else out


@pytest.mark.parametrize("raise_error", [True, False])
def test_nan_guard_names_the_step_and_keeps_weights(raise_error):
    ds, inner, _ = _setup()
    m = _Poison(inner)
    tr = Trainer(m, torch.optim.Adam(m.parameters(), lr=0.05), F.cross_entropy)
    snaps = []

    def arm(batch, logs=None):
        m.poison = tr.global_step == 4                      # the 5th optimizer step gets a NaN loss
    cbs = [LambdaCallback(on_train_batch_begin=arm, on_train_batch_end=lambda b, logs: snaps.append(_snap(m)))]
    if raise_error:
        with pytest.raises(FloatingPointError, match=r"at step 5 \(epoch 1, batch 1\)"):
            tr.fit(ds, epochs=3, batch_size=8, callbacks=cbs, verbose=0)
    else:
        guard = TerminateOnNaN(raise_error=False)
        tr.fit(ds, epochs=3, batch_size=8, callbacks=cbs + [guard], verbose=0)
        assert "step 5" in guard.message and tr.stop_training
    assert tr.global_step == 4 and _equal(_snap(m), snaps[3])


def test_validation_runs_under_ema_and_training_continues_from_raw_weights():
    ds, m, tr = _setup()
    ema, raw = EMA(decay=0.5, init="copy"), []
    rec = LambdaCallback(on_train_batch_end=lambda b, logs: raw.append(_snap(m)))
    hist = tr.fit(ds, epochs=2, batch_size=8, valid_data=ds, callbacks=[rec, ema], verbose=0)
    assert _equal(_snap(m), raw[-1])                                   # raw weights after fit
    with ema.ema.applied():
        expect = F.cross_entropy(m(ds.tensors[0]), ds.tensors[1]).item()
    assert hist.history["val_loss"][-1] == pytest.approx(expect, abs=1e-12)
    assert hist.history["val_loss"][-1] != pytest.approx(tr.evaluate(ds)["loss"], abs=1e-9)
