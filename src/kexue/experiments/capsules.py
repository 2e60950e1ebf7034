"""揭开迷雾，来一顿美味的Capsule盛宴 / 从K-Means到Capsule (https://kexue.fm/archives/4819,
https://kexue.fm/archives/5112): train on single digits, recognise two overlapping (stacked) digits.

Digits (sklearn, 8×8) are placed at a random height in a 16×8 canvas for training; the test canvases hold two
different test digits, one above the other. Both models share a fully convolutional trunk; head A = global
average pooling + Dense(128) + Dense(10, sigmoid), head B = `kexue.nn.Capsule(10, 16, routings 3, shared)` over
the trunk's positions, class score = capsule length. Both trained with `kexue.nn.margin_loss`. The recipe only.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from kexue._validate import check_choice, check_int
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.nn import Capsule, capsule_lengths, margin_loss

CHANNELS, LR, BATCH, N_TEST, N_PAIRS = (32, 64), 1e-3, 64, 360, 1000
# mode -> (epochs, training images (None = all), test pairs)
_BUDGET = {"quick": (15, None, N_PAIRS), "full": (30, None, N_PAIRS), "smoke": (1, 128, 50)}


class DigitNet(nn.Module):
    """Trunk Conv(1->32) ReLU Conv(32->64) ReLU (3×3, padding 1), then the pooling or the capsule head:
    x [B, 1, H, W] -> class scores in [0, 1] [B, 10]."""

    def __init__(self, head: str):
        super().__init__()
        self.head = check_choice("head", head, ("pooling", "capsule"))
        c1, c2 = CHANNELS
        self.trunk = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU())
        if head == "pooling":
            self.classifier = nn.Sequential(nn.Linear(c2, 128), nn.ReLU(), nn.Linear(128, 10), nn.Sigmoid())
        else:
            self.classifier = Capsule(c2, 10, 16, routings=3, share_weights=True)

    def forward(self, x: Tensor) -> Tensor:
        h = self.trunk(x)                                                   # [B, C, H, W]
        if self.head == "pooling":
            return self.classifier(h.mean((2, 3)))
        return capsule_lengths(self.classifier(h.flatten(2).transpose(1, 2)))   # H*W input capsules


def digits(seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sklearn digits shuffled by `seed`, pixels / 16: x_train [N, 1, 8, 8], y_train, x_test [360, 1, 8, 8], y_test."""
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(y[order])
    return x[N_TEST:], y[N_TEST:], x[:N_TEST], y[:N_TEST]


def place(x: Tensor, g: torch.Generator) -> Tensor:
    """Each 8×8 digit at a uniformly random height in a 16×8 canvas: [N, 1, 8, 8] -> [N, 1, 16, 8]."""
    offset = torch.randint(0, 9, (len(x),), generator=g)
    canvas = x.new_zeros(len(x), 1, 16, 8)
    for k in range(9):
        m = offset == k
        canvas[m, :, k:k + 8] = x[m]
    return canvas


