"""NaN guard on what is applied: a finite loss with non-finite gradients is never stepped, and no checkpoint ever
holds non-finite weights unless asked for (issue 8)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.train import LambdaCallback, ModelCheckpoint, TerminateOnNaN, Trainer

from . import tiny


class _SqrtTrap(nn.Module):
    """loss + where(c, 0, sqrt(-|w|-1)): the value stays finite, the gradient is NaN when `armed`."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.armed = inner, False

    def forward(self, x):
        out = self.inner(x)
        w = self.inner[0].weight
        if not self.armed:
            return out
        return out + torch.where(torch.tensor(True), torch.zeros((), dtype=w.dtype), torch.sqrt(-w.abs().sum() - 1))


def _run(tmp_path, clip, guard):
    ds, m = tiny.data(), _SqrtTrap(tiny.model())
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy, clip_grad_norm=clip)
    snaps = []

    def arm(batch, logs=None):
        m.armed = tr.global_step == 3                       # the 4th optimizer step gets NaN gradients
    cbs = [LambdaCallback(on_train_batch_begin=arm, on_train_batch_end=lambda b, logs: snaps.append(tiny.snap(m))),
           ModelCheckpoint(tmp_path / "ck.pt", every_n_steps=1)] + ([guard] if guard else [])
    return ds, m, tr, snaps, cbs


@pytest.mark.parametrize("clip", [None, 1.0])
def test_finite_loss_with_nan_gradients_is_not_applied_and_not_checkpointed(tmp_path, clip):
    ds, m, tr, snaps, cbs = _run(tmp_path, clip, None)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient.*step 4"):
        tr.fit(ds, epochs=3, batch_size=8, callbacks=cbs, verbose=0)
    assert tr.global_step == 3
    assert all(torch.isfinite(v).all() for v in m.state_dict().values())
    tiny.equal_trees(tiny.snap(m), snaps[2])                  # weights of the last finite step
    ck = torch.load(tmp_path / "ck.pt")
    assert ck["global_step"] == 3 and all(torch.isfinite(v).all() for v in ck["model"].values())


def test_nan_gradients_with_raise_error_false_skip_the_step_and_stop(tmp_path):
    guard = TerminateOnNaN(raise_error=False)
    ds, m, tr, snaps, cbs = _run(tmp_path, 1.0, guard)
    tr.fit(ds, epochs=3, batch_size=8, callbacks=cbs, verbose=0)
    assert tr.stop_training and "gradient" in guard.message and tr.global_step == 3
    tiny.equal_trees(tiny.snap(m), snaps[2])
    assert torch.load(tmp_path / "ck.pt")["global_step"] == 3


def test_checkpoint_refuses_non_finite_weights_unless_allowed(tmp_path):
    m = tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    tr.save_checkpoint(tmp_path / "good.pt")
    with torch.no_grad():
        m[2].bias[1] = float("inf")
    with pytest.raises(FloatingPointError, match=r"2\.bias.*allow_non_finite"):
        tr.save_checkpoint(tmp_path / "good.pt")
    assert torch.isfinite(torch.load(tmp_path / "good.pt")["model"]["2.bias"]).all()   # old file intact
    tr.save_checkpoint(tmp_path / "bad.pt", allow_non_finite=True)
    assert torch.isinf(torch.load(tmp_path / "bad.pt")["model"]["2.bias"][1])
    cb = ModelCheckpoint(tmp_path / "cb.pt")
    cb.set_trainer(tr)
    with pytest.raises(FloatingPointError, match="allow_non_finite"):
        cb.on_epoch_end(0)
    cb = ModelCheckpoint(tmp_path / "cb.pt", allow_non_finite=True)
    cb.set_trainer(tr)
    cb.on_epoch_end(0)
    assert (tmp_path / "cb.pt").exists()
