"""Atomic checkpoints, RNG state capture and the every-N-steps checkpoint callback.

A checkpoint holds everything needed for an exact resume: model, optimizer, scheduler, grad scaler,
step/epoch/position in the epoch, the torch/CUDA/numpy/python RNG states of every rank and the
state of stateful callbacks. Files are written to a temp file and moved with os.replace, so a kill
during the write leaves the previous checkpoint intact; the temp files a SIGKILL leaves behind are
removed by the next save or load of the same path. (https://kexue.fm/archives/6794)
"""
from __future__ import annotations

import glob
import os
import random
import re
import secrets
import string

import numpy as np
import torch

from .._validate import check_bool, check_int
from .callbacks import Callback

__all__ = ["atomic_save", "remove_stale_temp_files", "get_rng_state", "set_rng_state", "ModelCheckpoint"]

_TMP = ".tmp-"


def _temp_pattern(base: str) -> re.Pattern:
    """Temp files of target `base` only: `.tmp-<base>.<8 hex>` (and the older mkstemp form `.tmp-<base><8>`)."""
    return re.compile(rf"^{re.escape(_TMP + base)}(\.[0-9a-f]{{8}}|[a-z0-9_]{{8}})$")


def remove_stale_temp_files(path: str | os.PathLike) -> list[str]:
    """Delete the temp files an interrupted `atomic_save(..., path)` left next to `path`; -> the removed paths.

    Only one process may write a given path at a time (rank 0 under DDP), so a temp file of this target that
    exists when a new save or a load starts belongs to a dead writer."""
    path = os.fspath(path)
    folder, base = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pattern, removed = _temp_pattern(base), []
    for name in names:
        if pattern.match(name):
            try:
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
            except OSError:
                pass
    return removed


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temp file in the same directory, fsync, then os.replace onto `path`.

    A failed write (full disk, unwritable folder) raises an OSError naming `path` and the cause; the temp
    file is removed and a previous file at `path` is left intact."""
    path = os.fspath(path)
    folder, base = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    if not base:
        raise ValueError(f"path must name a file, got {path!r}")
    tmp = os.path.join(folder, f"{_TMP}{base}.{secrets.token_hex(4)}")
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temp_files(path)
        with open(tmp, "xb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:          # torch's C++ writer raises RuntimeError on a short write
        _remove_quietly(tmp)
        msg = (f"could not write checkpoint {path!r}: {type(e).__name__}: {e}; "
               "a previous file at this path, if any, is intact")
        code = getattr(e, "errno", None)
        raise (OSError(code, msg) if code else OSError(msg)) from e
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(folder)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


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


def _template_fields(path: str) -> list[str]:
    """The `{field}` names of a checkpoint path template; only `step` and `epoch` exist."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(path) if f is not None]
        bad = [f for f in fields if f not in ("step", "epoch")]
        if not bad:
            path.format(step=0, epoch=0)
    except (ValueError, IndexError, KeyError) as e:
        raise ValueError(f"path {path!r} is not a valid template ({e}); it may hold {{step}} and {{epoch}}, "
                         "e.g. 'ckpt-{epoch}-{step:06d}.pt'") from None
    if bad:
        raise ValueError(f"path {path!r} may only hold the fields {{step}} and {{epoch}}, got {bad}")
    return fields


class ModelCheckpoint(Callback):
    """Save `trainer.state_dict()` every `every_n_steps` optimizer updates and/or every `every_n_epochs`.

    `path` may contain `{step}` and `{epoch}` (format specs allowed). Only rank 0 writes; resume with
    `trainer.fit(..., resume_from=path)` or `resume_from="auto"` (the newest file this callback wrote).
    It runs after every other callback of the same hook (`runs_last`), so a checkpoint holds the finished
    step or epoch of all of them (EMA update, History row, ...), whatever the order of the callback list.
    Weights with NaN/inf are refused (FloatingPointError) unless `allow_non_finite=True`.
    """

    runs_last = True

    def __init__(self, path: str | os.PathLike, every_n_steps: int | None = None,
                 every_n_epochs: int | None = None, allow_non_finite: bool = False) -> None:
        for name, v in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs)):
            if v is not None:
                check_int(name, v, low=1)
        check_bool("allow_non_finite", allow_non_finite)
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        if every_n_steps is None and every_n_epochs is None:
            every_n_epochs = 1
        self.path, self.every_n_steps, self.every_n_epochs = os.fspath(path), every_n_steps, every_n_epochs
        self.fields = _template_fields(self.path)
        self.allow_non_finite = allow_non_finite
        self.last_saved: str | None = None

    def _save(self) -> None:
        t = self.trainer
        path = self.path.format(step=t.global_step, epoch=t.epoch)
        t.save_checkpoint(path, allow_non_finite=self.allow_non_finite)
        self.last_saved = path

    def latest(self) -> str | None:
        """The newest existing file of this template (highest step, then epoch), or None."""
        if not self.fields:
            return self.path if os.path.exists(self.path) else None
        regex, pattern, seen = "", "", set()
        for literal, field, spec, _ in string.Formatter().parse(self.path):
            regex, pattern = regex + re.escape(literal), pattern + glob.escape(literal)
            if field is not None:
                regex += r"(\d+)" if field in seen else rf"(?P<{field}>\d+)"
                pattern += "*"
                seen.add(field)
        best, best_key = None, None
        for found in glob.glob(pattern):
            m = re.fullmatch(regex, found)
            if m is None:
                continue
            key = tuple(int(m.group(f)) if f in m.groupdict() else -1 for f in ("step", "epoch"))
            if best_key is None or key > best_key:
                best, best_key = found, key
        return best

    def on_train_batch_end(self, batch, logs=None):
        t = self.trainer
        if self.every_n_steps and t.last_step_updated and t.global_step % self.every_n_steps == 0:
            self._save()

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0:
            self._save()
