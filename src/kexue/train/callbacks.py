"""Keras-style callbacks: hooks with (index, logs) signatures, a CallbackList, History, CSV logging,
early stopping, NaN guard and LambdaCallback (https://kexue.fm/archives/5765).

Besides the Keras hooks, four training-step hooks let regularizers change the batch, the loss or the
gradients (https://kexue.fm/archives/7466):
  on_train_batch_data(batch) -> batch        before the forward pass (mixup)
  on_train_loss(loss, batch, outputs) -> loss before backward (gradient penalty, VAT)
  on_after_backward(batch)                    after backward (FGM / PGD extra passes)
  on_before_optimizer_step(batch, logs)       unscaled gradients, before clipping and the step

Order: callbacks run in list order, except those with `runs_last = True` (ModelCheckpoint), which run after
all the others in every hook, so a checkpoint always holds the finished step or epoch of every callback.
"""
from __future__ import annotations

import csv
import math
import os
from typing import Callable, Iterable

import torch

from .._validate import check_bool, check_choice, check_float, check_int

__all__ = ["Callback", "CallbackList", "History", "LambdaCallback", "CSVLogger", "EarlyStopping",
           "TerminateOnNaN"]

_HOOKS = [f"on_{w}_{e}" for w in ("train", "test", "predict") for e in ("begin", "end")] + [
    f"on_{w}_batch_{e}" for w in ("train", "test", "predict") for e in ("begin", "end")] + [
    "on_epoch_begin", "on_epoch_end", "on_after_backward", "on_before_optimizer_step"]


class Callback:
    """Base class: every hook is a no-op. `self.trainer` is set by `set_trainer` before training."""

    trainer = None
    runs_last = False            # True: run after every other callback in each hook (checkpoint savers)

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    @property
    def model(self):
        """The unwrapped model (not the DDP wrapper)."""
        return self.trainer.module

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...
    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...

    def on_train_batch_data(self, batch):
        return batch

    def on_train_loss(self, loss, batch, outputs):
        return loss

    def on_after_backward(self, batch, logs=None): ...
    def on_before_optimizer_step(self, batch, logs=None): ...


def _overrides(cb: Callback, name: str) -> bool:
    """True when `cb` (its class or, for LambdaCallback, the instance) defines hook `name`."""
    return name in vars(cb) or getattr(type(cb), name) is not getattr(Callback, name)


class CallbackList:
    """Dispatch each hook to the callbacks that override it (Keras `CallbackList`)."""

    def __init__(self, callbacks: Iterable[Callback] = (), trainer=None) -> None:
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be kexue.train.Callback instances, got {type(cb).__name__}")
        self.callbacks = [cb for cb in callbacks if not cb.runs_last] + [cb for cb in callbacks if cb.runs_last]
        for cb in self.callbacks:
            if trainer is not None:
                cb.set_trainer(trainer)
        self._by_hook = {h: [cb for cb in self.callbacks if _overrides(cb, h)]
                         for h in _HOOKS + ["on_train_batch_data", "on_train_loss"]}

    def __iter__(self):
        return iter(self.callbacks)

    def __getattr__(self, name: str) -> Callable:
        if name not in _HOOKS:
            raise AttributeError(name)
        targets = [getattr(cb, name) for cb in self._by_hook[name]]

        def call(*args, **kwargs):
            for fn in targets:
                fn(*args, **kwargs)
        setattr(self, name, call)            # cached: later lookups skip __getattr__
        return call

    def on_train_batch_data(self, batch):
        for cb in self._by_hook["on_train_batch_data"]:
            batch = cb.on_train_batch_data(batch)
        return batch

    def on_train_loss(self, loss, batch, outputs):
        for cb in self._by_hook["on_train_loss"]:
            loss = cb.on_train_loss(loss, batch, outputs)
        return loss


