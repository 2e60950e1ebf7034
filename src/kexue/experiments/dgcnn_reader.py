"""基于CNN的阅读理解式问答模型：DGCNN (https://kexue.fm/archives/5409): on passages whose answer is marked only
by a key 16-24 characters back, the dilated gated reader finds the answer, the undilated one (receptive field 13
characters) cannot, and gating does at least as well as a plain residual ReLU convolution of the same depth.

The recipe only: data `kexue.datasets.key_value_passages`, model `kexue.tasks.DGCNNReader`, spans
`kexue.tasks.extract_spans`, scores `kexue.metrics.sogou_qa_scores`.
"""
from __future__ import annotations

import random

import torch
from torch import nn

from kexue.datasets import key_value_passages
from kexue.datasets.passages import CUE_CLOSE, CUE_OPEN, FILLER_CHARS, KEY_CHARS, VALUE_CHARS
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.metrics import sogou_qa_scores
from kexue.ops import sequence_padding
from kexue.tasks import DGCNNReader, extract_spans, span_answers

CHARS = ["[PAD]"] + sorted(set(KEY_CHARS + VALUE_CHARS + FILLER_CHARS + CUE_OPEN + CUE_CLOSE + "？"))
INDEX = {c: i for i, c in enumerate(CHARS)}
DIM, LR, THRESHOLD, MAX_LEN = 64, 1e-3, 0.1, 12
DILATED, UNDILATED = (1, 2, 4, 8, 16, 1), (1, 1, 1, 1, 1, 1)
VARIANTS = {"dilated_gated": (DILATED, "gated"), "undilated_gated": (UNDILATED, "gated"),
            "dilated_plain": (DILATED, "plain")}
# mode -> (training passages, steps, batch, test passages, passage length, facts per passage)
_BUDGET = {"smoke": (64, 3, 16, 16, 128, 3), "quick": (4000, 150, 32, 300, 128, 3),
           "full": (20_000, 3000, 64, 1000, 256, 6)}


