"""Property tests for kexue.train (issue 8): a resume from any stopping point, with generated batch sizes,
accumulation (trainer- and optimizer-level), EMA and data kinds, equals the uninterrupted run bitwise; generated
bad arguments to Trainer, fit, the callbacks and DataGenerator give clear errors naming the argument."""
import math

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

from kexue.data import DataGenerator
from kexue.optim import GradientAccumulation
from kexue.train import (EMA, CSVLogger, EarlyStopping, EvaluateAndSaveBest, LambdaCallback, ModelCheckpoint,
                         PiecewiseLinearSchedule, TerminateOnNaN, Trainer, linear_warmup_decay)
from tests.property.clear_error import valid_or_clear_error
from tests.train import tiny


def _make(n, opt_accum, accum, use_ema, kind, batch_size):
    m = tiny.model()
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    if opt_accum > 1:
        opt = GradientAccumulation(opt, opt_accum)
    tr = Trainer(m, opt, F.cross_entropy, accum_steps=accum, seed=2)
    ds = tiny.data(n=n)
    if kind == "generator":
        items = [(ds.tensors[0][i], ds.tensors[1][i]) for i in range(n)]
        data = DataGenerator(items, batch_size, collate=lambda b: (torch.stack([x for x, _ in b]),
                                                                   torch.stack([y for _, y in b])),
                             encode=lambda it: None if float(it[0][3]) > 1.2 else it)    # drops some samples
    else:
        data = ds
    return tr, data, ([EMA(0.8)] if use_ema else [])


@pytest.mark.timeout(120)
@settings(max_examples=60)
@given(n=st.integers(4, 20), batch_size=st.integers(1, 6), accum=st.integers(1, 3), opt_accum=st.integers(1, 2),
       epochs=st.integers(1, 3), use_ema=st.booleans(), kind=st.sampled_from(["map", "generator"]),
       stop_frac=st.floats(0.0, 1.0))
def test_resume_from_any_point_equals_the_uninterrupted_run(tmp_path_factory, n, batch_size, accum, opt_accum,
                                                            epochs, use_ema, kind, stop_frac):
    ref, data, cbs = _make(n, opt_accum, accum, use_ema, kind, batch_size)
    ref.fit(data, epochs=epochs, batch_size=batch_size, callbacks=cbs, verbose=0)
    total = math.ceil(math.ceil(n / batch_size) / accum) * epochs          # trainer steps (an upper bound)
    stop_at = 1 + int(stop_frac * (total - 1))
    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    part, data, cbs = _make(n, opt_accum, accum, use_ema, kind, batch_size)
    calls = []

    def cut(b, logs):
        calls.append(b)
        if len(calls) == stop_at:
            part.save_checkpoint(path)
            part.stop_training = True
    part.fit(data, epochs=epochs, batch_size=batch_size, callbacks=cbs + [LambdaCallback(on_train_batch_end=cut)],
             verbose=0)
    if not path.exists():                   # stop_at beyond the real number of steps (dropped samples)
        part.save_checkpoint(path)
    res, data, cbs = _make(n, opt_accum, accum, use_ema, kind, batch_size)
    res.fit(data, epochs=epochs, batch_size=batch_size, callbacks=cbs, resume_from=path, verbose=0)
    assert res.global_step == ref.global_step and res.epoch == ref.epoch
    tiny.equal_trees(res.module.state_dict(), ref.module.state_dict())
    tiny.equal_trees(res.optimizer.state_dict(), ref.optimizer.state_dict())
    if use_ema:
        tiny.equal_trees(res.ema.state_dict(), ref.ema.state_dict())


BAD = st.one_of(st.integers(-3, 0), st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: v != int(v)
                                                                                           if math.isfinite(v)
                                                                                           else True),
                st.text(max_size=3), st.none(), st.just([1]), st.just({"a": 1}), st.booleans())

TRAINER_ARGS = ["optimizer", "loss_fn", "metrics", "scheduler", "accum_steps", "clip_grad_norm", "precision",
                "device", "seed", "terminate_on_nan", "distributed", "target_keys"]
FIT_ARGS = ["train_data", "epochs", "batch_size", "valid_data", "callbacks", "shuffle", "collate_fn", "resume_from",
            "verbose"]


