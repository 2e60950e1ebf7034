"""Checkpoints: atomic writes, exact in-process resume, and resume after a SIGKILL'd subprocess."""
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from kexue.train import LambdaCallback, ModelCheckpoint, Trainer, atomic_save

from . import train_script

SCRIPT = os.path.join(os.path.dirname(__file__), "train_script.py")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_atomic_save_replaces_and_never_leaves_partial_files(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_save({"a": torch.ones(2)}, path)
    atomic_save({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path)["a"], torch.zeros(2))

    def boom(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"a": torch.full((2,), 7.0)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["a"], torch.zeros(2))           # old checkpoint intact
    assert os.listdir(tmp_path) == ["ck.pt"]                            # temp file removed


def test_in_process_resume_is_bit_exact(tmp_path):
    ref = tmp_path / "ref.pt"
    train_script.main(["--out", str(ref)])
    ck, out = tmp_path / "ck.pt", tmp_path / "resumed.pt"
    stop_at = 7                                                          # mid-epoch (3 steps per epoch)

    # interrupt: same script logic, stop after step 7 with a checkpoint at step 4... then resume
    import kexue.train.trainer as tmod
    orig_fit = tmod.Trainer.fit

    def fit_and_stop(self, *a, callbacks=None, **kw):
        def stop(batch, logs):
            if self.global_step == stop_at:
                self.stop_training = True
        return orig_fit(self, *a, callbacks=list(callbacks) + [LambdaCallback(on_train_batch_end=stop)], **kw)
    tmod.Trainer.fit = fit_and_stop
    try:
        train_script.main(["--out", str(out), "--ckpt", str(ck)])
    finally:
        tmod.Trainer.fit = orig_fit
    assert torch.load(ck)["global_step"] == 4
    train_script.main(["--out", str(out), "--ckpt", str(ck)])
    a, b = torch.load(ref), torch.load(out)
    assert a["global_step"] == b["global_step"] == 9
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["history"] == b["history"]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    ref, out, ck = tmp_path / "ref.pt", tmp_path / "out.pt", tmp_path / "ck.pt"
    train_script.main(["--out", str(ref)])
    killed = subprocess.run([sys.executable, SCRIPT, "--out", str(out), "--ckpt", str(ck), "--kill-at", "7"],
                            env=_env(), capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists() and torch.load(ck)["global_step"] == 4       # killed 3 steps after the checkpoint
    train_script.main(["--out", str(out), "--ckpt", str(ck)])          # the same script, resumed in-process
    a, b = torch.load(ref), torch.load(out)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_resume_from_missing_path_raises_and_auto_starts_fresh(tmp_path):
    m = nn.Linear(3, 2)
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    ds = TensorDataset(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    with pytest.raises(FileNotFoundError, match="none.pt"):
        tr.fit(ds, epochs=1, batch_size=4, resume_from=tmp_path / "none.pt", verbose=0)
    tr.fit(ds, epochs=1, batch_size=4, resume_from="auto", verbose=0,
           callbacks=[ModelCheckpoint(tmp_path / "e{epoch}.pt")])
    assert tr.global_step == 2 and (tmp_path / "e1.pt").exists()
    with pytest.raises(FileNotFoundError, match="none.pt"):
        tr.load_checkpoint(tmp_path / "none.pt")