def stacked_pairs(x: Tensor, y: Tensor, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """n canvases [n, 1, 16, 8] with two test digits of different classes one above the other, and their two
    labels sorted ascending [n, 2]."""
    i, j = torch.randint(0, len(y), (4 * n,), generator=g), torch.randint(0, len(y), (4 * n,), generator=g)
    keep = y[i] != y[j]
    i, j = i[keep][:n], j[keep][:n]
    return torch.cat([x[i], x[j]], 2), torch.sort(torch.stack([y[i], y[j]], 1), 1).values


@torch.no_grad()
def pair_accuracy(scores: Tensor, labels: Tensor) -> tuple[float, float]:
    """(a) the top-2 classes are the two digits (order ignored); (b) and both of their scores exceed 0.5."""
    top = scores.topk(2, 1)
    hit = (torch.sort(top.indices, 1).values == labels).all(1)
    return float(hit.float().mean()), float((hit & (top.values[:, 1] > 0.5)).float().mean())


def train(model: DigitNet, x: Tensor, y: Tensor, epochs: int, g: torch.Generator) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    losses = []
    for _ in range(epochs):
        canvas = place(x, g)                                                # a fresh placement every epoch
        order = torch.randperm(len(y), generator=g)
        epoch_loss = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            loss = margin_loss(model(canvas[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss += loss.item() * len(idx)
        losses.append(epoch_loss / len(y))
    return losses


def run(mode: str, seed: int) -> Measurement:
    """mode "quick" | "full" ("smoke": a seconds-long form for the tests)."""
    check_choice("mode", mode, tuple(_BUDGET))
    seed = check_int("seed", seed, 0)
    epochs, n_train, n_pairs = _BUDGET[mode]
    x_tr, y_tr, x_te, y_te = digits(seed)
    if n_train is not None:
        x_tr, y_tr = x_tr[:n_train], y_tr[:n_train]
    g_test = torch.Generator().manual_seed(seed + 1)
    single = place(x_te, g_test)
    pairs, pair_labels = stacked_pairs(x_te, y_te, n_pairs, g_test)
    metrics, curves, params = {}, {}, {}
    for head in ("pooling", "capsule"):
        torch.manual_seed(seed)
        model = DigitNet(head)
        params[head] = sum(p.numel() for p in model.parameters())
        curves[head] = train(model, x_tr, y_tr, epochs, torch.Generator().manual_seed(seed + 2))
        model.eval()
        with torch.no_grad():
            metrics[f"{head}_single_acc"] = float((model(single).argmax(1) == y_te).float().mean())
            a, b = pair_accuracy(model(pairs), pair_labels)
        metrics[f"{head}_pair_acc"], metrics[f"{head}_pair_acc_confident"] = a, b
    pt = lambda key: 100.0 * (metrics[f"capsule_{key}"] - metrics[f"pooling_{key}"])     # noqa: E731
    metrics.update(capsule_gain_pair_pt=pt("pair_acc"), capsule_gain_confident_pt=pt("pair_acc_confident"),
                   single_acc_gap_pt=abs(pt("single_acc")))
    rows = [{"head": h, "parameters": params[h], "single digit": metrics[f"{h}_single_acc"],
             "two digits, top-2 (a)": metrics[f"{h}_pair_acc"],
             "two digits, top-2 and both > 0.5 (b)": metrics[f"{h}_pair_acc_confident"]} for h in params]
    x = list(range(1, epochs + 1))
    fig = Figure("training_loss", "Margin loss on single digits while training", "epoch", "margin loss",
                 {h: (x, curves[h]) for h in curves})
    return Measurement(metrics, tables={"accuracy": rows}, figures=[fig])


EXPERIMENT = Experiment(
    name="capsules",
    title="揭开迷雾，来一顿美味的Capsule盛宴 / 再来一顿贺岁宴：从K-Means到Capsule (Capsules: dynamic routing "
          "as clustering)",
    url="https://kexue.fm/archives/5112",
    claim="Trained on single digits only, the capsule head recognises two superimposed digits far better than "
          "the pooling head (article, MNIST: pooling ~40 % / 10 %, capsules > 90 % / ~95 %); spec target on 8×8 "
          "digits: capsules beat pooling by >= 20 pt on (b), single-digit accuracy within 1 pt.",
    setup=f"sklearn digits (pixels / 16), {N_TEST} test images; training: each digit at a random height in a "
          f"16×8 canvas (re-drawn every epoch); test: {N_PAIRS} canvases with two different test digits stacked. "
          f"Trunk Conv {CHANNELS[0]}-{CHANNELS[1]} (3×3, padding 1, ReLU); heads: global average pooling + "
          "Dense(128, ReLU) + Dense(10, sigmoid) vs Capsule(10 × 16, 3 routings of Su's variant, shared "
          f"weights) over the 128 positions; margin loss (0.9, 0.1, 0.25), Adam({LR:g}), batch {BATCH}. Metrics: "
          "(a) top-2 classes = the two digits, (b) and both scores > 0.5.",
    checks=[
        Check("capsule_gain_confident_pt", ">=", 20.0, "capsule over pooling on (b) (pt)"),
        Check("single_acc_gap_pt", "<=", 1.0, "single-digit accuracy gap (pt)"),
    ],
    run=run,
    seeds={"quick": 1, "full": 5},
    deviations={
        "quick": "1 seed instead of 5, 15 epochs per head instead of 30.",
        "full": "30 epochs per head (the spec fixes no epoch count).",
    },
)
