"""SamplePairing and mixup: training on convex mixtures forces f(eps*x_a + (1-eps)*x_b) =
eps*f(x_a) + (1-eps)*f(x_b), i.e. a model as linear as possible between training points
(https://kexue.fm/archives/5693). SamplePairing is mixup with eps = 1/2 and the primary label.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import default_collate

from kexue._validate import check_choice, check_float, check_int
from kexue.nn._reduce import mean_or_zero

__all__ = ["sample_mix_coef", "mixup", "mixup_cross_entropy", "sample_pairing", "SamplePairingSchedule",
           "MixupCollate", "linearity_gap", "mixup_embeddings"]


def sample_mix_coef(alpha: float, shape: tuple[int, ...] = (), generator: torch.Generator | None = None) -> Tensor:
    """Beta(alpha, alpha) draws of `shape`; alpha <= 0 gives exactly 1 (no mixing)."""
    alpha = check_float("alpha", alpha)
    if alpha <= 0:
        return torch.ones(shape)
    if generator is None:
        return torch.distributions.Beta(float(alpha), float(alpha)).sample(torch.Size(shape))
    seed = int(torch.randint(0, 2**62, (), generator=generator))     # reproducible through the generator
    return torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, shape)).float()


def _lam_like(lam: Tensor, x: Tensor) -> Tensor:
    """Scalar lam or per-sample lam [B] -> broadcastable against x [B, ...]."""
    lam = lam.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    return lam.reshape(-1, *([1] * (x.dim() - 1))) if lam.dim() == 1 else lam


def _soft_labels(y: Tensor, num_classes: int | None) -> Tensor:
    if y.is_floating_point():
        return y
    if num_classes is None:
        raise ValueError("integer labels need num_classes (one-hot size), got num_classes=None")
    num_classes = check_int("num_classes", num_classes, 1)
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")
    return F.one_hot(y.long(), num_classes).float()


def _perm(B: int, perm: Tensor | None, device, generator) -> Tensor:
    if perm is None:
        return torch.randperm(B, generator=generator).to(device)
    if perm.shape != (B,) or not torch.equal(perm.sort().values.cpu(), torch.arange(B)):
        raise ValueError(f"perm must be a permutation of range({B}), got {perm.tolist()}")
    return perm.to(device)


def mixup(x: Tensor, y: Tensor, alpha: float = 1.0, num_classes: int | None = None, perm: Tensor | None = None,
          per_sample_lam: bool = False, generator: torch.Generator | None = None,
          lam: Tensor | float | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x [B, ...], y [B] int or [B, C] soft -> (x_mix, y_soft [B, C], lam (scalar or [B]), perm [B]).

    The partner of sample i is perm[i] (a random permutation of the batch by default)."""
    B = x.shape[0]
    if y.shape[0] != B:
        raise ValueError(f"x and y must share the batch size, got {B} and {y.shape[0]}")
    perm = _perm(B, perm, x.device, generator)
    alpha = check_float("alpha", alpha)
    if lam is None:
        lam = sample_mix_coef(alpha, (B,) if per_sample_lam else (), generator)
    lam = torch.as_tensor(lam, dtype=torch.float32, device=x.device)
    if not (torch.isfinite(lam) & (lam >= 0) & (lam <= 1)).all():
        raise ValueError(f"lam must lie in [0, 1], got {lam.tolist()}")
    y_soft = _soft_labels(y, num_classes)
    x_mix = _lam_like(lam, x) * x + (1 - _lam_like(lam, x)) * x[perm]
    y_mix = _lam_like(lam, y_soft) * y_soft + (1 - _lam_like(lam, y_soft)) * y_soft[perm]
    return x_mix, y_mix, lam, perm


def mixup_cross_entropy(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor | float) -> Tensor:
    """mean_i [lam_i CE(logits_i, y_a_i) + (1 - lam_i) CE(logits_i, y_b_i)]; equals CE with the mixed
    soft label because CE is linear in the target."""
    lam = torch.as_tensor(lam, dtype=logits.dtype, device=logits.device)
    ce_a = F.cross_entropy(logits, y_a, reduction="none")
    ce_b = F.cross_entropy(logits, y_b, reduction="none")
    return mean_or_zero(lam * ce_a + (1 - lam) * ce_b)  # an empty batch: 0, not NaN


