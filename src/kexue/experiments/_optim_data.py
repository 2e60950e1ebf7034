"""Shared recipe pieces of the optimizer articles' experiments (specs core/01-04): the digits split, the MLP,
accuracy and loss on a whole set. Private: no `EXPERIMENT` here."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def digits_split(seed: int, test_size: float = 0.2) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn's `load_digits` (1797 8×8 images, pixels / 16), stratified train/test split seeded by `seed`.

    Returns x_train (1437, 64), y_train (1437,), x_test (360, 64), y_test (360,)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(data.data / 16.0, data.target, test_size=test_size,
                                              stratify=data.target, random_state=seed)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)
    return as_x(x_tr), torch.tensor(y_tr), as_x(x_te), torch.tensor(y_te)


def mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear-ReLU(-Dropout) stack, e.g. sizes (64, 256, 256, 10); initialised from torch's global generator."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    was = model.training
    model.eval()
    acc = float((model(x).argmax(-1) == y).float().mean())
    model.train(was)
    return acc


@torch.no_grad()
def mean_loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    was = model.training
    model.eval()
    loss = float(nn.functional.cross_entropy(model(x), y))
    model.train(was)
    return loss


def param_norm(model: nn.Module) -> float:
    return math.sqrt(sum(float(p.detach().pow(2).sum()) for p in model.parameters()))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    m = sum(values) / n
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / max(n - 1, 1))


def count_spikes(losses, beta: float = 0.9, factor: float = 1.5) -> int:
    """Steps whose loss exceeds `factor` × the exponential moving average (decay `beta`) of the losses before it."""
    ema, spikes = losses[0], 0
    for value in losses[1:]:
        spikes += value > factor * ema or not math.isfinite(value)
        ema = beta * ema + (1 - beta) * value if math.isfinite(value) else ema
    return spikes
