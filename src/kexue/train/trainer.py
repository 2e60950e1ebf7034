"""Keras-like Trainer over a plain PyTorch loop: fit / evaluate / predict with callbacks, gradient
accumulation, clipping, bf16/fp16 autocast, exact resume and DDP under torchrun.
(https://kexue.fm/archives/5765; accumulation: https://kexue.fm/archives/6794)

One optimizer step = `accum_steps` micro-batches: forward, scale, backward (DDP `no_sync` on all but
the last), then unscale -> on_before_optimizer_step -> clip -> step -> zero_grad -> scheduler.step.
`batch_size` is the GLOBAL batch per micro-step; under torchrun it is split over the ranks, so the
same script gives the same updates on 1 or N processes.
"""
from __future__ import annotations

import math
import os
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .callbacks import Callback, CallbackList, History, TerminateOnNaN
from .checkpoint import atomic_save, get_rng_state, set_rng_state
from .data import build_loader, num_batches
from .distributed import gather_objects, setup_distributed
from .meter import Meter, batch_size_of, concat_outputs, to_device

__all__ = ["Trainer"]
_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Trainer:
    """fit(train_data, epochs, valid_data, callbacks) / evaluate / predict, Keras style.

    Batches are `(inputs, targets)` when `loss_fn(outputs, targets)` is given; otherwise the model
    returns its loss (a scalar, a dict with "loss" or an object with `.loss`) and metrics receive the
    whole batch as targets. Inputs that are dicts are passed as keywords, tuples as positionals.
    `metrics` maps names to fn(outputs, targets) -> scalar, averaged over every micro-batch weighted
    by its size. Override `compute_loss` or `train_step` for anything else.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable | None = None, metrics: Mapping[str, Callable] | None = None, *,
                 scheduler=None, accum_steps: int = 1, clip_grad_norm: float | None = None,
                 precision: str = "fp32", device: str | torch.device | None = None, seed: int = 0,
                 terminate_on_nan: bool = True, distributed: bool | str = "auto") -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(accum_steps, int) or accum_steps < 1:
            raise ValueError(f"accum_steps must be an int >= 1, got {accum_steps!r}")
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {list(_PRECISIONS)}, got {precision!r}")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 or None, got {clip_grad_norm!r}")
        self.dist = setup_distributed(distributed)
        if device is None:
            p = next(model.parameters(), None)
            device = self.dist.device or (p.device if p is not None else torch.device("cpu"))
        self.device = torch.device(device)
        self.module = model.to(self.device)
        self.model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                             else None) if self.dist.enabled else model
        self.optimizer, self.loss_fn, self.scheduler = optimizer, loss_fn, scheduler
        self.metrics = dict(metrics or {})
        self.accum_steps, self.clip_grad_norm, self.precision, self.seed = accum_steps, clip_grad_norm, precision, seed
        self.terminate_on_nan = terminate_on_nan
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.global_step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.stop_training = self.skip_step = False
        self.history, self.ema = History(), None
        self.callbacks = CallbackList([], trainer=self)
        self._epoch_meter, self._loss_scale = Meter(), 1.0

    # ---- small pieces a subclass may override -------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def autocast(self):
        """autocast to the chosen precision on this device (a no-op for fp32)."""
        dtype = _PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def unpack_batch(self, batch) -> tuple[Any, Any]:
        """(inputs, targets): a 2-sequence is split when a loss_fn is set; otherwise targets = batch."""
        if self.loss_fn is not None and isinstance(batch, (tuple, list)) and len(batch) == 2:
            return batch[0], batch[1]
        return batch, (None if self.loss_fn is not None else batch)

    def forward(self, inputs, model: nn.Module | None = None):
        model = self.model if model is None else model
        if isinstance(inputs, Mapping):
            return model(**inputs)
        if isinstance(inputs, (tuple, list)):
            return model(*inputs)
        return model(inputs)

    def compute_loss(self, batch, model: nn.Module | None = None, require_loss: bool = True):
        """-> (loss scalar or None, outputs, targets)."""
        inputs, targets = self.unpack_batch(batch)
        outputs = self.forward(inputs, model)
        if self.loss_fn is not None:
            loss = self.loss_fn(outputs, targets)
        else:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", outputs)
        if not (isinstance(loss, Tensor) and loss.dim() == 0):
            if not require_loss:
                return None, outputs, targets
            raise TypeError("the loss must be a scalar tensor: give Trainer(loss_fn=...) or make the model "
                            f"return a scalar / {{'loss': ...}} / obj.loss; got {type(loss).__name__}"
                            + (f" of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else ""))
        return loss, outputs, targets

    def backward(self, loss: Tensor) -> None:
        """Scale by 1/(micro-batches in this step) and by the fp16 GradScaler, then backward."""
        self.scaler.scale(loss * self._loss_scale if self._loss_scale != 1.0 else loss).backward()

    def train_step(self, batch) -> tuple[int, dict]:
        """One micro-batch: forward, regularizer hooks, backward. -> (batch size, {name: value})."""
        batch = self.callbacks.on_train_batch_data(to_device(batch, self.device))
        with self.autocast():
            loss, outputs, targets = self.compute_loss(batch)
        loss = self.callbacks.on_train_loss(loss, batch, outputs)
        self.backward(loss)
        self.callbacks.on_after_backward(batch)
        return batch_size_of(batch), {"loss": loss.detach(), **self._metric_values(outputs, targets)}

    def averaged_weights(self):
        """Context with the EMA weights swapped in when an EMA callback is attached."""
        return self.ema.applied() if self.ema is not None else nullcontext()

    # ---- the loop -------------------------------------------------------------------------------
    def fit(self, train_data: Dataset | Iterable, epochs: int = 1, batch_size: int = 32, valid_data=None,
            callbacks: Iterable[Callback] | None = None, *, shuffle: bool = True, collate_fn=None,
            resume_from: str | os.PathLike | None = None, verbose: int = 1) -> History:
        """Train until `epochs` epochs are done (counting those of a resumed checkpoint)."""
        if self.optimizer is None:
            raise ValueError("fit needs Trainer(optimizer=...), got optimizer=None")
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
        cbs = list(callbacks or [])
        if self.terminate_on_nan and not any(isinstance(c, TerminateOnNaN) for c in cbs):
            cbs.insert(0, TerminateOnNaN())
        self.callbacks = CallbackList(cbs + [self.history], trainer=self)
        if resume_from is not None and os.path.exists(resume_from):
            self.load_checkpoint(resume_from)
        self.stop_training, logs = False, {}
        self.callbacks.on_train_begin()
        while self.epoch < epochs and not self.stop_training:
            epoch = self.epoch
            loader, n_micro = self._train_loader(train_data, batch_size, shuffle, collate_fn)
            if self.batch_in_epoch == 0:
                self._epoch_meter = Meter()
            self.callbacks.on_epoch_begin(epoch)
            self.model.train()
            self._run_epoch(loader, n_micro, epochs, verbose)
            if self.batch_in_epoch < n_micro:         # stopped inside the epoch
                break
            logs = self._epoch_meter.result(self.dist.enabled)
            if valid_data is not None:
                with self.averaged_weights():
                    val = self.evaluate(valid_data, batch_size=batch_size, collate_fn=collate_fn)
                logs.update({f"val_{k}": v for k, v in val.items()})
            self.epoch, self.batch_in_epoch = epoch + 1, 0
            self.callbacks.on_epoch_end(epoch, logs)
        self.callbacks.on_train_end(logs)
        return self.history

    def _train_loader(self, data, batch_size, shuffle, collate_fn):
        if isinstance(data, Dataset) and hasattr(data, "__len__"):
            loader = build_loader(data, batch_size, world_size=self.dist.world_size, rank=self.dist.rank,
                                  shuffle=shuffle, seed=self.seed, epoch=self.epoch,
                                  start_batch=self.batch_in_epoch, collate_fn=collate_fn)
            return iter(loader), num_batches(data, batch_size, self.dist.world_size)
        if not hasattr(data, "__len__"):
            raise TypeError(f"train_data must be a map-style Dataset or a DataLoader/iterable with len(), "
                            f"got {type(data).__name__}")
        sampler = getattr(data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        it = iter(data)
        for _ in range(self.batch_in_epoch):         # user loaders: replay the consumed batches
            next(it)
        return it, len(data)

    def _run_epoch(self, it, n_micro: int, epochs: int, verbose: int) -> None:
        k = self.accum_steps
        step = self.batch_in_epoch // k
        bar = tqdm(total=math.ceil(n_micro / k), initial=step, desc=f"epoch {self.epoch + 1}/{epochs}",
                   disable=not (verbose and self.is_main), leave=verbose >= 1, dynamic_ncols=True)
        while self.batch_in_epoch < n_micro and not self.stop_training:
            group = min(k, n_micro - self.batch_in_epoch)
            self._loss_scale = 1.0 / group
            self.callbacks.on_train_batch_begin(step)
            meter = Meter()
            for j in range(group):
                sync = not self.dist.enabled or j == group - 1
                with nullcontext() if sync else self.model.no_sync():
                    n, values = self.train_step(next(it))
                meter.add(n, values)
                self._epoch_meter.add(n, values)
            logs = meter.result(self.dist.enabled)
            stepped = self._optimizer_step(step, logs)
            self.batch_in_epoch += group
            self.global_step += int(stepped)
            self.callbacks.on_train_batch_end(step, logs)
            if not bar.disable:
                bar.update(1)
                bar.set_postfix({k_: f"{v:.4g}" for k_, v in logs.items()}, refresh=False)
            step += 1
        bar.close()

    def _optimizer_step(self, step: int, logs: dict) -> bool:
        self.skip_step = False
        self.scaler.unscale_(self.optimizer)
        self.callbacks.on_before_optimizer_step(step, logs)
        if not self.skip_step:
            if self.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(self.module.parameters(), self.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.skip_step:
            return False
        if self.scheduler is not None:
            self.scheduler.step()
        return True

    def _metric_values(self, outputs, targets) -> dict:
        with torch.no_grad():
            return {name: fn(outputs, targets) for name, fn in self.metrics.items()}

    # ---- evaluation and prediction --------------------------------------------------------------
    def _eval_iter(self, data, batch_size, collate_fn, shard: bool = True):
        if isinstance(data, Dataset) and hasattr(data, "__len__"):
            world, rank = (self.dist.world_size, self.dist.rank) if shard else (1, 0)
            return build_loader(data, batch_size * world if shard else batch_size, world_size=world, rank=rank,
                                train=False, collate_fn=collate_fn)
        return data

    @torch.no_grad()
    def evaluate(self, data, batch_size: int = 32, collate_fn=None) -> dict[str, float]:
        """Loss (when computable) and metrics over `data`, weighted by batch size; summed over ranks."""
        was_training = self.module.training
        self.module.eval()
        meter = Meter()
        self.callbacks.on_test_begin()
        for i, batch in enumerate(self._eval_iter(data, batch_size, collate_fn)):
            self.callbacks.on_test_batch_begin(i)
            batch = to_device(batch, self.device)
            with self.autocast():
                loss, outputs, targets = self.compute_loss(batch, self.module, require_loss=False)
            values = ({"loss": loss} if loss is not None else {}) | self._metric_values(outputs, targets)
            meter.add(batch_size_of(batch), values)
            self.callbacks.on_test_batch_end(i, None)
        logs = meter.result(self.dist.enabled)
        self.callbacks.on_test_end(logs)
        self.module.train(was_training)
        return logs

    @torch.no_grad()
    def predict(self, data, batch_size: int = 32, collate_fn=None):
        """Model outputs over `data` (this process's data, not sharded), concatenated along dim 0."""
        was_training = self.module.training
        self.module.eval()
        self.callbacks.on_predict_begin()
        outs = []
        for i, batch in enumerate(self._eval_iter(data, batch_size, collate_fn, shard=False)):
            self.callbacks.on_predict_batch_begin(i)
            inputs, _ = self.unpack_batch(to_device(batch, self.device))
            with self.autocast():
                outs.append(self.forward(inputs, self.module))
            self.callbacks.on_predict_batch_end(i, None)
        self.callbacks.on_predict_end()
        self.module.train(was_training)
        return concat_outputs(outs)

    # ---- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything for an exact resume. Collective under DDP: every rank must call it."""
        per_rank = gather_objects({"rng": get_rng_state(), "meter": self._epoch_meter.state_dict()})
        cbs = {key: cb.state_dict() for key, cb in self._stateful_callbacks()}
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(), "global_step": self.global_step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "per_rank": per_rank, "callbacks": cbs}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] is not None:
            if self.scheduler is None:
                raise ValueError("checkpoint has a scheduler state but the trainer has scheduler=None")
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.global_step, self.epoch, self.batch_in_epoch = state["global_step"], state["epoch"], state["batch_in_epoch"]
        per_rank = state["per_rank"]
        mine = per_rank[self.dist.rank] if len(per_rank) == self.dist.world_size else per_rank[0]
        set_rng_state(mine["rng"])
        self._epoch_meter = Meter.from_state_dict(mine["meter"], self.device)
        for key, cb in self._stateful_callbacks():
            if key in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][key])

    def _stateful_callbacks(self):
        """("ClassName:k", callback) for the k-th callback of that class that has a state_dict."""
        seen: dict[str, int] = {}
        for cb in self.callbacks:
            if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict"):
                name = type(cb).__name__
                seen[name] = seen.get(name, -1) + 1
                yield f"{name}:{seen[name]}", cb

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Atomic write of `state_dict()` by rank 0 (all ranks call it)."""
        state = self.state_dict()
        if self.is_main:
            atomic_save(state, path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        if not os.path.exists(path):
            raise FileNotFoundError(f"checkpoint path {os.fspath(path)!r} does not exist")
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
