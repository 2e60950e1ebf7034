"""Checkpoints: gathered after every callback's work whatever the list order, atomic writes that fail loudly
and leave no temporary files, path templates checked up front (issue 8)."""
import errno
import os

import pytest
import torch
import torch.nn.functional as F

from kexue.train import EMA, CSVLogger, LambdaCallback, ModelCheckpoint, Trainer, atomic_save

from . import tiny


def _fit_with(callbacks, tmp_path, stop_at=None, epochs=2):
    ds, m = tiny.data(), tiny.model()
    tr = Trainer(m, torch.optim.Adam(m.parameters(), lr=0.05), F.cross_entropy)

    def stop(b, logs):
        if tr.global_step == stop_at:
            tr.stop_training = True
    tr.fit(ds, epochs=epochs, batch_size=8, callbacks=callbacks + [LambdaCallback(on_train_batch_end=stop)],
           verbose=0)
    return tr


@pytest.mark.parametrize("ckpt_first", [True, False])
def test_step_checkpoint_holds_every_callbacks_step_work_whatever_the_order(tmp_path, ckpt_first):
    ck, ema = ModelCheckpoint(tmp_path / "ck.pt", every_n_steps=1), EMA(0.9)
    tr = _fit_with([ck, ema] if ckpt_first else [ema, ck], tmp_path, stop_at=5)
    saved = torch.load(tmp_path / "ck.pt")
    assert saved["global_step"] == 5
    tiny.equal_trees(saved["callbacks"]["EMA:0"], ema.state_dict())     # 5 EMA updates, not 4
    tiny.equal_trees(saved["model"], tr.module.state_dict())


def test_epoch_end_checkpoint_contains_the_finished_epoch(tmp_path):
    ck = ModelCheckpoint(tmp_path / "e{epoch}.pt", every_n_epochs=1)
    _fit_with([ck], tmp_path, epochs=2)
    hist = torch.load(tmp_path / "e1.pt")["callbacks"]["History:0"]
    assert hist["epoch"] == [0] and len(hist["history"]["loss"]) == 1
    assert torch.load(tmp_path / "e2.pt")["callbacks"]["History:0"]["epoch"] == [0, 1]


def test_atomic_save_on_a_full_disk_names_path_and_cause_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    atomic_save({"a": torch.zeros(2)}, path)

    def full(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=r"ck\.pt.*No space left") as e:
        atomic_save({"a": torch.ones(2)}, path)
    assert e.value.errno == errno.ENOSPC

    def torch_fail(obj, f):                       # what torch raises itself: a RuntimeError from its C++ writer
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", torch_fail)
    with pytest.raises(OSError, match=r"ck\.pt.*inline_container"):
        atomic_save({"a": torch.ones(2)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["a"], torch.zeros(2)) and os.listdir(tmp_path) == ["ck.pt"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="file"):
        atomic_save({"a": 1}, blocker / "ck.pt")              # a directory that cannot exist


def test_stale_temp_files_of_the_target_are_removed_on_the_next_save_and_load(tmp_path):
    path = tmp_path / "ck.pt"
    stale = [tmp_path / ".tmp-ck.ptab_c1234", tmp_path / ".tmp-ck.pt.0a1b2c3d"]  # an older and the current form
    other = tmp_path / ".tmp-ck.pt.x.0a1b2c3d"                                  # another target's temp file
    for f in stale + [other]:
        f.write_bytes(b"\0" * 64)
    atomic_save({"a": torch.zeros(2)}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(["ck.pt", other.name])
    m = tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    tr.save_checkpoint(path)
    stale[1].write_bytes(b"\0")
    tr.load_checkpoint(path)
    assert not stale[1].exists() and other.exists()


def test_checkpoint_path_template_is_checked_when_built(tmp_path):
    with pytest.raises(ValueError, match=r"path.*\{loss\}.*step.*epoch"):
        ModelCheckpoint(tmp_path / "ck-{loss}.pt")
    with pytest.raises(ValueError, match="path"):
        ModelCheckpoint(tmp_path / "ck-{}.pt")
    with pytest.raises(ValueError, match="path"):
        ModelCheckpoint(tmp_path / "ck-{step.",)
    ModelCheckpoint(tmp_path / "ck-{epoch:03d}-{step}.pt")


def test_csv_logger_keeps_the_rows_of_finished_epochs_on_resume(tmp_path):
    ds, log, ck = tiny.data(), tmp_path / "log.csv", tmp_path / "ck.pt"
    m = tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    tr.fit(ds, epochs=2, batch_size=8, callbacks=[CSVLogger(log), ModelCheckpoint(ck)], verbose=0)
    first = log.read_text().splitlines()
    m = tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    hist = tr.fit(ds, epochs=3, batch_size=8, callbacks=[CSVLogger(log), ModelCheckpoint(ck)], resume_from=ck,
                  verbose=0)
    rows = log.read_text().splitlines()
    assert rows[:3] == first and len(rows) == 4 and rows[3].startswith("2,")
    assert [float(r.split(",")[1]) for r in rows[1:]] == pytest.approx(hist.history["loss"], rel=1e-12)
    tr = Trainer(tiny.model(), torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    tr.fit(ds, epochs=1, batch_size=8, callbacks=[CSVLogger(log)], verbose=0)   # a fresh run starts a new file
    assert len(log.read_text().splitlines()) == 2


@pytest.mark.parametrize("damage", ["empty", "zeroed_tail", "garbage"])
def test_a_corrupt_checkpoint_is_a_clear_error_and_changes_nothing(tmp_path, damage):
    path = tmp_path / "ck.pt"
    src = Trainer(tiny.model(seed=5), None, F.cross_entropy)
    src.save_checkpoint(path)
    raw = path.read_bytes()
    path.write_bytes({"empty": b"", "zeroed_tail": raw[: len(raw) // 2] + b"\0" * (len(raw) - len(raw) // 2),
                      "garbage": b"not a checkpoint" * 10}[damage])
    m = tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    before = tr.state_dict()
    with pytest.raises(ValueError, match=r"ck\.pt"):
        tr.load_checkpoint(path)
    tiny.equal_trees(tr.state_dict(), before)


def test_optimizer_free_checkpoints_load_for_evaluation_but_not_into_training(tmp_path):
    src = Trainer(tiny.model(seed=5), None, F.cross_entropy)
    src.save_checkpoint(tmp_path / "ck.pt")
    ev = Trainer(tiny.model(), None, F.cross_entropy)
    ev.load_checkpoint(tmp_path / "ck.pt")
    tiny.equal_trees(ev.module.state_dict(), src.module.state_dict())
    m = tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
    with pytest.raises(ValueError, match="no optimizer state"):
        tr.load_checkpoint(tmp_path / "ck.pt")
