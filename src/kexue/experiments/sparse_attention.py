"""为节约而生：从标准Attention到稀疏Attention (https://kexue.fm/archives/6853): what the atrous, local and
strided patterns cost and what they can reach.

(A) Cost: allowed pairs of each mask against closed forms, and the blocked kernels' score entries and
forward+backward time against full attention at growing n. (B) Reach: 2-layer transformers whose attention is
full / atrous / local / strided learn associative recall (`kexue.datasets.associative_recall`) with the answer far
back at an offset that is a multiple of the rate ("distant") or 1-3 back, not a multiple ("near"). The spec's
prediction: local fails distant (beyond layers x window), atrous fails near, strided and full solve both.
The recipe only: attention is `kexue.nn.SparseSelfAttention` / `sparse_attention`, data `kexue.datasets`.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_choice, check_int
from kexue.datasets import associative_recall
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.nn import SparseSelfAttention, sparse_attention, sparse_attention_mask
from kexue.nn.feedforward import FeedForward

PATTERNS = ("full", "atrous", "local", "strided")
HEADS, LAYERS, KEYS, VALUES, ITEMS, LR = 4, 2, 8, 8, 8, 3e-3
COST_RATE, COST_WINDOW, COST_HEAD_DIM = 8, 32, 16          # part A: atrous(r=8), local(w=32), 4 heads x 16

# mode -> part A lengths and timing repeats; part B: n, rate, window, min distance, width, steps per epoch, batch,
# epochs over the same sequences, test size
_BUDGET = {
    "smoke": dict(lengths=(64, 128), reps=1, n=32, rate=4, window=4, min_distance=12, width=16, steps=8, batch=8,
                  epochs=1, test=64),
    "quick": dict(lengths=(256, 512, 1024, 2048), reps=3, n=48, rate=8, window=8, min_distance=24, width=32,
                  steps=400, batch=32, epochs=1, test=500),
    "full": dict(lengths=(512, 1024, 2048, 4096), reps=5, n=256, rate=8, window=32, min_distance=100, width=64,
                 steps=625, batch=32, epochs=3, test=1000),
}


def pattern_sizes(pattern: str, rate: int, window: int) -> dict:
    """Keyword arguments of one pattern's sizes."""
    return {"full": {}, "atrous": {"rate": rate}, "local": {"window": window}, "strided": {"rate": rate}}[pattern]


def closed_form_pairs(pattern: str, n: int, rate: int = 1, window: int = 0) -> int:
    """Allowed (i, j) pairs, non-causal, from the spec's formulas: full n^2; atrous sum over residue classes of
    size^2 (= n^2 / r when r | n); local n(2w + 1) - w(w + 1) (w < n); strided atrous + local(w = r - 1) - n."""
    if pattern == "full":
        return n * n
    if pattern == "local":
        w = min(window, n - 1)
        return n * (2 * w + 1) - w * (w + 1)
    q, rem = divmod(n, rate)
    atrous = rem * (q + 1) ** 2 + (rate - rem) * q ** 2
    return atrous if pattern == "atrous" else atrous + closed_form_pairs("local", n, window=rate - 1) - n


def _time_fwd_bwd(n: int, pattern: str, kw: dict, reps: int, gen: torch.Generator) -> tuple[float, int]:
    """Best-of-reps wall seconds of forward + backward of the blocked kernel, and its score entries."""
    q, k, v = (torch.randn(1, HEADS, n, COST_HEAD_DIM, generator=gen).requires_grad_() for _ in range(3))
    shapes: list[tuple[int, ...]] = []
    sparse_attention(q, k, v, pattern=pattern, impl="blocked", score_shapes=shapes, **kw).sum().backward()  # warm-up
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        sparse_attention(q, k, v, pattern=pattern, impl="blocked", **kw).sum().backward()
        best = min(best, time.perf_counter() - t0)
    return best, sum(math.prod(s) for s in shapes)


def cost_table(lengths, reps: int, seed: int) -> list[dict]:
    """Part A rows: per (n, pattern) the mask's pairs vs the closed form, score entries, time."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for n in lengths:
        for pattern in PATTERNS:
            rate = math.ceil(math.sqrt(n / 2)) if pattern == "strided" else COST_RATE
            kw = pattern_sizes(pattern, rate, COST_WINDOW)
            pairs = int(sparse_attention_mask(n, pattern, **kw).sum())
            closed = closed_form_pairs(pattern, n, rate, COST_WINDOW)
            seconds, entries = _time_fwd_bwd(n, pattern, kw, reps, gen)
            rows.append({"n": n, "pattern": pattern, "size": str(kw or "-"), "allowed pairs": pairs,
                         "closed form": closed, "score entries (blocked kernel)": entries,
                         "score entries / (H n^2)": entries / (HEADS * n * n), "fwd+bwd ms": 1000 * seconds})
    return rows


def _slope(xs, ys) -> float:
    """Least-squares slope of log y on log x (the scaling exponent)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