class History(Callback):
    """Per-epoch logs: `history.history["loss"]` is a list with one float per epoch (Keras)."""

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def state_dict(self) -> dict:
        return {"epoch": list(self.epoch), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.history = list(state["epoch"]), {k: list(v) for k, v in state["history"].items()}


class LambdaCallback(Callback):
    """Callback from plain functions, e.g. `LambdaCallback(on_epoch_end=lambda epoch, logs: ...)`."""

    def __init__(self, **hooks: Callable) -> None:
        allowed = set(_HOOKS) | {"on_train_batch_data", "on_train_loss"}
        for name, fn in hooks.items():
            if name not in allowed:
                raise ValueError(f"LambdaCallback got unknown hook {name!r}; expected one of {sorted(allowed)}")
            if not callable(fn):
                raise TypeError(f"LambdaCallback hook {name} must be callable, got {type(fn).__name__}")
            setattr(self, name, fn)


class CSVLogger(Callback):
    """Append one row of epoch logs per epoch to a CSV file; only rank 0 writes.

    `append=False` starts a new file for a fresh run; a resumed run (or a second `fit` on the same trainer)
    keeps the rows of the epochs already done (epoch < trainer.epoch) and drops any later ones.
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"filename must be a str or os.PathLike, got {type(filename).__name__}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator must be a one-character string, got {separator!r}")
        self.filename, self.sep, self.append = os.fspath(filename), separator, check_bool("append", append)
        self._keys: list[str] | None = None

    def on_train_begin(self, logs=None):
        self._keys = None
        if not self.trainer.is_main or not os.path.exists(self.filename):
            return
        done = self.trainer.epoch
        if not self.append and done == 0:
            os.remove(self.filename)
            return
        with open(self.filename, newline="") as f:
            reader = csv.DictReader(f, delimiter=self.sep)
            header = reader.fieldnames
            rows = list(reader)
        if not header or header[0] != "epoch":
            if not self.append:
                os.remove(self.filename)
            return
        self._keys = list(header[1:])
        if self.append:
            return
        kept = [r for r in rows if r["epoch"].isdigit() and int(r["epoch"]) < done]
        tmp = self.filename + ".tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header, delimiter=self.sep, extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
        os.replace(tmp, self.filename)

    def on_epoch_end(self, epoch, logs=None):
        if not self.trainer.is_main:
            return
        logs = dict(logs or {})
        new = not os.path.exists(self.filename) or os.path.getsize(self.filename) == 0
        if self._keys is None:
            self._keys = sorted(logs)
        with open(self.filename, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["epoch"] + self._keys, delimiter=self.sep, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({"epoch": epoch, **{k: logs.get(k, "NA") for k in self._keys}})


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs (Keras semantics)."""

    def __init__(self, monitor: str = "val_loss", mode: str = "min", patience: int = 0,
                 min_delta: float = 0.0, restore_best_weights: bool = False) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {type(monitor).__name__}")
        check_choice("mode", mode, ("min", "max"))
        patience, min_delta = check_int("patience", patience, low=0), check_float("min_delta", min_delta)
        check_bool("restore_best_weights", restore_best_weights)
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best_weights = abs(min_delta), restore_best_weights
        self.best, self.wait, self.stopped_epoch, self.best_weights = None, 0, None, None

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.monitor not in logs:
            raise KeyError(f"EarlyStopping monitor {self.monitor!r} not in logs {sorted(logs or {})}")
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None and self.stopped_epoch is not None:
            self.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait, self.stopped_epoch = state["best"], state["wait"], state["stopped_epoch"]
        weights = state["best_weights"]
        self.best_weights = None if weights is None else {k: torch.as_tensor(v) for k, v in weights.items()}


class TerminateOnNaN(Callback):
    """Raise FloatingPointError before the optimizer step when the loss or the gradients about to be applied
    are NaN/Inf, naming the step.

    The gradient check is done by the Trainer after every `on_before_optimizer_step` hook (the gradients that
    will really be clipped and applied) with one fused norm over them; it calls `non_finite_gradients`. Under
    fp16 the GradScaler skips such steps itself and the check is left to it. The weights are left as they
    were after the last finite step. With `raise_error=False` training stops (stop_training) instead, and
    `self.message` says why.
    """

    def __init__(self, raise_error: bool = True) -> None:
        self.raise_error, self.message = check_bool("raise_error", raise_error), None

    def on_before_optimizer_step(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        self._stop(f"non-finite loss {loss}", batch)

    def non_finite_gradients(self, batch, norm: float) -> None:
        """Called by the Trainer when the gradient norm about to be applied is NaN/Inf."""
        self._stop(f"non-finite gradient (total norm {norm}) with a finite loss", batch)

    def _stop(self, what: str, batch) -> None:
        t = self.trainer
        self.message = (f"{what} at step {t.global_step + 1} (epoch {t.epoch}, "
                        f"batch {batch}); the optimizer step was not taken")
        if self.raise_error:
            raise FloatingPointError(self.message)
        t.stop_training = True
        t.skip_step = True