@pytest.mark.timeout(60)
@settings(max_examples=120)
@given(where=st.sampled_from(["trainer", "fit"]), i=st.integers(0, 100), value=BAD)
def test_bad_trainer_and_fit_arguments_give_clear_errors(tmp_path_factory, where, i, value):
    ds = tiny.data(n=8)
    if where == "trainer":
        name = TRAINER_ARGS[i % len(TRAINER_ARGS)]
        assume(not (name == "loss_fn" and value is None))     # valid: the model must then return its loss
        m = tiny.model()
        kw = {"optimizer": torch.optim.SGD(m.parameters(), lr=0.1), "loss_fn": F.cross_entropy, name: value}
        with valid_or_clear_error(name):
            tr = Trainer(m, **kw)
            if tr.optimizer is not None:
                tr.fit(ds, epochs=1, batch_size=4, verbose=0)
    else:
        name = FIT_ARGS[i % len(FIT_ARGS)]
        m = tiny.model()
        tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
        kw = {"train_data": ds, "epochs": 1, "batch_size": 4, "verbose": 0, name: value}
        if name == "resume_from" and isinstance(value, str) and value not in ("", "auto"):
            kw["resume_from"] = str(tmp_path_factory.mktemp("r") / (value + "x"))   # a missing file
        with valid_or_clear_error(name):
            tr.fit(**kw)


CALLBACK_ARGS = {
    EMA: ["decay", "init", "bias_correction", "include_buffers"],
    EarlyStopping: ["monitor", "mode", "patience", "min_delta", "restore_best_weights"],
    TerminateOnNaN: ["raise_error"],
    CSVLogger: ["filename", "separator", "append"],
    ModelCheckpoint: ["path", "every_n_steps", "every_n_epochs", "allow_non_finite"],
    PiecewiseLinearSchedule: ["schedule", "from_zero"],
    EvaluateAndSaveBest: ["evaluate_fn", "monitor", "mode", "path", "use_ema", "restore_best_at_end", "restart",
                          "verbose"],
    DataGenerator: ["data", "batch_size", "encode", "collate", "shuffle", "buffer_size", "seed", "drop_last"],
}
VALID = {ModelCheckpoint: {"path": "ck.pt"}, CSVLogger: {"filename": "log.csv"},
         EvaluateAndSaveBest: {"evaluate_fn": lambda m: 0.0}, PiecewiseLinearSchedule: {"schedule": {2: 1.0}},
         DataGenerator: {"data": [1, 2, 3]}}


@pytest.mark.timeout(60)
@settings(max_examples=150)
@given(cls=st.sampled_from(sorted(CALLBACK_ARGS, key=lambda c: c.__name__)), i=st.integers(0, 100), value=BAD)
def test_bad_callback_and_generator_arguments_give_clear_errors(tmp_path_factory, cls, i, value):
    name = CALLBACK_ARGS[cls][i % len(CALLBACK_ARGS[cls])]
    kw = dict(VALID.get(cls, {}))
    kw[name] = value
    for k in ("path", "filename"):
        if k in kw and k != name:
            kw[k] = str(tmp_path_factory.mktemp("cb") / kw[k])
    cwd = os.getcwd()                  # generated relative paths (and default ones) land in a temp folder
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        _build_and_fit(cls, kw, name)
    finally:
        os.chdir(cwd)


def _build_and_fit(cls, kw, name):
    with valid_or_clear_error(name):
        cb = cls(**kw)
        if cls is DataGenerator:
            list(cb)
            return
        m = tiny.model()
        tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy)
        tr.fit(tiny.data(n=8), epochs=1, batch_size=4, valid_data=tiny.data(n=4), callbacks=[cb], verbose=0)


@pytest.mark.timeout(30)
@given(warmup=BAD | st.integers(0, 5), total=BAD | st.integers(1, 9), ratio=BAD | st.floats(0, 1))
def test_bad_schedule_helper_arguments_give_clear_errors(warmup, total, ratio):
    opt = torch.optim.SGD(tiny.model().parameters(), lr=0.1)
    with valid_or_clear_error("warmup_steps", "total_steps", "final_ratio"):
        linear_warmup_decay(opt, warmup, total, ratio)
