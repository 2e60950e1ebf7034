"""BERT-of-Theseus training of a classifier (https://kexue.fm/archives/7575), Su's three stages minus the first:
given a fine-tuned predecessor and a (pretrained) successor, train the successor by module replacement inside the
frozen predecessor (`kexue.compress.TheseusModel`), then fine-tune the successor alone. Shared by the
bert_of_theseus experiment and examples/theseus_compression.py."""
from __future__ import annotations

import copy

import torch

from kexue._validate import check_int
from kexue.compress import ConstantReplacement, LinearReplacement, SequenceClassifier, TheseusModel
from kexue.train import Callback

from .sentiment import Encoded, fit_classifier

__all__ = ["StepReplacementSchedule", "theseus_compress"]


class StepReplacementSchedule(Callback):
    """Trainer callback: advance a replacement schedule once per optimizer step (the hybrid reads its `rate`)."""

    def __init__(self, schedule: ConstantReplacement | LinearReplacement):
        if not isinstance(schedule, (ConstantReplacement, LinearReplacement)):
            raise TypeError(f"schedule must be a ConstantReplacement or LinearReplacement, got "
                            f"{type(schedule).__name__}")
        self.schedule = schedule

    def on_train_batch_end(self, batch, logs=None):
        self.schedule.step()


def theseus_compress(predecessor: SequenceClassifier, successor: SequenceClassifier, train: Encoded, epochs: int,
                     final_epochs: int, schedule: float | ConstantReplacement | LinearReplacement = 0.5,
                     lr: float = 5e-4, seed: int = 0, batch_size: int = 32,
                     replace_embeddings: bool = True) -> tuple[SequenceClassifier, list[float]]:
    """Theseus training of a copy of `successor`'s backbone inside a frozen copy of `predecessor` (its head, pooling
    and dropout shared, the head frozen; one Bernoulli draw per module per batch), `epochs` epochs; then
    `final_epochs` of successor-only fine-tuning (0: none). Neither argument is modified. Returns the successor
    classifier (eval mode) and the loss of every update of both stages."""
    final_epochs = check_int("final_epochs", final_epochs, 0)
    if not isinstance(predecessor, SequenceClassifier) or not isinstance(successor, SequenceClassifier):
        raise TypeError(f"predecessor and successor must be SequenceClassifiers, got "
                        f"{type(predecessor).__name__} and {type(successor).__name__}")
    teacher = copy.deepcopy(predecessor).requires_grad_(False).eval()
    if isinstance(schedule, (int, float)) and not isinstance(schedule, bool):
        schedule = ConstantReplacement(schedule)
    hybrid = TheseusModel(teacher.backbone, copy.deepcopy(successor.backbone), teacher.head, scheduler=schedule,
                          replace_embeddings=replace_embeddings, generator=torch.Generator().manual_seed(seed),
                          pooling=predecessor.pooling, dropout=predecessor.dropout.p)
    hybrid.train()
    losses = fit_classifier(hybrid, train, epochs, batch_size, lr, seed, callbacks=[StepReplacementSchedule(schedule)])
    student = hybrid.export_successor()
    if final_epochs:
        losses += fit_classifier(student, train, final_epochs, batch_size, lr, seed + 1)
    return student.eval(), losses
