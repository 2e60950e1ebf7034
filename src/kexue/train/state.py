"""Checkpoint validation and all-or-nothing loading for the Trainer (https://kexue.fm/archives/6794).

A checkpoint is checked against the trainer BEFORE anything is changed (model keys and shapes, the optimizer
by `kexue.optim.check_state_dict`, scheduler presence, callbacks, batch size and accumulation); the load itself then
runs under a snapshot of every piece of state, so a load that still fails half-way changes nothing.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor

__all__ = ["REQUIRED_KEYS", "check_model_state", "check_callback_keys", "snapshot", "restore"]

REQUIRED_KEYS = ("model", "optimizer", "scheduler", "scaler", "global_step", "epoch", "batch_in_epoch",
                 "per_rank", "callbacks")


def _few(names) -> str:
    names = sorted(map(str, names))
    return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")


def check_model_state(saved: dict, current: dict) -> None:
    """Same keys, shapes and dtypes kinds as the model's state_dict, or a ValueError naming the first ones."""
    if not isinstance(saved, dict):
        raise ValueError(f"checkpoint 'model' must be a state_dict, got {type(saved).__name__}")
    missing, unexpected = set(current) - set(saved), set(saved) - set(current)
    if missing or unexpected:
        raise ValueError(f"checkpoint model does not match the trainer's model: missing keys [{_few(missing)}], "
                         f"unexpected keys [{_few(unexpected)}]")
    bad = [f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(v.shape)}" for k, v in current.items()
           if isinstance(v, Tensor) and (not isinstance(saved[k], Tensor) or saved[k].shape != v.shape)]
    if bad:
        raise ValueError("checkpoint model does not match the trainer's model: shape mismatch for "
                         + "; ".join(bad[:5]))


def check_callback_keys(saved: dict, current: list[str]) -> None:
    """The checkpoint holds the state of exactly the trainer's stateful callbacks."""
    if not isinstance(saved, dict):
        raise ValueError(f"checkpoint 'callbacks' must be a dict, got {type(saved).__name__}")
    lacking, extra = set(current) - set(saved), set(saved) - set(current)
    if lacking or extra:
        raise ValueError("the checkpoint's callbacks do not match the trainer's, so the resume would not be "
                         f"exact: checkpoint state without a callback here [{_few(extra)}], stateful callbacks "
                         f"here without state in the checkpoint [{_few(lacking)}]")


def snapshot(trainer) -> dict:
    """Copies of every piece of state `Trainer.load_state_dict` may change."""
    from .checkpoint import get_rng_state
    t = trainer
    return {"model": {k: v.detach().clone() for k, v in t.module.state_dict().items()},
            "optimizer": copy.deepcopy(t.optimizer.state_dict()) if t.optimizer is not None else None,
            "scheduler": copy.deepcopy(t.scheduler.state_dict()) if t.scheduler is not None else None,
            "scaler": copy.deepcopy(t.scaler.state_dict()),
            "counters": (t.global_step, t.epoch, t.batch_in_epoch, t._epoch_meter, t._loaded_settings),
            "rng": get_rng_state(),
            "callbacks": {k: copy.deepcopy(cb.state_dict()) for k, cb in t._stateful_callbacks()},
            "grads": [p.grad for p in t.module.parameters()]}


def restore(trainer, snap: dict) -> None:
    """Put back what `snapshot` copied."""
    from .checkpoint import set_rng_state
    t = trainer
    t.module.load_state_dict(snap["model"])
    if snap["optimizer"] is not None:
        t.optimizer.load_state_dict(snap["optimizer"])
    if snap["scheduler"] is not None:
        t.scheduler.load_state_dict(snap["scheduler"])
    t.scaler.load_state_dict(snap["scaler"])
    t.global_step, t.epoch, t.batch_in_epoch, t._epoch_meter, t._loaded_settings = snap["counters"]
    set_rng_state(snap["rng"])
    for k, cb in t._stateful_callbacks():
        if k in snap["callbacks"]:
            cb.load_state_dict(snap["callbacks"][k])
    with torch.no_grad():
        for p, g in zip(t.module.parameters(), snap["grads"]):
            p.grad = g
