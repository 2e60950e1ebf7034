"""ON-LSTM：用有序神经元表达层次结构 (https://kexue.fm/archives/6621): trees induced from the master forget
gate of an ON-LSTM language model, scored against the gold trees of a synthetic nested-bracket language.

Data: a small PCFG (S -> NP VP; NP -> Det N | Det Adj N | NP PP; VP -> V NP | V NP PP; PP -> P NP) with number
agreement between the subject NP and the verb across any PP inside the subject, 54 words. The recipe only: the
model is `kexue.nn.ONLSTM`, the trees and F1 are `kexue.metrics`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_choice, check_int
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.metrics import build_tree, tree_to_spans, unlabeled_f1
from kexue.nn import ONLSTM

_WORDS = {"Det_sg": "a this that every".split(), "Det_pl": "some these those many".split(),
          "N_sg": "dog cat bird man woman child house car tree book".split(),
          "Adj": "big small red old young happy quiet green".split(),
          "V_sg": "sees likes finds takes holds wants".split(), "P": "in on near with under behind".split()}
_WORDS["N_pl"] = [w + "s" for w in _WORDS["N_sg"]]
_WORDS["V_pl"] = [w[:-1] for w in _WORDS["V_sg"]]
PAD, BOS, EOS = 0, 1, 2
VOCAB = ["<pad>", "<bos>", "<eos>"] + sorted({w for ws in _WORDS.values() for w in ws})
_INDEX = {w: i for i, w in enumerate(VOCAB)}
HIDDEN, LAYERS, LEVELS, CHUNK, DROPCONNECT, LR, BATCH = 128, 3, 16, 8, 0.25, 2e-3, 64

# mode -> (training sentences, epochs, test sentences)
_BUDGET = {"quick": (6000, 1, 500), "full": (20_000, 3, 1000), "smoke": (64, 1, 20)}


def sample_sentence(rng: np.random.Generator) -> list:
    """One gold tree (nested lists, leaves = words) from the PCFG; NP recursion depth <= 3."""
    word = lambda cat: _WORDS[cat][rng.integers(len(_WORDS[cat]))]           # noqa: E731
    number = lambda: "sg" if rng.random() < 0.5 else "pl"                    # noqa: E731

    def np_(n: str, depth: int = 0) -> list:
        u = rng.random()
        if u < 0.25 and depth < 3:
            return [np_(n, depth + 1), pp(depth + 1)]
        if u < 0.55:
            return [word("Det_" + n), word("Adj"), word("N_" + n)]
        return [word("Det_" + n), word("N_" + n)]

    def pp(depth: int) -> list:
        return [word("P"), np_(number(), depth)]

    n = number()
    vp = [word("V_" + n), np_(number())]
    if rng.random() < 0.3:
        vp.append(pp(1))
    return [np_(n), vp]


def leaves(tree) -> list:
    return [w for child in tree for w in leaves(child)] if isinstance(tree, list) else [tree]


def corpus(n: int, rng: np.random.Generator, min_len: int = 4, max_len: int = 14) -> list[tuple[list, list]]:
    """n (words, gold tree) pairs with min_len <= length <= max_len (rejection sampling)."""
    out = []
    while len(out) < n:
        tree = sample_sentence(rng)
        words = leaves(tree)
        if min_len <= len(words) <= max_len:
            out.append((words, tree))
    return out


def _positions(tree, counter) -> list | int:
    return [_positions(c, counter) for c in tree] if isinstance(tree, list) else next(counter)


def inner_spans(tree, length: int) -> set[tuple[int, int]]:
    """Spans of length >= 2 without the whole sentence (shared by every tree; the Ordered-Neurons convention)."""
    return tree_to_spans(tree) - {(0, length)}


def gold_spans(tree) -> set[tuple[int, int]]:
    words = leaves(tree)
    return inner_spans(_positions(tree, iter(range(len(words)))), len(words))


def batchify(sentences: list[list[str]]) -> tuple[Tensor, Tensor]:
    """Inputs <bos> w1..wn and targets w1..wn <eos>, right-padded with PAD: [B, T] each."""
    T = max(len(w) for w in sentences) + 1
    x = torch.full((len(sentences), T), PAD)
    y = torch.full((len(sentences), T), PAD)
    for b, words in enumerate(sentences):
        ids = [_INDEX[w] for w in words]
        x[b, :len(ids) + 1] = torch.tensor([BOS] + ids)
        y[b, :len(ids) + 1] = torch.tensor(ids + [EOS])
    return x, y


class LanguageModel(nn.Module):
    """Embedding -> 3-layer ON-LSTM (or torch LSTM) -> softmax over the vocabulary."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = check_choice("kind", kind, ("on_lstm", "lstm"))
        self.embed = nn.Embedding(len(VOCAB), HIDDEN)
        self.rnn = (ONLSTM(HIDDEN, HIDDEN, LAYERS, levels=LEVELS, chunk_size=CHUNK, dropconnect=DROPCONNECT)
                    if kind == "on_lstm" else nn.LSTM(HIDDEN, HIDDEN, LAYERS, batch_first=True))
        self.out = nn.Linear(HIDDEN, len(VOCAB))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """x [B, T] -> logits [B, T, V], distances [layers, B, T] (None for the LSTM)."""
        out = self.rnn(self.embed(x))
        return self.out(out[0]), (out[2]["distance"] if self.kind == "on_lstm" else None)