class RecallModel(nn.Module):
    """Token embedding (no positions: the task is content lookup) -> LAYERS pre-LN blocks of sparse self-attention
    + output projection + feed-forward -> LayerNorm -> value logits at the last position."""

    def __init__(self, vocab_size: int, width: int, pattern: str, **sizes):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.norms = nn.ModuleList([nn.LayerNorm(width) for _ in range(2 * LAYERS + 1)])
        self.attn = nn.ModuleList([SparseSelfAttention(width, HEADS, pattern=pattern, **sizes) for _ in range(LAYERS)])
        self.proj = nn.ModuleList([nn.Linear(width, width) for _ in range(LAYERS)])
        self.ffn = nn.ModuleList([FeedForward(width, 2 * width, F.gelu) for _ in range(LAYERS)])
        self.head = nn.Linear(width, VALUES)

    def forward(self, tokens: Tensor) -> Tensor:                       # [B, n] -> [B, VALUES]
        return self.from_embeddings(self.embed(tokens))

    def from_embeddings(self, h: Tensor) -> Tensor:                    # [B, n, width] -> [B, VALUES]
        for i in range(LAYERS):
            h = h + self.proj[i](self.attn[i](self.norms[2 * i](h)))
            h = h + self.ffn[i](self.norms[2 * i + 1](h))
        return self.head(self.norms[-1](h[:, -1]))


