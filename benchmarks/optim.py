"""Step time of each kexue.optim wrapper over its bare base optimizer, on BERT-base parameter shapes.

Interleaved A B A B after warm-up, medians, ratio = wrapper / base. Gradients are fixed random tensors (the
backward pass is not timed). Usage: python benchmarks/optim.py [--layers 12] [--reps 5]
"""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import time

import torch
from pytorch_optimizer import Lamb

from kexue.optim import (ExponentialMovingAverage, GradientAccumulation, GradientClipping, LayerAdaptation,
                         LazyUpdate, Lookahead, PiecewiseLinearLR, WeightDecay)


def bert_base_shapes(layers: int = 12, vocab: int = 30522, hidden: int = 768, ffn: int = 3072) -> list[tuple]:
    """Parameter shapes of HF BertModel (bert-base-uncased) with `layers` encoder layers and the pooler."""
    shapes = [(vocab, hidden), (512, hidden), (2, hidden), (hidden,), (hidden,)]
    for _ in range(layers):
        shapes += [(hidden, hidden), (hidden,)] * 4 + [(hidden,), (hidden,)]
        shapes += [(ffn, hidden), (ffn,), (hidden, ffn), (hidden,), (hidden,), (hidden,)]
    return shapes + [(hidden, hidden), (hidden,)]


class AdamSub(torch.optim.Adam):
    """Adam the wrappers do not recognise: forces WeightDecay's generic snapshot path."""


def make_params(shapes):
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-3
    emb = params[0].grad
    keep = torch.randperm(emb.shape[0], generator=g)[:4096]        # a batch touches ~4k word rows
    mask = torch.zeros(emb.shape[0], dtype=torch.bool)
    mask[keep] = True
    emb[~mask] = 0
    return params


def cases(params):
    """(name, base factory, wrapper factory, calls of the wrapper per base step)."""
    adam = lambda: torch.optim.Adam(params, lr=1e-4, foreach=True)  # noqa: E731
    return [
        ("WeightDecay(Adam) [pre-step decay]", adam, lambda: WeightDecay(adam(), 0.01), 1),
        ("torch AdamW (peer)", adam, lambda: torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, foreach=True), 1),
        ("WeightDecay(Adam) [snapshot path]", adam,
         lambda: WeightDecay(AdamSub(params, lr=1e-4, foreach=True), 0.01), 1),
        ("LayerAdaptation(WeightDecay(Adam)) = LAMB", adam, lambda: LayerAdaptation(WeightDecay(adam(), 0.01)), 1),
        ("pytorch-optimizer Lamb (peer)", adam, lambda: Lamb(params, lr=1e-4, weight_decay=0.01), 1),
        ("PiecewiseLinearLR(Adam) mode=lr", adam, lambda: PiecewiseLinearLR(adam(), {1000: 1.0}), 1),
        ("PiecewiseLinearLR(Adam) mode=delta", adam, lambda: PiecewiseLinearLR(adam(), {1000: 1.0}, mode="delta"), 1),
        ("GradientAccumulation(Adam, 4): 4 calls", adam, lambda: GradientAccumulation(adam(), 4), 4),
        ("GradientAccumulation(Adam, 4, in .grad): 4 calls", adam,
         lambda: GradientAccumulation(adam(), 4, accumulate_in_grad=True), 4),
        ("Lookahead(Adam, k=5): 5 calls vs 5 steps", lambda: _Repeat(adam(), 5), lambda: Lookahead(adam(), k=5), 5),
        ("LazyUpdate(Adam, [word_embeddings])", adam, lambda: LazyUpdate(adam(), params=[params[0]]), 1),
        ("ExponentialMovingAverage(Adam)", adam, lambda: ExponentialMovingAverage(adam(), 0.999), 1),
        ("GradientClipping(Adam) hard", adam, lambda: GradientClipping(adam(), 1.0), 1),
        ("GradientClipping(Adam) soft", adam, lambda: GradientClipping(adam(), 1.0, mode="soft"), 1),
    ]


class _Repeat:
    """Base optimizer stepped n times per call (the Lookahead cycle's baseline)."""

    def __init__(self, opt, n):
        self.opt, self.n = opt, n

    def step(self):
        for _ in range(self.n):
            self.opt.step()


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    w1, c1 = time.perf_counter(), time.process_time()
    return w1 - w0, c1 - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from _machine import print_header; print_header()  # CPU, threads, SIMD level, native bf16
    params = make_params(bert_base_shapes(args.layers))
    n_params = sum(p.numel() for p in params)
    print(f"BERT-base shapes, {args.layers} layers: {n_params / 1e6:.1f}M params, torch {torch.__version__}, "
          f"{args.threads} threads, {os.cpu_count()} cores visible")
    rows = []
    for name, make_base, make_wrapper, calls in cases(params):
        base, wrapper = make_base(), make_wrapper()
        run_w = lambda: [wrapper.step() for _ in range(calls)]  # noqa: E731
        for _ in range(1):                                       # warm-up: lazy state allocation
            base.step()
            run_w()
        tb, tw, cpu = [], [], []
        for _ in range(args.reps):
            wb, cb = timed(base.step)
            ww, cw = timed(run_w)
            tb.append(wb)
            tw.append(ww)
            cpu.append((cb + cw) / (wb + ww))
        mb, mw = statistics.median(tb), statistics.median(tw)
        rows.append((name, mb * 1e3, mw * 1e3, mw / mb, statistics.median(cpu)))
        print(f"  {name}: base {mb * 1e3:.0f} ms, wrapper {mw * 1e3:.0f} ms, ratio {mw / mb:.2f}", flush=True)
        del base, wrapper
        gc.collect()
    print(f"\n{datetime.date.today()}, {n_params / 1e6:.1f}M params (BERT-base shapes, {args.layers} layers), "
          f"fp32, torch {torch.__version__}, {args.threads} threads; medians of {args.reps} interleaved runs\n")
    print("| wrapper | base step (ms) | wrapper (ms) | ratio | cpu/wall |")
    print("|---|---:|---:|---:|---:|")
    for name, b, w, r, c in rows:
        print(f"| {name} | {b:.0f} | {w:.0f} | {r:.2f} | {c:.1f} |")


if __name__ == "__main__":
    main()
