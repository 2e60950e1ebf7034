"""The digits data of the regulariser articles' experiments (specs core/07-09). Private: no `EXPERIMENT` here."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from kexue._validate import check_int

__all__ = ["standardised_digits"]


def standardised_digits(seed: int, n_test: int, dtype=torch.float32) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits, shuffled by `seed`: (x_train, y_train, x_test, y_test), pixels standardised with
    the training statistics (constant pixels stay 0).  x [N, 64], y [N]."""
    n_test = check_int("n_test", n_test, 1, 1796)          # 1797 images: at least one on each side
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    x_tr, x_te = x[n_test:], x[:n_test]
    mu, sd = x_tr.mean(0), x_tr.std(0)
    sd[sd == 0] = 1.0
    as_t = lambda a: torch.tensor((a - mu) / sd, dtype=dtype)   # noqa: E731
    return as_t(x_tr), torch.tensor(y[n_test:]), as_t(x_te), torch.tensor(y[:n_test])