def recall_accuracy(mode: str, seed: int) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Part B: one model per pattern trained on a 50/50 mix of both variants; accuracy per variant."""
    b = _BUDGET[mode]
    data = dict(seq_len=b["n"], num_keys=KEYS, num_values=VALUES, num_items=ITEMS, rate=b["rate"],
                min_distance=b["min_distance"])
    half = b["steps"] * b["batch"] // 2
    train = [associative_recall(half, v, seed=4 * seed + i, **data) for i, v in enumerate(("distant", "near"))]
    test = {v: associative_recall(b["test"], v, seed=4 * seed + 2 + i, **data)
            for i, v in enumerate(("distant", "near"))}
    order = torch.randperm(2 * half, generator=torch.Generator().manual_seed(seed))
    x, y = torch.cat([t.tokens for t in train]), torch.cat([t.targets for t in train])
    acc, losses = {}, {}
    for pattern in PATTERNS:
        torch.manual_seed(seed)
        model = RecallModel(train[0].vocab_size, b["width"], pattern,
                            **pattern_sizes(pattern, b["rate"], b["window"]))
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        model.train()
        losses[pattern] = []
        for epoch in range(b["epochs"]):
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + epoch)) if epoch else order
            for i in range(0, len(x), b["batch"]):
                idx = perm[i:i + b["batch"]]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses[pattern].append(loss.item())
        model.eval()
        with torch.no_grad():
            acc[pattern] = {v: float((model(t.tokens).argmax(-1) == t.targets).float().mean()) for v, t in test.items()}
    return acc, losses


def run(mode: str, seed: int) -> Measurement:
    """mode "quick" | "full" ("smoke": a seconds-long form for the tests)."""
    check_choice("mode", mode, tuple(_BUDGET))
    seed = check_int("seed", seed, 0)
    b = _BUDGET[mode]
    rows = cost_table(b["lengths"], b["reps"], seed)
    at = {(r["n"], r["pattern"]): r for r in rows}
    lengths, n_max, n_min = b["lengths"], b["lengths"][-1], b["lengths"][0]
    ms = lambda p: [at[n, p]["fwd+bwd ms"] for n in lengths]                   # noqa: E731
    rel_err = max(abs(r["allowed pairs"] - r["closed form"]) / r["closed form"] for r in rows)
    ratio = lambda n, p: at[n, p]["fwd+bwd ms"] / at[n, "full"]["fwd+bwd ms"]   # noqa: E731
    acc, losses = recall_accuracy(mode, seed)
    metrics = {
        "pair_count_max_rel_error": rel_err,
        "atrous_full_time_ratio_at_max_n": ratio(n_max, "atrous"),
        "atrous_full_time_ratio_trend": ratio(n_max, "atrous") / ratio(n_min, "atrous"),
        "strided_full_time_ratio_at_max_n": ratio(n_max, "strided"),
        "strided_full_score_ratio_at_max_n": (at[n_max, "strided"]["score entries (blocked kernel)"] /
                                              at[n_max, "full"]["score entries (blocked kernel)"]),
        "strided_time_exponent": _slope(lengths, ms("strided")),
        "full_time_exponent": _slope(lengths, ms("full")),
        "chance_accuracy": 1 / VALUES,
    }
    for p in PATTERNS:
        for v in ("distant", "near"):
            metrics[f"{p}_{v}_acc"] = acc[p][v]
    metrics["strided_minus_full_acc"] = min(acc["strided"][v] - acc["full"][v] for v in ("distant", "near"))
    recall_rows = [{"pattern": p, "distant accuracy": acc[p]["distant"], "near accuracy": acc[p]["near"]}
                   for p in PATTERNS]
    figs = [Figure("time_vs_n", "Forward + backward time of one attention layer (blocked kernels, 4 heads x 16)",
                   "sequence length n", "ms", {p: (list(lengths), ms(p)) for p in PATTERNS}, logy=True),
            Figure("recall_training_loss", "Associative-recall training loss (both variants mixed)", "step",
                   "cross-entropy", {p: (list(range(1, len(l) + 1)), l) for p, l in losses.items()})]
    return Measurement(metrics, tables={"cost": rows, "recall_accuracy": recall_rows}, figures=figs)


_CHANCE = 1 / VALUES
_ITEM_TOKEN = ("One token per (key, value) item instead of two adjacent tokens, and the distant answer at a multiple "
               "of r: atrous attention never mixes residue classes, so it could bind no key to its neighbour value "
               "and the task would test binding, not reach. ")

EXPERIMENT = Experiment(
    name="sparse_attention",
    title="为节约而生：从标准Attention到稀疏Attention (Born to save: from standard to sparse attention)",
    url="https://kexue.fm/archives/6853",
    claim="The article is expository (patterns, complexity, code; no benchmark). Spec targets: each mask's pairs "
          "match the closed forms; atrous/full time falls toward 1/r as n grows; strided time grows like n^1.5; "
          "at equal recall quality the strided model is faster and lighter than full attention; on associative "
          "recall local-only fails the distant variant, atrous-only fails the near one, strided and full solve "
          "both (>= 90 % accuracy, chance 12.5 %).",
    setup=f"(A) one attention layer, batch 1, {HEADS} heads x {COST_HEAD_DIM}, forward + backward of the blocked "
          f"kernels (best of repeats after a warm-up), full vs atrous(r={COST_RATE}), local(w={COST_WINDOW}), "
          "strided(r=ceil(sqrt(n/2))); pairs counted on the boolean masks. (B) associative recall: "
          f"{KEYS} keys x {VALUES} values, {ITEMS} items per sequence, one token per item, query key last; "
          f"distant = answer >= min_distance back at a multiple of r, near = 1-3 back; {LAYERS}-layer pre-LN "
          f"transformer, {HEADS} heads, no position embedding, one model per pattern trained on a 50/50 mix of "
          f"the variants with Adam({LR:g}), batch 32 (quick: one pass, full: 3 epochs); accuracy on held-out "
          "sequences per variant.",
    checks=[
        Check("pair_count_max_rel_error", "<=", 0.01, "allowed pairs vs closed forms (relative error)"),
        Check("atrous_full_time_ratio_trend", "<", 1.0, "atrous/full time ratio falls as n grows"),
        Check("strided_time_exponent", "~", 1.5, "strided time ~ n^1.5", tol=0.3),
        Check("strided_full_time_ratio_at_max_n", "<", 1.0, "strided faster than full at the largest n"),
        Check("strided_full_score_ratio_at_max_n", "<", 1.0, "strided lighter (score entries) at the largest n"),
        Check("strided_minus_full_acc", ">=", -0.05, "strided recall within 5 pt of full (equal quality)"),
        Check("local_distant_acc", "<=", _CHANCE + 0.1, "local fails distant"),
        Check("atrous_near_acc", "<=", _CHANCE + 0.1, "atrous fails near"),
        Check("strided_distant_acc", ">=", 0.9, "strided solves distant"),
        Check("strided_near_acc", ">=", 0.9, "strided solves near"),
        Check("full_distant_acc", ">=", 0.9, "full solves distant"),
        Check("full_near_acc", ">=", 0.9, "full solves near"),
    ],
    run=run,
    seeds={"quick": 1, "full": 2},
    exclusive=True,                # part A times the kernels: nothing may run beside it
    deviations={
        "quick": _ITEM_TOKEN + "(A) n in {256, 512, 1024, 2048} instead of {512, ..., 4096}, best of 3 timings; "
                 "(B) n = 48 instead of 256 (distant = 24, 32 or 40 back, multiples of r = 8; local w = 8 so 2 "
                 "layers reach 16), width 32 instead of 64, 12 800 training sequences (400 steps) instead of "
                 "~20 000, 500 test sequences; one model per pattern on both variants mixed instead of one per "
                 "variant; 1 seed.",
        "full": _ITEM_TOKEN + "(B) one model per pattern on both variants mixed (20 000 sequences, 3 epochs of 625 "
                "steps of 32) instead of one per variant; the spec fixes no budget; r = 8, local w = 32 (2 layers "
                "reach 64 < 100); 2 seeds.",
    },
)
