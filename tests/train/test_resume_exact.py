"""Every resume is exact or a clear error; a failed load changes nothing; global_step counts real updates
(issue 8)."""
import pytest
import torch
import torch.nn.functional as F

from kexue.optim import GradientAccumulation
from kexue.train import EMA, EarlyStopping, LambdaCallback, ModelCheckpoint, PiecewiseLinearSchedule, Trainer

from . import tiny


def _trainer(opt="adam", **kw):
    m = tiny.model()
    o = torch.optim.Adam(m.parameters(), lr=0.05) if opt == "adam" else torch.optim.SGD(m.parameters(), lr=0.1,
                                                                                        momentum=0.9)
    return Trainer(m, o, F.cross_entropy, **kw)


def _stopper(tr, when):
    calls = []

    def stop(b, logs):
        calls.append(b)
        if len(calls) == when:
            tr.stop_training = True
    return LambdaCallback(on_train_batch_end=stop)


@pytest.mark.parametrize("in_grad", [True, False])
def test_optimizer_level_accumulation_resumes_exactly_mid_cycle(tmp_path, in_grad):
    ds = tiny.data(n=40)

    def make():
        m = tiny.model()
        opt = GradientAccumulation(torch.optim.Adam(m.parameters(), lr=0.05), 2, accumulate_in_grad=in_grad)
        return Trainer(m, opt, F.cross_entropy)
    ref = make()
    ref.fit(ds, epochs=2, batch_size=8, verbose=0)
    tr = make()
    tr.fit(ds, epochs=2, batch_size=8, callbacks=[_stopper(tr, 3)], verbose=0)      # 3 micro-steps: mid-cycle
    assert tr.global_step == 1
    tr.save_checkpoint(tmp_path / "ck.pt")
    res = make()
    res.fit(ds, epochs=2, batch_size=8, resume_from=tmp_path / "ck.pt", verbose=0)
    tiny.equal_trees(res.module.state_dict(), ref.module.state_dict())
    tiny.equal_trees(res.optimizer.state_dict(), ref.optimizer.state_dict())


def test_global_step_counts_real_updates_with_optimizer_level_accumulation():
    ds, m = tiny.data(n=64), tiny.model()
    opt = GradientAccumulation(torch.optim.SGD(m.parameters(), lr=0.2), 2)
    ema, lrs = EMA(0.9), []
    tr = Trainer(m, opt, F.cross_entropy)
    rec = LambdaCallback(on_before_optimizer_step=lambda b, logs: lrs.append(opt.param_groups[0]["lr"]))
    tr.fit(ds, epochs=1, batch_size=8, callbacks=[PiecewiseLinearSchedule({4: 1.0}), ema, rec], verbose=0)
    assert tr.global_step == 4 == opt.update_step and ema.ema.num_updates == 4
    assert lrs == pytest.approx([0.2 * t / 4 for t in (0, 0, 1, 1, 2, 2, 3, 3)])   # lr moves on real updates


def test_early_stopping_best_weights_survive_a_resume(tmp_path):
    ds = tiny.data()

    def run(tr, stop=None, **kw):
        es = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True, mode="max")   # "worst" = best
        cbs = [es, ModelCheckpoint(tmp_path / "ck.pt")] + ([_stopper(tr, stop)] if stop else [])
        tr.fit(ds, epochs=6, batch_size=8, callbacks=cbs, verbose=0, **kw)
        return es
    ref = _trainer()
    es = run(ref)
    assert es.stopped_epoch is not None
    tr = _trainer()
    run(tr, stop=3)                                   # one epoch done, checkpoint at its end
    res = _trainer()
    run(res, resume_from=tmp_path / "ck.pt")
    tiny.equal_trees(res.module.state_dict(), ref.module.state_dict())


def test_checkpoint_without_scheduler_state_into_a_trainer_with_a_scheduler_raises(tmp_path):
    ds = tiny.data()
    tr = _trainer()
    tr.fit(ds, epochs=1, batch_size=8, callbacks=[ModelCheckpoint(tmp_path / "ck.pt")], verbose=0)
    res = _trainer()
    before = tiny.snap(res.module)
    with pytest.raises(ValueError, match="scheduler"):
        res.fit(ds, epochs=2, batch_size=8, callbacks=[PiecewiseLinearSchedule({2: 1.0})],
                resume_from=tmp_path / "ck.pt", verbose=0)
    tiny.equal_trees(tiny.snap(res.module), before)
    assert res.global_step == 0


@pytest.mark.parametrize("change", [{"batch_size": 4}, {"accum_steps": 2}])
def test_resume_with_another_batch_size_or_accumulation_raises(tmp_path, change):
    ds = tiny.data()
    tr = _trainer()
    tr.fit(ds, epochs=2, batch_size=8, callbacks=[ModelCheckpoint(tmp_path / "ck.pt", every_n_steps=1),
                                                  _stopper(tr, 2)], verbose=0)
    res = _trainer(accum_steps=change.get("accum_steps", 1))
    with pytest.raises(ValueError, match=f"{next(iter(change))}.*{next(iter(change.values()))}"):
        res.fit(ds, epochs=2, batch_size=change.get("batch_size", 8), resume_from=tmp_path / "ck.pt", verbose=0)
    assert res.global_step == 0


