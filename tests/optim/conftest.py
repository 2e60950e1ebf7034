"""Shared helpers for the kexue.optim tests: float64, fixed seeds, a tiny MLP and a training loop."""
from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _float64_and_seed():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


class Kit:
    """Tiny model, data and loop used across the optimizer tests."""

    @staticmethod
    def mlp(seed: int = 0, d_in: int = 6, hidden: int = 8, d_out: int = 3) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out))

    @staticmethod
    def batches(n: int, size: int = 8, seed: int = 1, d_in: int = 6, d_out: int = 3):
        g = torch.Generator().manual_seed(seed)
        return [(torch.randn(size, d_in, generator=g), torch.randn(size, d_out, generator=g)) for _ in range(n)]

    @staticmethod
    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((model(x) - y) ** 2).mean()

    @classmethod
    def train(cls, model, opt, batches, scheduler=None):
        for x, y in batches:
            opt.zero_grad()
            cls.loss(model, x, y).backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()

    @staticmethod
    def max_diff(a: nn.Module, b: nn.Module) -> float:
        return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))

    @staticmethod
    def snapshot(model: nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in model.parameters()]


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
