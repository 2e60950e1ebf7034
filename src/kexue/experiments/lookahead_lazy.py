"""Lookahead and the lazy optimizer (https://kexue.fm/archives/6869): LazyUpdate(Adam) on a Zipf-distributed
text task, Lookahead(Adam) on digits, and Lookahead's variance reduction on a noisy quadratic (spec core/02 §4).

The article's IMDB LSTM: best validation accuracy 83.7 % with Adam(1e-3) vs 84.9 % with LazyOptimizer(Adam(1e-3))
on the embedding; Lookahead showed "basically no change" in the author's test. Checks (spec targets): Lazy's
best test accuracy ≥ Adam's + 0.5 pt with a smaller train–test gap; Lookahead within ±0.5 pt of Adam on digits;
Lookahead(SGD)'s slow weights reach a lower stationary loss than SGD on f = ½θᵀAθ with gradient noise.
"""
from __future__ import annotations

import torch
from torch import nn

from kexue._validate import check_choice, check_int
from kexue.experiments._optim_data import accuracy, digits_split, mlp
from kexue.experiments.base import MODES, Check, Experiment, Figure, Measurement
from kexue.optim import LazyUpdate, Lookahead

VOCAB, DOC_LEN, EMBED = 20_000, 80, 64
SET_SIZE, SET_RANKS = 300, (200, 5000)       # the hidden positive / negative sets: mid/rare tokens
CONFIG = {
    "quick": {"docs": 5000, "text_epochs": 10, "digits_epochs": 20, "quadratic_steps": 3000},
    "full": {"docs": 5000, "text_epochs": 15, "digits_epochs": 100, "quadratic_steps": 10_000},
}


def zipf_text_task(seed: int, docs: int, zipf_s: float = 1.1, label_noise: float = 0.1):
    """Documents of 80 token ids drawn from Zipf(`zipf_s`) over 20 000 ids (id = frequency rank); label 1 when a
    document holds more tokens of a hidden positive set than of a negative set (300 tokens each, ranks
    200-5000), then flipped with probability `label_noise`. Returns (train_docs, train_y, test_docs, test_y),
    `docs` documents each: (docs, 80) int64 and (docs,) float."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    freq = torch.arange(1, VOCAB + 1, dtype=torch.float64) ** -zipf_s
    tokens = torch.multinomial(freq / freq.sum(), 2 * docs * DOC_LEN, replacement=True, generator=gen)
    tokens = tokens.view(2 * docs, DOC_LEN)
    lo, hi = SET_RANKS
    chosen = lo + torch.randperm(hi - lo, generator=gen)[: 2 * SET_SIZE]
    sign = torch.zeros(VOCAB)
    sign[chosen[:SET_SIZE]], sign[chosen[SET_SIZE:]] = 1.0, -1.0
    labels = (sign[tokens].sum(1) > 0).float()
    flip = torch.rand(2 * docs, generator=gen) < label_noise
    labels = torch.where(flip, 1 - labels, labels)
    return tokens[:docs], labels[:docs], tokens[docs:], labels[docs:]


class BagClassifier(nn.Module):
    """EmbeddingBag(20000, 64, mean) -> Linear(64, 1): (B, 80) ids -> (B,) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(VOCAB, EMBED, mode="mean")
        self.head = nn.Linear(EMBED, 1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(ids)).squeeze(-1)


@torch.no_grad()
def _binary_acc(model: nn.Module, ids: torch.Tensor, y: torch.Tensor) -> float:
    return float(((model(ids) > 0).float() == y).float().mean())


