"""Atomic checkpoints, RNG state capture and the every-N-steps checkpoint callback.

A checkpoint holds everything needed for an exact resume: model, optimizer, scheduler, grad scaler,
step/epoch/position in the epoch, the torch/CUDA/numpy/python RNG states of every rank and the
state of stateful callbacks. Files are written to a temp file and moved with os.replace, so a kill
during the write leaves the previous checkpoint intact. (https://kexue.fm/archives/6794)
"""
from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import torch

from .callbacks import Callback

__all__ = ["atomic_save", "get_rng_state", "set_rng_state", "ModelCheckpoint"]


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same directory, then os.replace onto `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def get_rng_state() -> dict:
    """torch (CPU and every CUDA device), numpy and python RNG states, loadable with weights_only."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of `get_rng_state`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ModelCheckpoint(Callback):
    """Save `trainer.state_dict()` every `every_n_steps` optimizer steps and/or every `every_n_epochs`.

    `path` may contain `{step}` and `{epoch}`. Only rank 0 writes; resume with
    `trainer.fit(..., resume_from=path)`.
    """

    def __init__(self, path: str | os.PathLike, every_n_steps: int | None = None,
                 every_n_epochs: int | None = None) -> None:
        for name, v in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs)):
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive int or None, got {v!r}")
        if every_n_steps is None and every_n_epochs is None:
            every_n_epochs = 1
        self.path, self.every_n_steps, self.every_n_epochs = os.fspath(path), every_n_steps, every_n_epochs
        self.last_saved: str | None = None

    def _save(self) -> None:
        t = self.trainer
        path = self.path.format(step=t.global_step, epoch=t.epoch)
        t.save_checkpoint(path)
        self.last_saved = path

    def on_train_batch_end(self, batch, logs=None):
        if self.every_n_steps and self.trainer.global_step % self.every_n_steps == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0:
            self._save()
