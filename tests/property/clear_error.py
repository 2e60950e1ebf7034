"""What a "clear error" is, checked the same way by every property test."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch

CLEAR = (ValueError, TypeError, KeyError, IndexError, FileNotFoundError, NotADirectoryError, OSError)


@contextmanager
def valid_or_clear_error(*names: str):
    """Let the body succeed, or raise one of CLEAR whose message names one of `names` (the argument at fault).

    Anything else (a bare ZeroDivisionError, a RuntimeError from deep inside torch, a message that names
    no argument) fails the test with the original traceback attached.
    """
    try:
        yield
    except CLEAR as e:
        msg = str(e)
        if names and not any(n in msg for n in names):
            raise AssertionError(f"error does not name any of {names}: {type(e).__name__}: {msg}") from e


def assert_finite(*tensors) -> None:
    """No NaN or inf passed on to the caller."""
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            assert torch.isfinite(t).all(), f"non-finite values in an output of shape {tuple(t.shape)}"
        elif isinstance(t, float):
            assert math.isfinite(t) or t == -math.inf, t
