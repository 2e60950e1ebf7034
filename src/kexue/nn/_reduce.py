"""The batch mean of a loss, defined on an empty batch: 0 with the graph kept (a mean over nothing is NaN,
and a NaN loss poisons every parameter it reaches)."""
from __future__ import annotations

from torch import Tensor

__all__ = ["mean_or_zero"]


def mean_or_zero(x: Tensor) -> Tensor:
    """x.mean(), or x.sum() (= 0, differentiable) when x has no element."""
    return x.mean() if x.numel() else x.sum()
