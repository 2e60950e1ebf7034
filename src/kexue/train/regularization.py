"""Regularizers as Trainer callbacks: gradient penalty, FGM/PGD, VAT and mixup/SamplePairing plug
into the step hooks (https://kexue.fm/archives/7466, https://kexue.fm/archives/5693).
"""
from __future__ import annotations

import itertools
from typing import Iterable

import torch
from torch import Tensor, nn

from ..regularizers.adversarial import FGM, PGD, VAT, input_gradient_penalty
from .._validate import check_int
from ..regularizers.mixup import MixupCollate
from .callbacks import Callback
from .meter import to_device

__all__ = ["GradientPenalty", "AdversarialTraining", "VirtualAdversarial", "Mixup"]


class GradientPenalty(Callback):
    """loss + 0.5 * eps * ||grad_wrt loss||^2 (double backprop) on every micro-batch."""

    def __init__(self, wrt: Tensor | nn.Module, epsilon: float = 1.0, normalized: bool = False) -> None:
        self.wrt, self.epsilon, self.normalized = wrt, epsilon, normalized

    def on_train_loss(self, loss, batch, outputs):
        return loss + input_gradient_penalty(loss, self.wrt, self.epsilon, self.normalized)


class AdversarialTraining(Callback):
    """FGM or PGD: after the clean backward, perturb the target along this micro-batch's gradient,
    add the gradient of the adversarial loss, and restore the target exactly."""

    def __init__(self, attacker: FGM) -> None:
        if not isinstance(attacker, FGM):
            raise TypeError(f"attacker must be an FGM or PGD instance, got {type(attacker).__name__}")
        self.attacker, self._before = attacker, None

    def on_train_loss(self, loss, batch, outputs):
        # .grad may already hold earlier micro-batches: remember it to isolate this batch's gradient
        self._before = [None if t.grad is None else t.grad.clone() for t in self.attacker.targets]
        return loss

    def _adv_loss(self, batch) -> Tensor:
        with self.trainer.autocast():
            return self.trainer.compute_loss(batch)[0]

    def on_after_backward(self, batch, logs=None):
        grads = [None if t.grad is None else (t.grad if b is None else t.grad - b)
                 for t, b in zip(self.attacker.targets, self._before)]
        if isinstance(self.attacker, PGD):
            self.attacker.attack_steps(lambda: self._adv_loss(batch), grads)
        else:
            self.attacker.attack(grads)
        try:
            self.trainer.backward(self._adv_loss(batch))
        finally:
            self.attacker.restore()


class VirtualAdversarial(Callback):
    """loss + weight * VAT loss, on the training inputs or on batches drawn from `unlabelled`."""

    def __init__(self, vat: VAT, weight: float = 1.0, unlabelled: Iterable | None = None) -> None:
        self.vat, self.weight = vat, weight
        self._source = None if unlabelled is None else itertools.cycle(unlabelled)

    def on_train_loss(self, loss, batch, outputs):
        if self._source is not None:
            inputs = to_device(next(self._source), self.trainer.device)
        else:
            inputs = self.trainer.unpack_batch(batch)[0]
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        with self.trainer.autocast():
            return loss + self.weight * self.vat.loss(*inputs)


class Mixup(Callback):
    """Mix each training batch (x, y) with `kexue.regularizers.MixupCollate.mix` (the one mixup): mixup ->
    (x_mix, soft y), sample_pairing -> (x_pair, y). The loss must accept soft targets (F.cross_entropy does).
    `schedule` (e.g. SamplePairingSchedule) switches it on per epoch. The generator state is saved in checkpoints."""

    def __init__(self, alpha: float = 1.0, num_classes: int | None = None, mode: str = "mixup",
                 schedule=None, seed: int = 0) -> None:
        seed = check_int("seed", seed)
        if schedule is not None and not callable(getattr(schedule, "active", None)):
            raise TypeError(f"schedule must have an active(epoch) method (e.g. SamplePairingSchedule) or be None, "
                            f"got {type(schedule).__name__}")
        self.generator = torch.Generator().manual_seed(seed)
        self.mixer = MixupCollate(alpha, num_classes, mode, generator=self.generator)
        self.alpha, self.num_classes, self.mode, self.schedule = self.mixer.alpha, num_classes, mode, schedule

    def on_train_batch_data(self, batch):
        if self.schedule is not None and not self.schedule.active(self.trainer.epoch):
            return batch
        return self.mixer.mix(batch)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