def sample_pairing(x: Tensor, y: Tensor, perm: Tensor | None = None, coef: float = 0.5,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(coef * x + (1 - coef) * x[perm], y): the primary sample keeps its label (Inoue 2018)."""
    if not 0.0 <= coef <= 1.0:
        raise ValueError(f"coef must be in [0, 1], got {coef!r}")
    perm = _perm(x.shape[0], perm, x.device, generator)
    return coef * x + (1 - coef) * x[perm], y


class SamplePairingSchedule:
    """Inoue's on/off switch: off before `start_epoch`, then `on_epochs` on / `off_epochs` off,
    and off from `stop_epoch` on."""

    def __init__(self, start_epoch: int = 100, on_epochs: int = 8, off_epochs: int = 2,
                 stop_epoch: int | None = None) -> None:
        start_epoch, on_epochs = check_int("start_epoch", start_epoch, 0), check_int("on_epochs", on_epochs, 1)
        off_epochs = check_int("off_epochs", off_epochs, 0)
        stop_epoch = None if stop_epoch is None else check_int("stop_epoch", stop_epoch, 0)
        self.start, self.on, self.off, self.stop = start_epoch, on_epochs, off_epochs, stop_epoch

    def active(self, epoch: int) -> bool:
        if epoch < self.start or (self.stop is not None and epoch >= self.stop):
            return False
        return (epoch - self.start) % (self.on + self.off) < self.on


class MixupCollate:
    """The one mixup of a batch: `mix((x, y))` mixes a collated batch, mixup -> (x_mix, soft y) or SamplePairing
    -> (x_pair, y); calling it on samples (a collate_fn) runs `collate_fn` first. The Trainer callback
    `kexue.train.Mixup` mixes with this same object (https://kexue.fm/archives/5693)."""

    def __init__(self, alpha: float = 1.0, num_classes: int | None = None, mode: str = "mixup",
                 collate_fn: Callable = default_collate, generator: torch.Generator | None = None) -> None:
        check_choice("mode", mode, ("mixup", "sample_pairing"))
        alpha = check_float("alpha", alpha)
        num_classes = None if num_classes is None else check_int("num_classes", num_classes, 1)
        if not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable, got {type(collate_fn).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.alpha, self.num_classes, self.mode = alpha, num_classes, mode
        self.collate_fn, self.generator = collate_fn, generator

    def mix(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """(x [B, ...], y [B] or [B, C]) -> the mixed (x, y)."""
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(f"mixup needs an (x, y) batch, got {type(batch).__name__}"
                             f"{f' of {len(batch)} fields' if isinstance(batch, (tuple, list)) else ''}")
        x, y = batch
        if self.mode == "sample_pairing":
            return sample_pairing(x, y, generator=self.generator)
        x_mix, y_mix, _, _ = mixup(x, y, self.alpha, self.num_classes, generator=self.generator)
        return x_mix, y_mix

    def __call__(self, samples):
        return self.mix(self.collate_fn(samples))


@torch.no_grad()
def linearity_gap(model: Callable[[Tensor], Tensor] | nn.Module, x_a: Tensor, x_b: Tensor, eps: Tensor) -> Tensor:
    """Per pair ||f(eps x_a + (1-eps) x_b) - (eps f(x_a) + (1-eps) f(x_b))||: 0 for affine f. -> [B]."""
    e = _lam_like(torch.as_tensor(eps), x_a)
    out = model(e * x_a + (1 - e) * x_b)
    fa, fb = model(x_a), model(x_b)
    e = _lam_like(torch.as_tensor(eps), fa)
    return (out - (e * fa + (1 - e) * fb)).reshape(out.shape[0], -1).norm(dim=1)


def mixup_embeddings(emb_a: Tensor, emb_b: Tensor, lam: Tensor | float) -> Tensor:
    """Text mixup: mix embedding outputs [B, n, d] (never token ids); lam scalar or [B]."""
    if emb_a.shape != emb_b.shape:
        raise ValueError(f"emb_a and emb_b must have the same shape, got {tuple(emb_a.shape)} and {tuple(emb_b.shape)}")
    lam = _lam_like(torch.as_tensor(lam), emb_a)
    return lam * emb_a + (1 - lam) * emb_b
