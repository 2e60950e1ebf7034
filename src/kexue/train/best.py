"""Evaluate-and-save-best on a task metric, with the DGCNN-style optional restart
(https://kexue.fm/archives/5765; restart from bojone/dgcnn_for_reading_comprehension).
"""
from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from kexue.optim.base import reset_state

from .._validate import check_bool, check_choice, check_float, check_int
from .callbacks import Callback
from .checkpoint import atomic_save

__all__ = ["EvaluateAndSaveBest", "RestartPolicy"]


@dataclass
class RestartPolicy:
    """Reload the best weights, reset the optimizer state and set lr = `lr` when the metric has not
    improved for `patience` epochs, every `every` epochs (None: never), or when it is worse than the
    best by more than `diverge` (None: never). The EMA average is restarted from the reloaded weights."""
    patience: int = 5
    every: int | None = 30
    diverge: float | None = None
    lr: float = 1e-4

    def __post_init__(self) -> None:
        check_int("patience", self.patience, low=1)
        if self.every is not None:
            check_int("every", self.every, low=1)
        if self.diverge is not None:
            check_float("diverge", self.diverge, low=0.0)
        check_float("lr", self.lr, low=0.0, low_open=True)


class EvaluateAndSaveBest(Callback):
    """At each epoch end: score = evaluate_fn(model) (a float or a dict holding `monitor`); when it
    beats the best, keep and save the weights (EMA weights if use_ema); reload the best at the end.

    verbose: None (default) follows the Trainer's `fit(verbose=...)`; at 1 or more rank 0 prints the
    best-so-far each epoch, as Keras's ModelCheckpoint: `Epoch 2: val_acc improved from 0.8100 to 0.8300,
    saved to best.pt` or `Epoch 3: val_acc did not improve from 0.8300`."""

    def __init__(self, evaluate_fn: Callable[[nn.Module], float | dict], monitor: str = "score",
                 mode: str = "max", path: str | os.PathLike | None = "best.pt", use_ema: bool = True,
                 restore_best_at_end: bool = True, restart: RestartPolicy | None = None,
                 verbose: int | None = None) -> None:
        check_choice("mode", mode, ("max", "min"))
        if not callable(evaluate_fn):
            raise TypeError(f"evaluate_fn must be callable, got {type(evaluate_fn).__name__}")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {monitor!r} ({type(monitor).__name__})")
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str, os.PathLike or None, got {type(path).__name__}")
        check_bool("use_ema", use_ema)
        check_bool("restore_best_at_end", restore_best_at_end)
        if restart is not None and not isinstance(restart, RestartPolicy):
            raise TypeError(f"restart must be a RestartPolicy or None, got {type(restart).__name__}")
        if verbose is not None:
            check_int("verbose", verbose, low=0)
        self.evaluate_fn, self.monitor, self.mode, self.verbose = evaluate_fn, monitor, mode, verbose
        self.path = None if path is None else os.fspath(path)
        self.use_ema, self.restore_best_at_end, self.restart = use_ema, restore_best_at_end, restart
        self.best, self.best_epoch, self.best_state, self.restarts, self.wait = None, None, None, 0, 0
        self.scores: list[float] = []

    def _score(self) -> float:
        result = self.evaluate_fn(self.model)
        if isinstance(result, dict):
            if self.monitor not in result:
                raise KeyError(f"evaluate_fn returned keys {sorted(result)}; monitor={self.monitor!r} is missing")
            result = result[self.monitor]
        return float(result)

    def _better(self, score: float) -> bool:
        return self.best is None or (score > self.best if self.mode == "max" else score < self.best)

    def on_epoch_end(self, epoch, logs=None):
        ctx = self.trainer.averaged_weights() if self.use_ema else nullcontext()
        with ctx:
            score = self._score()
            self.wait += 1
            previous = self.best
            if not math.isfinite(score):
                note = f"is {score}, not kept"
            elif not self._better(score):
                note = f"did not improve from {previous:.4f}"
            elif not self._finite_weights():
                note = f"{score:.4f} with non-finite weights, not kept"
            else:
                self.best, self.best_epoch, self.wait = score, epoch, 0
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                if self.path is not None and self.trainer.is_main:
                    atomic_save(self.best_state, self.path)
                start = f"{previous:.4f}" if previous is not None else "-inf" if self.mode == "max" else "inf"
                note = f"improved from {start} to {score:.4f}" + (f", saved to {self.path}" if self.path else "")
            self._say(epoch, note)
        self.scores.append(score)
        if logs is not None:
            logs[self.monitor], logs[f"best_{self.monitor}"] = score, self.best
        if self.restart is not None and self.best_state is not None and self._should_restart(epoch, score):
            self._say(epoch, f"restart from the best weights ({self.monitor} {self.best:.4f} at epoch "
                             f"{self.best_epoch + 1}), optimizer state reset, lr = {self.restart.lr:g}", name=False)
            self.do_restart()

    def _say(self, epoch: int, note: str, name: bool = True) -> None:
        verbose = self.verbose if self.verbose is not None else getattr(self.trainer, "verbose", 1)
        if verbose and self.trainer.is_main:
            print(f"Epoch {epoch + 1}: {self.monitor + ' ' if name else ''}{note}", flush=True)

    def _finite_weights(self) -> bool:
        """Weights holding NaN/inf are never kept or saved as the best, whatever they score."""
        floats = [v for v in self.model.state_dict().values() if v.is_floating_point()]
        return not floats or bool(torch.stack([torch.isfinite(v).all() for v in floats]).all())

    def _should_restart(self, epoch: int, score: float) -> bool:
        r = self.restart
        if self.wait >= r.patience:
            return True
        if r.every is not None and (epoch + 1) % r.every == 0:
            return True
        gap = (self.best - score) if self.mode == "max" else (score - self.best)
        return not math.isfinite(score) or (r.diverge is not None and gap > r.diverge)

    def do_restart(self) -> None:
        """Best weights back, optimizer moments cleared, lr = restart.lr, EMA restarted."""
        t = self.trainer
        self.model.load_state_dict(self.best_state)
        reset_state(t.optimizer)                 # every level of a wrapper stack (moments, slow weights, ...)
        for g in t.optimizer.param_groups:
            g["lr"] = self.restart.lr
            if "initial_lr" in g:
                g["initial_lr"] = self.restart.lr
        if t.scheduler is not None and hasattr(t.scheduler, "base_lrs"):
            t.scheduler.base_lrs = [self.restart.lr] * len(t.optimizer.param_groups)
        for cb in t.callbacks:
            if hasattr(cb, "reset_average"):
                cb.reset_average()
        self.wait = 0                            # patience counts from the restart
        self.restarts += 1

    def on_train_end(self, logs=None):
        if self.restore_best_at_end and self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state,
                "restarts": self.restarts, "wait": self.wait, "scores": list(self.scores)}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.restarts = state["best"], state["best_epoch"], state["restarts"]
        self.wait = state["wait"]
        self.best_state, self.scores = state["best_state"], list(state["scores"])
        if self.best_state is not None:
            self.best_state = {k: torch.as_tensor(v) for k, v in self.best_state.items()}