def test_misspelt_resume_from_raises_and_auto_resumes_only_when_a_checkpoint_exists(tmp_path):
    ds = tiny.data()
    tr = _trainer()
    with pytest.raises(FileNotFoundError, match="ckpt.pt"):
        tr.fit(ds, epochs=1, batch_size=8, resume_from=tmp_path / "ckpt.pt", verbose=0)
    assert tr.global_step == 0
    ck = ModelCheckpoint(tmp_path / "ck-{step}.pt", every_n_steps=2)
    tr.fit(ds, epochs=1, batch_size=8, callbacks=[ck], resume_from="auto", verbose=0)     # nothing yet: fresh
    assert tr.global_step == 3 and (tmp_path / "ck-2.pt").exists()
    res = _trainer()
    res.fit(ds, epochs=1, batch_size=8, callbacks=[ModelCheckpoint(tmp_path / "ck-{step}.pt", every_n_steps=2)],
            resume_from="auto", verbose=0)
    assert res.global_step == 3
    tiny.equal_trees(res.module.state_dict(), tr.module.state_dict())
    with pytest.raises(ValueError, match="auto.*ModelCheckpoint"):
        _trainer().fit(ds, epochs=1, batch_size=8, resume_from="auto", verbose=0)


@pytest.mark.parametrize("kind", ["optimizer", "model", "callback"])
def test_a_failed_load_changes_nothing(tmp_path, kind):
    ds = tiny.data()
    src = _trainer("sgd")
    src.fit(ds, epochs=1, batch_size=8, callbacks=[EMA(0.9)], verbose=0)
    src.save_checkpoint(tmp_path / "ck.pt")
    if kind == "model":
        state = torch.load(tmp_path / "ck.pt")
        state["model"]["2.bias"] = torch.zeros(3, dtype=torch.float64)
        torch.save(state, tmp_path / "ck.pt")
    dst = _trainer("adam" if kind == "optimizer" else "sgd")
    dst.fit(ds, epochs=1, batch_size=8, callbacks=[] if kind == "callback" else [EMA(0.9)], verbose=0)
    before = dst.state_dict()
    with pytest.raises((ValueError, KeyError), match={"optimizer": "optimizer", "model": "2.bias",
                                                      "callback": "EMA"}[kind]):
        dst.load_checkpoint(tmp_path / "ck.pt")
    tiny.equal_trees(dst.state_dict(), before)


def test_mid_epoch_resume_on_another_data_set_raises(tmp_path):
    tr = _trainer()
    tr.fit(tiny.data(n=24), epochs=2, batch_size=8, callbacks=[_stopper(tr, 2)], verbose=0)
    tr.save_checkpoint(tmp_path / "ck.pt")
    res = _trainer()
    with pytest.raises(ValueError, match="train_data gives 4 .* epoch of 3"):
        res.fit(tiny.data(n=32), epochs=2, batch_size=8, resume_from=tmp_path / "ck.pt", verbose=0)


def test_resume_with_a_shuffling_dataloader_is_exact(tmp_path):
    from torch.utils.data import DataLoader

    def run(stop=None, resume=None):
        tr = _trainer()
        cbs = [_stopper(tr, stop)] if stop else []
        tr.fit(DataLoader(tiny.data(n=40), batch_size=8, shuffle=True), epochs=2, callbacks=cbs,
               resume_from=resume, verbose=0)
        return tr
    ref = run()
    part = run(stop=7)
    part.save_checkpoint(tmp_path / "ck.pt")
    res = run(resume=tmp_path / "ck.pt")
    tiny.equal_trees(res.module.state_dict(), ref.module.state_dict())


def test_load_checkpoint_before_fit_applies_callback_states_when_fit_attaches_them(tmp_path):
    ds = tiny.data()
    ref, ema_ref = _trainer(), EMA(0.8)
    ref.fit(ds, epochs=2, batch_size=8, callbacks=[ema_ref], verbose=0)
    part, ema = _trainer(), EMA(0.8)
    part.fit(ds, epochs=2, batch_size=8, callbacks=[ema, _stopper(part, 4)], verbose=0)
    part.save_checkpoint(tmp_path / "ck.pt")
    res, ema_res = _trainer(), EMA(0.8)
    res.load_checkpoint(tmp_path / "ck.pt")
    res.fit(ds, epochs=2, batch_size=8, callbacks=[ema_res], verbose=0)
    tiny.equal_trees(ema_res.state_dict(), ema_ref.state_dict())
    tiny.equal_trees(res.module.state_dict(), ref.module.state_dict())