def _text_run(task, seed: int, epochs: int, lazy: bool) -> dict:
    x, y, xt, yt = task
    torch.manual_seed(seed)
    model = BagClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)   # the same update, one kernel: 2.5x faster
    if lazy:
        opt = LazyUpdate(opt, params=[model.embedding.weight])
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            loss = nn.functional.binary_cross_entropy_with_logits(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append((_binary_acc(model, x, y), _binary_acc(model, xt, yt)))
    return {"history": history, "best_test": max(t for _, t in history),
            "gap": history[-1][0] - history[-1][1]}


def _digits_run(data, seed: int, epochs: int, lookahead: bool) -> float:
    x, y, xt, yt = data
    torch.manual_seed(seed)
    model = mlp((64, 128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if lookahead:
        opt = Lookahead(opt, k=5, alpha=0.5)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    if lookahead:
        with opt.slow_weights():
            return accuracy(model, xt, yt)
    return accuracy(model, xt, yt)


def noisy_quadratic(seed: int, steps: int, lookahead: bool, lr: float = 0.5, sigma: float = 1.0,
                    dim: int = 10) -> tuple[float, float]:
    """SGD (or Lookahead(SGD, k=5, α=0.5)) on f = ½θᵀAθ, A = diag(linspace(0.1, 1, dim)), gradient Aθ + σξ
    (the same noise sequence for both). Returns the mean f over the second half of the run of the weights
    the method is evaluated with (SGD: every iterate; Lookahead: the slow weights at each sync) and of the
    fast iterates."""
    gen = torch.Generator().manual_seed(20_000 + seed)
    a = torch.linspace(0.1, 1.0, dim, dtype=torch.float64)
    theta = nn.Parameter(torch.ones(dim, dtype=torch.float64))
    opt = torch.optim.SGD([theta], lr=lr)
    if lookahead:
        opt = Lookahead(opt, k=5, alpha=0.5)
    f = lambda v: float(0.5 * (a * v * v).sum())
    evaluated, fast = [], []
    for t in range(1, steps + 1):
        theta.grad = a * theta.detach() + sigma * torch.randn(dim, generator=gen, dtype=torch.float64)
        opt.step()
        if t > steps // 2:
            value = f(theta.detach())
            fast.append(value)
            if not lookahead or t % 5 == 0:      # Lookahead: right after a sync, θ holds the slow weights
                evaluated.append(value)
    return sum(evaluated) / len(evaluated), sum(fast) / len(fast)


def run(mode: str, seed: int) -> Measurement:
    check_choice("mode", mode, MODES)
    check_int("seed", seed, low=0)
    cfg = CONFIG[mode]
    task = zipf_text_task(seed, cfg["docs"])
    text = {name: _text_run(task, seed, cfg["text_epochs"], name == "lazy") for name in ("adam", "lazy")}
    metrics = {
        "best_test_acc_adam": text["adam"]["best_test"], "best_test_acc_lazy": text["lazy"]["best_test"],
        "gap_adam": text["adam"]["gap"], "gap_lazy": text["lazy"]["gap"],
    }
    metrics["lazy_minus_adam_best_acc"] = metrics["best_test_acc_lazy"] - metrics["best_test_acc_adam"]
    metrics["gap_adam_minus_lazy"] = metrics["gap_adam"] - metrics["gap_lazy"]
    data = digits_split(seed)
    metrics["digits_acc_adam"] = _digits_run(data, seed, cfg["digits_epochs"], False)
    metrics["digits_acc_lookahead"] = _digits_run(data, seed, cfg["digits_epochs"], True)
    metrics["lookahead_minus_adam_acc"] = metrics["digits_acc_lookahead"] - metrics["digits_acc_adam"]
    sgd, _ = noisy_quadratic(seed, cfg["quadratic_steps"], False)
    slow, fast = noisy_quadratic(seed, cfg["quadratic_steps"], True)
    metrics.update({"quadratic_loss_sgd": sgd, "quadratic_loss_lookahead_slow": slow,
                    "quadratic_loss_lookahead_fast": fast, "quadratic_loss_ratio": slow / sgd})
    epochs = list(range(1, cfg["text_epochs"] + 1))
    lines = {}
    for name, r in text.items():
        lines[f"{name} train"] = (epochs, [tr for tr, _ in r["history"]])
        lines[f"{name} test"] = (epochs, [te for _, te in r["history"]])
    fig = Figure("zipf_text_accuracy", "Zipf text task: Adam vs LazyUpdate(Adam) on the embedding", "epoch",
                 "accuracy", lines)
    rows = [{"optimizer": n, "best_test_acc": metrics[f"best_test_acc_{n}"], "train_minus_test": metrics[f"gap_{n}"]}
            for n in ("adam", "lazy")]
    return Measurement(metrics, tables={"zipf_text": rows}, figures=[fig])


EXPERIMENT = Experiment(
    name="lookahead_lazy",
    title="Keras实现两个优化器：Lookahead和LazyOptimizer (two optimizers in Keras: Lookahead and LazyOptimizer)",
    url="https://kexue.fm/archives/6869",
    claim="LazyOptimizer(Adam) beats Adam on a rare-word text task (IMDB: 84.9 % vs 83.7 % best validation "
          "accuracy); Lookahead changes accuracy basically not at all but reduces the stationary loss on a noisy "
          "quadratic (spec targets: Lazy ≥ Adam + 0.5 pt with a smaller gap, Lookahead within ±0.5 pt).",
    setup="Zipf(1.1) text over 20 000 ids, 80-token documents, label = more tokens of a hidden positive set than "
          "of a negative one (300 each, ranks 200-5000), 10 % label noise; EmbeddingBag(20000, 64, mean) -> "
          "Linear(64, 1), Adam 1e-3 (fused kernel) vs LazyUpdate(Adam 1e-3) on the embedding, batch 32; gap = "
          "final train − test accuracy. Digits MLP 64-128-10, Adam 1e-3 vs Lookahead(Adam, k=5, α=0.5) evaluated "
          "on the slow weights. "
          "Noisy quadratic: A = diag(0.1..1), 10-d, noise σ = 1, SGD lr 0.5 vs Lookahead(SGD), mean f over the "
          "second half (Lookahead: slow weights at syncs).",
    checks=[
        Check("lazy_minus_adam_best_acc", ">=", 0.005, "Lazy ≥ Adam + 0.5 pt (best test accuracy)"),
        Check("gap_adam_minus_lazy", ">", 0.0, "Lazy: smaller train–test gap"),
        Check("lookahead_minus_adam_acc", "~", 0.0, "Lookahead: no change (within ±0.5 pt)", tol=0.005),
        Check("quadratic_loss_ratio", "<", 1.0, "Lookahead: lower stationary loss on the noisy quadratic"),
    ],
    run=run,
    seeds={"quick": 1, "full": 5},
    deviations={
        "quick": "1 seed (spec: 5); text task 10 epochs (spec: 15); digits 20 epochs (spec: 100); quadratic 3 000 "
                 "steps (spec: 10 000).",
        "full": "the spec leaves the quadratic open: A = diag(linspace(0.1, 1, 10)), σ = 1, lr 0.5, first half "
                "discarded as burn-in; the label sets are drawn from ranks 200-5000 (the spec: 'mid/rare').",
    },
)