def encode(items) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Questions [B, n_q], passages [B, n_p] (char ids, 0 = pad) and 0/1 start/end labels [B, n_p]."""
    q = sequence_padding([[INDEX[c] for c in it.question] for it in items])
    p = sequence_padding([[INDEX[c] for c in it.passage] for it in items])
    start, end = torch.zeros(p.shape), torch.zeros(p.shape)
    for b, it in enumerate(items):
        if it.start >= 0:
            start[b, it.start], end[b, it.start + len(it.answer) - 1] = 1.0, 1.0
    return q, p, start, end


def train_reader(variant: str, train, steps: int, batch: int, seed: int) -> tuple[DGCNNReader, list[float]]:
    torch.manual_seed(seed)
    dilations, block = VARIANTS[variant]
    model = DGCNNReader(nn.Embedding(len(CHARS), DIM, padding_idx=0), dim=DIM, p_dilations=dilations, block=block)
    opt = torch.optim.RAdam(model.parameters(), lr=LR)
    rng, losses = random.Random(seed), []
    model.train()
    for _ in range(steps):
        q, p, start, end = encode(rng.sample(train, batch))
        loss = model(q, q != 0, p, p != 0, start, end).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


@torch.no_grad()
def evaluate(model: DGCNNReader, test) -> dict[str, float]:
    """Exact match, char F1 and Final of the best span (threshold 0.1, at most 12 chars) per passage."""
    model.eval()
    preds, golds = {}, {}
    for i in range(0, len(test), 100):
        chunk = test[i:i + 100]
        q, p, _, _ = encode(chunk)
        out = model(q, q != 0, p, p != 0)
        for b, it in enumerate(chunk):
            cands = span_answers(extract_spans(out.start_probs[b], out.end_probs[b], THRESHOLD, MAX_LEN), it.passage)
            preds[i + b] = max(cands, key=cands.get) if cands else ""
            golds[i + b] = [it.answer]
    return sogou_qa_scores(preds, golds)


def run(mode: str, seed: int) -> Measurement:
    """mode "quick" | "full" ("smoke": a seconds-long form for the tests)."""
    n_train, steps, batch, n_test, length, facts = _BUDGET[mode]
    make = lambda n, s: key_value_passages(n, s, length=length, num_facts=facts)   # noqa: E731
    train, test = make(n_train, 2 * seed), make(n_test, 2 * seed + 1)
    metrics, rows, curves = {}, [], {}
    for variant in VARIANTS:
        model, losses = train_reader(variant, train, steps, batch, seed)
        scores = evaluate(model, test)
        for k, v in scores.items():
            metrics[f"{variant}_{k}"] = v
        n_params = sum(p.numel() for p in model.parameters())
        rows.append({"variant": variant, "receptive field (chars)": 1 + 2 * sum(VARIANTS[variant][0]),
                     "parameters": n_params, "exact match": scores["acc"], "char F1": scores["f1"],
                     "Final": scores["final"]})
        curves[variant] = (list(range(1, steps + 1)), losses)
    metrics["dilation_gain"] = metrics["dilated_gated_final"] - metrics["undilated_gated_final"]
    metrics["gating_gain"] = metrics["dilated_gated_final"] - metrics["dilated_plain_final"]
    fig = Figure("training_loss", "Reader training loss (focal, x100)", "step", "loss", curves, logy=True)
    return Measurement(metrics, tables={"variants": rows}, figures=[fig])


EXPERIMENT = Experiment(
    name="dgcnn_reader",
    title="基于CNN的阅读理解式问答模型：DGCNN (a CNN-based reading-comprehension QA model: DGCNN)",
    url="https://kexue.fm/archives/5409",
    claim="The article reports 0.7583 (first place) on CIPS-SOGOU QA; spec targets on a synthetic task that "
          "isolates the two architectural claims: dilated gated (1, 2, 4, 8, 16, 1) >> undilated (1, 1, 1, 1, 1, 1) "
          "when the answer's cue lies beyond the undilated reach, and gated >= plain residual ReLU conv at equal "
          "depth.",
    setup=f"key_value_passages: random syllable text with facts '{{键}}' + 16-24 filler chars + '「{{值}}」' "
          f"(value 1-3 chars), question '{{键}}？', 20% of passages lack the key. DGCNNReader, d = {DIM}, random "
          f"char embedding (no word vectors), question DGCNN (1, 2, 1) + attention pooling, passage DGCNN per "
          f"variant, answerability-gated start/end heads, focal loss (alpha 0.25, gamma 2, x100), RAdam({LR:g}); "
          f"spans: start, end > {THRESHOLD} and length <= {MAX_LEN}, best product. Exact match / char F1 / Final "
          "on held-out passages. Variants: dilated gated, undilated gated, dilated plain (residual + ReLU).",
    checks=[
        Check("dilation_gain", ">=", 0.2, "Final(dilated gated) - Final(undilated gated) ('>>': at least 0.2)"),
        Check("gating_gain", ">=", 0.0, "Final(dilated gated) - Final(dilated plain)"),
    ],
    run=run,
    seeds={"quick": 1, "full": 3},
    deviations={
        "quick": "128-char passages with 3 facts (spec: 256 chars, 6 facts), 4 000 training passages, 150 steps "
                 "of batch 32 (spec: up to 120 epochs), 300 test passages, 1 seed (so the spec's 'less variance "
                 "across 3 seeds' is not measured). Filler 16-24 chars instead of 20-50: the dilated stack's half-width is 32, so a cue "
                 "50 chars back would be out of reach for every variant. No EMA, no restarts, no crop "
                 "augmentation; the plain variant has half the conv parameters (no gate channels).",
        "full": "256-char passages with 6 facts, 20 000 training passages, 3 000 steps of batch 64, 1 000 test "
                "passages, 3 seeds (the runner's per-seed Finals show the variance). Filler 16-24 instead of "
                "20-50 (see quick). No EMA, restarts or crops; the plain variant has half the conv parameters.",
    },
)
