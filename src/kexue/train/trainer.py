"""Keras-like Trainer over a plain PyTorch loop: fit / evaluate / predict with callbacks, gradient
accumulation, clipping, bf16/fp16 autocast, exact resume and DDP under torchrun.
(https://kexue.fm/archives/5765; accumulation: https://kexue.fm/archives/6794)

One optimizer step = `accum_steps` micro-batches: forward, scale, backward (DDP `no_sync` on all but
the last), then unscale -> on_before_optimizer_step -> clip -> step -> zero_grad -> scheduler.step.
`batch_size` is the GLOBAL batch per micro-step; under torchrun it is split over the ranks, so the
same script gives the same updates on 1 or N processes.

`global_step` counts real weight updates: a step the NaN guard skipped, an fp16 step the GradScaler skipped
and a micro-step of an optimizer-level accumulation (`kexue.optim.GradientAccumulation`) do not count, and
the scheduler, EMA and step-keyed checkpoints follow it.

Training data: a map-style Dataset is sharded and shuffled by (seed, epoch) (`shuffle=None` or True); an
object with `iter_epoch(epoch, shuffle, seed)` (kexue.data.DataGenerator) is asked for that epoch's order; a
DataLoader keeps its own sampler (a RandomSampler without generator is seeded by (seed, epoch)); other
iterables come as they are. A shuffle request that cannot be honoured is an error, never ignored. An
iterable may end before its len() (samples dropped by an encoder): the epoch then ends there.
"""
from __future__ import annotations

import inspect
import itertools
import math
import numbers
import os
import pickle
import time
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .._cpu import warn_if_bf16_weights_on_cpu, warn_if_slow_bf16
from .._validate import check_bool, check_choice, check_float, check_int
from ..optim.base import check_state_dict, last_step_updated, load_optimizer_state
from .callbacks import Callback, CallbackList, History, TerminateOnNaN
from .checkpoint import ModelCheckpoint, atomic_save, get_rng_state, remove_stale_temp_files, set_rng_state
from .data import build_loader, num_batches, prepare_user_loader
from .state import (REQUIRED_KEYS, check_callback_keys, check_model_state, restore,
                    snapshot)
from .distributed import gather_objects, setup_distributed
from .meter import Meter, batch_size_of, concat_outputs, to_device

__all__ = ["Trainer"]
_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _check_device(device) -> torch.device:
    """`device` as a torch.device that exists on this machine, or a ValueError naming it."""
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(f"device must be a str, int or torch.device, got {device!r} ({type(device).__name__})")
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, ValueError, AssertionError) as e:
        raise ValueError(f"device={device!r} is not usable here: {e}") from None
    return dev


def _batch_size_of(name: str, batch) -> int:
    try:
        return batch_size_of(batch)
    except ValueError as e:
        raise ValueError(f"{name} yielded a bad batch: {e}") from None


def _check_target_keys(target_keys, loss_fn) -> tuple[str, ...] | None:
    if target_keys is None:
        return None
    keys = (target_keys,) if isinstance(target_keys, str) else target_keys
    if not isinstance(keys, (tuple, list)) or not keys or not all(isinstance(k, str) for k in keys):
        raise TypeError(f"target_keys must be a str or a non-empty tuple of str (the dict keys of the targets), "
                        f"got {target_keys!r}")
    if loss_fn is None:
        raise ValueError(f"target_keys needs a loss_fn (got target_keys={target_keys!r}, loss_fn=None): without one "
                         "the whole dict goes to the model, labels included, as in transformers")
    return tuple(keys)