def train_lm(model: LanguageModel, train: list, epochs: int, rng: np.random.Generator) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(train))
        for i in range(0, len(order), BATCH):
            x, y = batchify([train[j][0] for j in order[i:i + BATCH]])
            loss = F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten(), ignore_index=PAD)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
    return losses


@torch.no_grad()
def evaluate(model: LanguageModel, test: list) -> tuple[float, list[float]]:
    """Test perplexity per token (incl. <eos>) and, for the ON-LSTM, sentence F1 of the middle layer's trees."""
    model.eval()
    nll, tokens, f1 = 0.0, 0, []
    for i in range(0, len(test), 100):
        chunk = test[i:i + 100]
        x, y = batchify([w for w, _ in chunk])
        logits, dist = model(x)
        nll += F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=PAD, reduction="sum").item()
        tokens += int((y != PAD).sum())
        if dist is not None:
            for b, (words, tree) in enumerate(chunk):
                d = dist[LAYERS // 2, b, 1:len(words) + 1].tolist()     # distance at each word (after <bos>)
                pred = build_tree(d, list(range(len(words))))
                f1.append(unlabeled_f1(inner_spans(pred, len(words)), gold_spans(tree)))
    return math.exp(nll / tokens), f1


def baseline_f1(test: list, rng: np.random.Generator) -> tuple[float, float]:
    """Mean sentence F1 of random binary trees (uniform random distances) and right-branching trees."""
    rand, right = [], []
    for words, tree in test:
        n, gold = len(words), gold_spans(tree)
        pos = list(range(n))
        rand.append(unlabeled_f1(inner_spans(build_tree(rng.random(n).tolist(), pos), n), gold))
        right.append(unlabeled_f1(inner_spans(build_tree([float(n - k) for k in range(n)], pos), n), gold))
    return float(np.mean(rand)), float(np.mean(right))


def run(mode: str, seed: int) -> Measurement:
    """mode "quick" | "full" ("smoke": a seconds-long form for the tests)."""
    check_choice("mode", mode, tuple(_BUDGET))
    seed = check_int("seed", seed, 0)
    n_train, epochs, n_test = _BUDGET[mode]
    rng = np.random.default_rng(seed)
    data = corpus(n_train + n_test, rng)
    train, test = data[:n_train], data[n_train:]
    torch.manual_seed(seed)
    on_lstm = LanguageModel("on_lstm")
    _, untrained_f1 = evaluate(on_lstm, test)
    on_losses = train_lm(on_lstm, train, epochs, np.random.default_rng(seed + 1))
    on_ppl, on_f1 = evaluate(on_lstm, test)
    torch.manual_seed(seed)
    lstm = LanguageModel("lstm")
    lstm_losses = train_lm(lstm, train, epochs, np.random.default_rng(seed + 1))
    lstm_ppl, _ = evaluate(lstm, test)
    random_f1, right_f1 = baseline_f1(test, np.random.default_rng(seed + 2))
    f1 = float(np.mean(on_f1))
    metrics = {
        "on_lstm_f1": 100 * f1, "random_f1": 100 * random_f1, "right_branching_f1": 100 * right_f1,
        "untrained_on_lstm_f1": 100 * float(np.mean(untrained_f1)), "f1_over_random_pt": 100 * (f1 - random_f1),
        "on_lstm_ppl": on_ppl, "lstm_ppl": lstm_ppl, "ppl_ratio": on_ppl / lstm_ppl,
    }
    rows = [{"parser": name, "unlabelled F1 (%)": metrics[key]} for name, key in
            (("ON-LSTM, middle layer (trained)", "on_lstm_f1"), ("ON-LSTM, untrained", "untrained_on_lstm_f1"),
             ("random binary trees", "random_f1"), ("right-branching", "right_branching_f1"))]
    steps = list(range(1, len(on_losses) + 1))
    fig = Figure("training_loss", "Language-model training loss (cross-entropy per token)", "step", "loss",
                 {"ON-LSTM": (steps, on_losses), "LSTM": (steps, lstm_losses)})
    return Measurement(metrics, tables={"parsing_f1": rows,
                                        "perplexity": [{"model": "ON-LSTM", "test perplexity": on_ppl},
                                                       {"model": "LSTM", "test perplexity": lstm_ppl}]},
                       figures=[fig])


EXPERIMENT = Experiment(
    name="on_lstm",
    title="ON-LSTM：用有序神经元表达层次结构 (ON-LSTM: expressing hierarchy with ordered neurons)",
    url="https://kexue.fm/archives/6621",
    claim="The master forget gate of an ON-LSTM language model induces constituency trees: the article shows "
          "qualitative parses only (the paper: WSJ F1 47.7); spec target on a synthetic nested language: "
          "unlabelled F1 >= random binary trees + 10 pt, and perplexity within 2 % of an LSTM's.",
    setup=f"PCFG with nesting (NP -> NP PP) and subject-verb number agreement, {len(VOCAB) - 3} words, sentences "
          f"of 4-14 words; LMs with embedding {HIDDEN}: 3-layer ON-LSTM (hidden {HIDDEN}, levels {LEVELS}, chunk "
          f"{CHUNK}, DropConnect {DROPCONNECT}) vs 3-layer torch LSTM (hidden {HIDDEN}, no dropout); Adam({LR:g}), "
          f"batch {BATCH}, gradient norm clipped to 1. Trees: greedy split at the largest distance "
          "1 - mean(master forget) of the middle layer; sentence-level F1 without the whole-sentence span; "
          "baselines: random binary trees, right-branching trees, and the untrained ON-LSTM.",
    checks=[
        Check("f1_over_random_pt", ">=", 10.0, "ON-LSTM F1 over random trees (pt)"),
        Check("ppl_ratio", "<=", 1.02, "ON-LSTM perplexity / LSTM perplexity"),
    ],
    run=run,
    seeds={"quick": 1, "full": 3},
    deviations={
        "quick": "6 000 training sentences for 1 epoch instead of 20 000 for a fixed longer budget; 500 test "
                 "sentences instead of 1 000; 1 seed.",
        "full": "20 000 training sentences for 3 epochs (the spec fixes no budget); 3 seeds.",
    },
)