def _batch_mode(name: str, fn) -> str | None:
    """How `fn` wants the batch: None (it declares no parameter named `batch`: fn(outputs, targets)), "only"
    (`batch` is its second positional parameter: fn(outputs, batch=...)) or "extra" (fn(outputs, targets,
    batch=...))."""
    if fn is None:
        return None
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):             # builtins without a signature
        return None
    if "batch" not in params:
        return None
    if params["batch"].kind is inspect.Parameter.POSITIONAL_ONLY:
        raise TypeError(f"{name} declares `batch` as positional-only; the Trainer passes it as batch=...")
    positional = [n for n, p in params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    index = positional.index("batch") if "batch" in positional else None     # None: keyword-only
    return "only" if index == 1 else "extra"


def _call(fn, mode: str | None, outputs, targets, batch):
    if mode is None:
        return fn(outputs, targets)
    if mode == "only":
        return fn(outputs, batch=batch)
    return fn(outputs, targets, batch=batch)


def _explain_call(model: nn.Module, args: tuple, kwargs: dict, error: TypeError) -> None:
    """When the model's forward cannot take what the batch gave it, raise a TypeError that says how the
    batch was split (a TypeError raised inside forward is left alone)."""
    net = model.module if isinstance(model, DistributedDataParallel) else model
    try:
        inspect.signature(net.forward).bind(*args, **kwargs)
        return                                       # the call matched: the error came from inside forward
    except TypeError:
        pass
    except ValueError:                               # no signature to check against
        return
    given = f"{len(args)} positional inputs" + (f" and the keywords {sorted(kwargs)}" if kwargs else "")
    raise TypeError(f"{type(net).__name__}.forward{inspect.signature(net.forward)} cannot take the batch's "
                    f"{given}: with a loss_fn a tuple batch is split as inputs = all but the last item, targets = "
                    "the last; a dict batch as inputs = the dict minus target_keys (passed as keywords). Nest the "
                    "inputs, ((a, b), y), or set target_keys, to change the split") from error


def _fmt(value) -> str | None:
    """A log value as Keras prints it (4 decimals, scientific when tiny); None for what is not a number."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return f"{value:.4e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"


class Trainer:
    """fit(train_data, epochs, valid_data, callbacks) / evaluate / predict, Keras style.

    How a batch reaches the model and the loss (`unpack_batch`):
      - with `loss_fn`, a tuple/list batch is split as targets = its LAST item, inputs = the rest:
        `(x, y)` -> model(x) (x a tensor, or a tuple / dict unpacked as below); `(ids, segs, y)` ->
        model(ids, segs); `((ids, segs), y)` -> model(ids, segs) (build such batches with
        `kexue.data.collate_padded`);
      - with `loss_fn` and `target_keys`, a dict batch is split: targets = batch[key] (one key) or the dict
        of those keys (several), inputs = the rest of the dict, passed as keywords;
      - without `loss_fn` the whole batch goes to the model (a dict as keywords, labels included, as in
        `transformers`) and the model returns its loss (a scalar, a dict with "loss" or an object with
        `.loss`); metrics then receive the whole batch as targets;
      - otherwise (a single tensor, a dict without `target_keys`) inputs = the batch and targets = None.
    Inputs that are dicts are passed as keywords, tuples/lists as positionals. numpy arrays in a batch
    are turned into tensors (`torch.as_tensor`) and moved to the device with the rest.

    `loss_fn(outputs, targets)` -> scalar. A loss (or metric) that declares a parameter named `batch`
    also receives the whole batch (on the device, after `on_train_batch_data`) under that keyword:
    `loss_fn(outputs, targets, batch)` or, with only two parameters, `loss_fn(outputs, batch)`; so a
    padding mask is read from the inputs instead of being smuggled through the targets (as Lightning's
    `training_step(batch)` sees it). `metrics` maps names to fn(outputs, targets[, batch]) -> scalar,
    averaged over every micro-batch weighted by its size. Override `compute_loss` or `train_step` for
    anything else.

    verbose=1 (rank 0 only): a tqdm bar during the epoch, then one Keras-style line per epoch,
    `Epoch 2/5 - 12s - loss: 0.4312 - acc: 0.8123 - val_loss: ... - val_acc: ...`; verbose=2: the line only.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 loss_fn: Callable | None = None, metrics: Mapping[str, Callable] | None = None, *,
                 scheduler=None, accum_steps: int = 1, clip_grad_norm: float | None = None,
                 precision: str = "fp32", device: str | torch.device | None = None, seed: int = 0,
                 terminate_on_nan: bool = True, distributed: bool | str = "auto",
                 target_keys: str | Sequence[str] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
        if metrics is not None and (not isinstance(metrics, Mapping) or not all(map(callable, metrics.values()))):
            raise TypeError(f"metrics must map names to callables fn(outputs, targets), got {metrics!r}")
        if scheduler is not None and not all(hasattr(scheduler, a) for a in ("step", "state_dict", "load_state_dict")):
            raise TypeError(f"scheduler must have step/state_dict/load_state_dict, got {type(scheduler).__name__}")
        check_int("accum_steps", accum_steps, low=1)
        check_choice("precision", precision, _PRECISIONS)
        if clip_grad_norm is not None:
            clip_grad_norm = check_float("clip_grad_norm", clip_grad_norm, low=0.0, low_open=True)
        check_int("seed", seed)
        check_bool("terminate_on_nan", terminate_on_nan)
        self.target_keys = _check_target_keys(target_keys, loss_fn)
        self._loss_batch_mode = _batch_mode("loss_fn", loss_fn)
        self._metric_batch_modes = {k: _batch_mode(f"metrics[{k!r}]", fn) for k, fn in (metrics or {}).items()}
        self.dist = setup_distributed(distributed)
        if device is None:
            p = next(model.parameters(), None)
            device = self.dist.device or (p.device if p is not None else torch.device("cpu"))
        self.device = _check_device(device)
        self.module = model.to(self.device)
        if precision == "bf16":  # autocast to bf16: a hundred times slower than fp32 without native bf16
            warn_if_slow_bf16("Trainer(precision='bf16')", self.device)
        warn_if_bf16_weights_on_cpu(self.module, "Trainer (bf16 weights)")
        self.model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda"
                                             else None) if self.dist.enabled else model
        self.optimizer, self.loss_fn, self.scheduler = optimizer, loss_fn, scheduler
        self.metrics = dict(metrics or {})
        self.accum_steps, self.clip_grad_norm, self.precision, self.seed = accum_steps, clip_grad_norm, precision, seed
        self.terminate_on_nan = terminate_on_nan
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.global_step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.stop_training = self.skip_step = self.last_step_updated = False
        self._batch_size: int | None = None          # global batch size of the running fit
        self._epoch_batches: int | None = None       # micro-batches in the running epoch (len of the data)
        self._loaded_settings: dict = {}             # batch_size / epoch_batches of a loaded checkpoint
        self._pending_callback_state: dict | None = None   # loaded before fit() attached the callbacks
        self._in_fit, self._nan_guards = False, []
        self.history, self.ema = History(), None
        self.verbose = 1                             # the running fit's verbose (callbacks may follow it)
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
        """(inputs, targets) by the rule of the class docstring: with a loss_fn a tuple/list of >= 2 items is
        (inputs = all but the last, targets = the last), a dict is split by `target_keys`; without a loss_fn
        the targets are the whole batch."""
        if self.loss_fn is None:
            return batch, batch
        if isinstance(batch, (tuple, list)) and len(batch) >= 2:
            return (batch[0] if len(batch) == 2 else tuple(batch[:-1])), batch[-1]
        if isinstance(batch, Mapping) and self.target_keys is not None:
            missing = [k for k in self.target_keys if k not in batch]
            if missing:
                raise KeyError(f"target_keys={list(self.target_keys)}: the batch has no key {missing[0]!r}; its "
                               f"keys are {list(batch)}")
            inputs = {k: v for k, v in batch.items() if k not in self.target_keys}
            if len(self.target_keys) == 1:
                return inputs, batch[self.target_keys[0]]
            return inputs, {k: batch[k] for k in self.target_keys}
        return batch, None

    def forward(self, inputs, model: nn.Module | None = None):
        model = self.model if model is None else model
        args, kwargs = ((), dict(inputs)) if isinstance(inputs, Mapping) else \
            (tuple(inputs), {}) if isinstance(inputs, (tuple, list)) else ((inputs,), {})
        try:
            return model(*args, **kwargs)
        except TypeError as e:
            _explain_call(model, args, kwargs, e)
            raise

    def compute_loss(self, batch, model: nn.Module | None = None, require_loss: bool = True):
        """-> (loss scalar or None, outputs, targets)."""
        inputs, targets = self.unpack_batch(batch)
        outputs = self.forward(inputs, model)
        if self.loss_fn is not None:
            loss = _call(self.loss_fn, self._loss_batch_mode, outputs, targets, batch)
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
        batch = to_device(batch, self.device)
        _batch_size_of("train_data", batch)
        batch = self.callbacks.on_train_batch_data(batch)
        with self.autocast():
            loss, outputs, targets = self.compute_loss(batch)
        loss = self.callbacks.on_train_loss(loss, batch, outputs)
        self.backward(loss)
        self.callbacks.on_after_backward(batch)
        return batch_size_of(batch), {"loss": loss.detach(), **self._metric_values(outputs, targets, batch)}

    def averaged_weights(self):
        """Context with the EMA weights swapped in when an EMA callback is attached."""
        return self.ema.applied() if self.ema is not None else nullcontext()

    # ---- the loop -------------------------------------------------------------------------------
    def fit(self, train_data: Dataset | Iterable, epochs: int = 1, batch_size: int = 32, valid_data=None,
            callbacks: Iterable[Callback] | None = None, *, shuffle: bool | None = None, collate_fn=None,
            resume_from: str | os.PathLike | None = None, verbose: int = 1) -> History:
        """Train until `epochs` epochs are done (counting those of a resumed checkpoint).

        shuffle: None (default) shuffles a map-style Dataset and a DataGenerator, and takes other iterables as
        they come; True / False force it and raise when the data cannot follow. resume_from: a checkpoint file
        (FileNotFoundError if missing), or "auto": the newest file of the (one) ModelCheckpoint callback if
        there is one, else a fresh start.
        """
        if self.optimizer is None:
            raise ValueError("fit needs Trainer(optimizer=...), got optimizer=None")
        check_int("epochs", epochs, low=0)
        check_int("batch_size", batch_size, low=1)
        if shuffle is not None:
            check_bool("shuffle", shuffle)
        check_int("verbose", int(verbose) if isinstance(verbose, bool) else verbose, low=0)
        if isinstance(callbacks, Callback) or (callbacks is not None and not isinstance(callbacks, Iterable)):
            raise TypeError(f"callbacks must be a list of Callback, got {type(callbacks).__name__}")
        for name, data in (("train_data", train_data), ("valid_data", valid_data)):
            if (data is not None or name == "train_data") and (isinstance(data, (str, bytes, Mapping))
                                                               or not hasattr(data, "__iter__")
                                                               and not isinstance(data, Dataset)):
                raise TypeError(f"{name} must be a Dataset, DataLoader, DataGenerator or iterable of batches, got "
                                f"{type(data).__name__}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable or None, got {type(collate_fn).__name__}")
        cbs = list(callbacks or [])
        path = self._resume_path(resume_from, cbs)
        if self.terminate_on_nan and not any(isinstance(c, TerminateOnNaN) for c in cbs):
            cbs.insert(0, TerminateOnNaN())
        self.callbacks = CallbackList(cbs + [self.history], trainer=self)
        self._nan_guards = [c for c in self.callbacks if isinstance(c, TerminateOnNaN)]
        self._batch_size, self._in_fit, self.verbose = batch_size, True, int(verbose)
        try:
            if path is not None:
                self.load_checkpoint(path)
            elif self._pending_callback_state is not None:
                self._load_callback_states(self._pending_callback_state)
            self._pending_callback_state = None
            self._check_settings(batch_size=batch_size)
            self._loaded_settings.pop("batch_size", None)
            return self._fit_loop(train_data, epochs, batch_size, valid_data, shuffle, collate_fn, verbose)
        finally:
            self._in_fit = False

    def _resume_path(self, resume_from, callbacks) -> str | None:
        if resume_from is None:
            return None
        if isinstance(resume_from, str) and resume_from == "auto":
            savers = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
            if len(savers) != 1:
                raise ValueError(f'resume_from="auto" resumes from the newest file of the ModelCheckpoint in '
                                 f"callbacks, and needs exactly one; got {len(savers)}")
            return savers[0].latest()
        if not isinstance(resume_from, (str, os.PathLike)):
            raise TypeError(f"resume_from must be a path, 'auto' or None, got {type(resume_from).__name__}")
        path = os.fspath(resume_from)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"resume_from={path!r}: no such checkpoint file (use resume_from='auto' with a "
                                    "ModelCheckpoint to resume only when a checkpoint exists)")
        return path

    def _check_settings(self, **now) -> None:
        """A resume must see the batch size and epoch length of the checkpointed run."""
        for name, value in now.items():
            saved = self._loaded_settings.get(name)
            if saved is not None and value is not None and saved != value:
                raise ValueError(f"{name}={value} differs from the checkpoint's {name}={saved}: the resume would "
                                 f"not be exact (another batch size or data set); use {name}={saved}")

    def _fit_loop(self, train_data, epochs, batch_size, valid_data, shuffle, collate_fn, verbose) -> History:
        self.stop_training, logs = False, {}
        self.callbacks.on_train_begin()
        while self.epoch < epochs and not self.stop_training:
            epoch, started = self.epoch, time.monotonic()
            loader, n_micro = self._train_loader(train_data, batch_size, shuffle, collate_fn)
            if self.batch_in_epoch == 0:
                self._epoch_meter = Meter()
            self.callbacks.on_epoch_begin(epoch)
            self.model.train()
            if not self._run_epoch(loader, n_micro, epochs, verbose):      # stopped inside the epoch
                break
            logs = self._epoch_meter.result(self.dist.enabled)
            if valid_data is not None:
                with self.averaged_weights():
                    val = self.evaluate(valid_data, batch_size=batch_size, collate_fn=collate_fn)
                logs.update({f"val_{k}": v for k, v in val.items()})
            self.epoch, self.batch_in_epoch = epoch + 1, 0
            self.callbacks.on_epoch_end(epoch, logs)
            if verbose and self.is_main:
                print(self._epoch_line(epoch, epochs, time.monotonic() - started, logs), flush=True)
        self.callbacks.on_train_end(logs)
        return self.history

    def _train_loader(self, data, batch_size, shuffle, collate_fn):
        if isinstance(data, Dataset) and hasattr(data, "__len__") and not isinstance(data, DataLoader):
            loader = build_loader(data, batch_size, world_size=self.dist.world_size, rank=self.dist.rank,
                                  shuffle=shuffle is not False, seed=self.seed, epoch=self.epoch,
                                  start_batch=self.batch_in_epoch, collate_fn=collate_fn)
            n_micro = num_batches(data, batch_size, self.dist.world_size)
            self._start_epoch(n_micro)
            return iter(loader), n_micro
        if not hasattr(data, "__len__"):
            raise TypeError(f"train_data must be a map-style Dataset or a DataLoader/iterable with len(), "
                            f"got {type(data).__name__}")
        try:
            n_micro = len(data)
        except TypeError as e:                          # e.g. a DataGenerator over a lazy iterable
            raise TypeError(f"train_data must have a len() (batches per epoch): {e}") from None
        self._start_epoch(n_micro)
        if hasattr(data, "iter_epoch"):                 # kexue.data.DataGenerator: order = f(seed, epoch)
            it = iter(data.iter_epoch(self.epoch, shuffle=shuffle, seed=self.seed))
        else:
            prepare_user_loader(data, shuffle, self.seed, self.epoch)
            it = iter(data)
        if self.batch_in_epoch:                         # replay the consumed batches, RNG streams untouched
            rng = get_rng_state()
            skipped = sum(1 for _ in itertools.islice(it, self.batch_in_epoch))
            set_rng_state(rng)
            if skipped < self.batch_in_epoch:
                raise ValueError(f"cannot resume at micro-batch {self.batch_in_epoch} of epoch {self.epoch}: "
                                 f"train_data ends after {skipped} (another data set?)")
        return it, n_micro

    def _start_epoch(self, n_micro: int) -> None:
        saved = self._loaded_settings.get("epoch_batches")
        if self.batch_in_epoch and saved is not None and saved != n_micro:
            raise ValueError(f"train_data gives {n_micro} micro-batches per epoch but the checkpoint was taken inside "
                             f"an epoch of {saved}: resuming on another data set (or batch size) would not be exact")
        self._loaded_settings.pop("epoch_batches", None)
        self._epoch_batches = n_micro

    def _run_epoch(self, it, n_micro: int, epochs: int, verbose: int) -> bool:
        """Optimizer steps until the epoch ends (-> True) or training stops inside it (-> False)."""
        k = self.accum_steps
        step = self.batch_in_epoch // k
        bar = tqdm(total=math.ceil(n_micro / k), initial=step, desc=f"epoch {self.epoch + 1}/{epochs}",
                   disable=not (verbose == 1 and self.is_main), leave=False, dynamic_ncols=True)
        ended = False
        while self.batch_in_epoch < n_micro and not self.stop_training:
            group = min(k, n_micro - self.batch_in_epoch)
            batches = list(itertools.islice(it, group))     # fewer: the data ended before its len()
            if not batches:
                ended = True
                break
            self._loss_scale = 1.0 / len(batches)
            self.callbacks.on_train_batch_begin(step)
            meter = Meter()
            for j, batch in enumerate(batches):
                sync = not self.dist.enabled or j == len(batches) - 1
                with nullcontext() if sync else self.model.no_sync():
                    n, values = self.train_step(batch)
                meter.add(n, values)
                self._epoch_meter.add(n, values)
            logs = meter.result(self.dist.enabled)
            self.last_step_updated = self._optimizer_step(step, logs)
            self.batch_in_epoch += len(batches)
            ended = len(batches) < group
            self.global_step += int(self.last_step_updated)
            self.callbacks.on_train_batch_end(step, logs)
            if not bar.disable:
                bar.update(1)
                bar.set_postfix({k_: f"{v:.4g}" for k_, v in logs.items()}, refresh=False)
            step += 1
            if ended:
                break
        bar.close()
        return ended or self.batch_in_epoch >= n_micro

    def _epoch_line(self, epoch: int, epochs: int, seconds: float, logs: dict) -> str:
        """Keras's `Epoch 2/5 - 12s - loss: 0.4312 - acc: 0.8123 - val_loss: ... - val_acc: ...`: loss and the
        metrics in their given order, then the other training logs, then the validation ones likewise."""
        first = ["loss", *self.metrics]
        train = [k for k in first if k in logs] + [k for k in logs if k not in first and not k.startswith("val_")]
        val = [f"val_{k}" for k in first if f"val_{k}" in logs]
        val += [k for k in logs if k.startswith("val_") and k not in val]
        parts = [f"Epoch {epoch + 1}/{epochs}", f"{round(seconds)}s"]
        parts += [f"{k}: {_fmt(logs[k])}" for k in train + val if _fmt(logs[k]) is not None]
        return " - ".join(parts)

    def _grad_norm(self, step: int):
        """Total 2-norm of the gradients about to be applied (one fused norm), checked by the NaN guards."""
        if not self._nan_guards and self.clip_grad_norm is None:
            return None
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        if not grads:
            return None
        norm = nn.utils.get_total_norm(grads)
        if self._nan_guards and not self.scaler.is_enabled() and not bool(torch.isfinite(norm)):
            for guard in self._nan_guards:
                guard.non_finite_gradients(step, norm.item())
        return norm

    def _optimizer_step(self, step: int, logs: dict) -> bool:
        """unscale -> hooks -> NaN guard -> clip -> step -> zero_grad -> scheduler; -> whether weights changed."""
        self.skip_step, updated = False, False
        self.scaler.unscale_(self.optimizer)
        self.callbacks.on_before_optimizer_step(step, logs)
        norm = None if self.skip_step else self._grad_norm(step)
        if not self.skip_step:
            if self.clip_grad_norm is not None and norm is not None:
                nn.utils.clip_grads_with_norm_([p for p in self.module.parameters() if p.grad is not None],
                                               self.clip_grad_norm, norm)
            scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
            self.scaler.step(self.optimizer)
            self.scaler.update()
            skipped_by_scaler = scale is not None and self.scaler.get_scale() < scale
            updated = not skipped_by_scaler and last_step_updated(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        if updated and self.scheduler is not None:
            self.scheduler.step()
        return updated

    def _metric_values(self, outputs, targets, batch=None) -> dict:
        values = {}
        with torch.no_grad():
            for name, fn in self.metrics.items():
                v = _call(fn, self._metric_batch_modes.get(name), outputs, targets, batch)
                if isinstance(v, bool) or not (isinstance(v, numbers.Real) or isinstance(v, Tensor) and v.numel() == 1):
                    raise TypeError(f"metrics[{name!r}] must return a scalar (a number or a one-element tensor, "
                                    f"averaged over the batches), got {type(v).__name__}"
                                    + (f" of shape {tuple(v.shape)}" if isinstance(v, Tensor) else ""))
                values[name] = v
        return values

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
            _batch_size_of("valid_data" if self._in_fit else "data", batch)
            with self.autocast():
                loss, outputs, targets = self.compute_loss(batch, self.module, require_loss=False)
            values = ({"loss": loss} if loss is not None else {}) | self._metric_values(outputs, targets, batch)
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
        """Everything for an exact resume. Collective under DDP: every rank must call it.

        Gradients that live between steps (an optimizer-level accumulation in `.grad` saved mid-cycle) are
        saved too, so such a checkpoint resumes exactly."""
        per_rank = gather_objects({"rng": get_rng_state(), "meter": self._epoch_meter.state_dict()})
        cbs = {key: cb.state_dict() for key, cb in self._stateful_callbacks()}
        grads = {i: p.grad.detach().clone() for i, p in enumerate(self.module.parameters()) if p.grad is not None}
        optimizer = self.optimizer.state_dict() if self.optimizer is not None else None
        return {"model": self.module.state_dict(), "optimizer": optimizer,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": self.scaler.state_dict(), "global_step": self.global_step, "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch, "per_rank": per_rank, "callbacks": cbs, "grads": grads,
                "batch_size": self._batch_size, "accum_steps": self.accum_steps,
                "epoch_batches": self._epoch_batches if self.batch_in_epoch else None}

    def _validate_state(self, state) -> None:
        """Every check of a checkpoint against this trainer, before anything is changed."""
        if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
            got = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"not a Trainer checkpoint: expected the keys {list(REQUIRED_KEYS)}, got {got}")
        check_model_state(state["model"], self.module.state_dict())
        if self.optimizer is not None:
            if state["optimizer"] is None:
                raise ValueError("the checkpoint has no optimizer state (saved by a Trainer with optimizer=None) "
                                 f"but this trainer has {type(self.optimizer).__name__}")
            check_state_dict(self.optimizer, state["optimizer"])   # kexue.optim: wrappers and plain torch
        if state["scheduler"] is not None and self.scheduler is None:
            raise ValueError("the checkpoint has a scheduler state but the trainer has scheduler=None")
        if state["scheduler"] is None and self.scheduler is not None:
            raise ValueError(f"the trainer has a scheduler ({type(self.scheduler).__name__}) but the checkpoint has "
                             "no scheduler state: the schedule would restart from step 0")
        saved_accum = state.get("accum_steps")
        if saved_accum is not None and saved_accum != self.accum_steps:
            raise ValueError(f"accum_steps={self.accum_steps} differs from the checkpoint's accum_steps={saved_accum}:"
                             " the resume would not be exact")
        if self._in_fit:
            self._loaded_settings_check(state)
        if not isinstance(state["per_rank"], (list, tuple)) or not state["per_rank"]:
            raise ValueError("checkpoint 'per_rank' must be a non-empty list of RNG/meter states")
        params = list(self.module.parameters())
        for i, g in (state.get("grads") or {}).items():
            if not (isinstance(i, int) and 0 <= i < len(params)) or tuple(g.shape) != tuple(params[i].shape):
                raise ValueError(f"checkpoint gradient {i} does not match the model's parameters")
        if self._callbacks_attached():
            check_callback_keys(state["callbacks"], [k for k, _ in self._stateful_callbacks()])

    def _loaded_settings_check(self, state) -> None:
        saved = state.get("batch_size")
        if saved is not None and self._batch_size is not None and saved != self._batch_size:
            raise ValueError(f"batch_size={self._batch_size} differs from the checkpoint's batch_size={saved}: the "
                             f"resume would not be exact; use batch_size={saved}")

    def _callbacks_attached(self) -> bool:
        return len(self.callbacks.callbacks) > 0

    def load_state_dict(self, state: dict) -> None:
        """Validate `state` against this trainer, then load it; a failure leaves every state as it was."""
        self._validate_state(state)
        backup = snapshot(self)
        try:
            self._apply_state(state)
        except BaseException:
            restore(self, backup)
            raise

    def _apply_state(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        if self.optimizer is not None:               # a trainer without optimizer (evaluation) takes the rest
            load_optimizer_state(self.optimizer, state["optimizer"])
        if state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.global_step, self.epoch, self.batch_in_epoch = state["global_step"], state["epoch"], state["batch_in_epoch"]
        self._loaded_settings = {"batch_size": state.get("batch_size"), "epoch_batches": state.get("epoch_batches")}
        per_rank = state["per_rank"]
        mine = per_rank[self.dist.rank] if len(per_rank) == self.dist.world_size else per_rank[0]
        set_rng_state(mine["rng"])
        self._epoch_meter = Meter.from_state_dict(mine["meter"], self.device)
        saved_grads = state.get("grads") or {}
        with torch.no_grad():
            for i, p in enumerate(self.module.parameters()):
                g = saved_grads.get(i)
                p.grad = None if g is None else g.to(device=p.device, dtype=p.dtype).clone()
        if self._callbacks_attached():
            self._load_callback_states(state["callbacks"])
        else:                                         # load_checkpoint before fit: applied when fit attaches them
            self._pending_callback_state = state["callbacks"]

    def _load_callback_states(self, states: dict) -> None:
        check_callback_keys(states, [k for k, _ in self._stateful_callbacks()])
        for key, cb in self._stateful_callbacks():
            cb.load_state_dict(states[key])

    def _stateful_callbacks(self):
        """("ClassName:k", callback) for the k-th callback of that class that has a state_dict."""
        seen: dict[str, int] = {}
        for cb in self.callbacks:
            if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict"):
                name = type(cb).__name__
                seen[name] = seen.get(name, -1) + 1
                yield f"{name}:{seen[name]}", cb

    def non_finite_weights(self) -> list[str]:
        """Names of the model's floating tensors that hold NaN/inf (one reduction when all are finite)."""
        state = {k: v for k, v in self.module.state_dict().items() if v.is_floating_point() or v.is_complex()}
        if not state or bool(torch.stack([torch.isfinite(v).all() for v in state.values()]).all()):
            return []
        return [k for k, v in state.items() if not bool(torch.isfinite(v).all())]

    def save_checkpoint(self, path: str | os.PathLike, allow_non_finite: bool = False) -> None:
        """Atomic write of `state_dict()` by rank 0 (all ranks call it). Refuses (FloatingPointError) weights
        holding NaN/inf unless `allow_non_finite=True`, so a good checkpoint is never replaced by a poisoned one."""
        check_bool("allow_non_finite", allow_non_finite)
        bad = [] if allow_non_finite else self.non_finite_weights()
        if bad:
            raise FloatingPointError(f"refusing to save checkpoint {os.fspath(path)!r}: non-finite weights in "
                                     f"{bad[:5]}; pass allow_non_finite=True to save them anyway")
        state = self.state_dict()
        if self.is_main:
            atomic_save(state, path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Load a `save_checkpoint` file; checked against this trainer first, all or nothing."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint path {path!r} does not exist")
        remove_stale_temp_files(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
            raise ValueError(f"cannot read checkpoint {path!r} (truncated or not a checkpoint?): "
                             f"{type(e).__name__}: {e}") from e
        self.load_state_dict(state)
