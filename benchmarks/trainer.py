"""Trainer overhead over a hand-written loop (same model, data order, optimizer), interleaved A B B A.

    python benchmarks/trainer.py [--write]     # --write updates the Trainer section of RESULTS.md

Both loops do the same work per step: forward, cross-entropy, backward, AdamW step, zero_grad and
loss.item(); the Trainer adds its hooks, the batch-size-weighted meters, the NaN guard and the
sampler. Ratio = Trainer / hand loop (1.00 = no overhead).
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kexue.train import Trainer
from kexue.train.data import ResumableSampler

CONFIGS = [  # name, widths, samples, batch
    ("tiny MLP 32-64-10", (32, 64, 10), 2048, 32),
    ("MLP 256-1024-1024-10", (256, 1024, 1024, 10), 1024, 64),
]


def make(widths, n, seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.GELU()]
    model = nn.Sequential(*layers[:-1])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, widths[0], generator=g)
    return model, TensorDataset(x, torch.randint(0, widths[-1], (n,), generator=g))


def hand_loop(widths, n, batch, precision):
    model, ds = make(widths, n)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = ResumableSampler(ds, shuffle=True, seed=0)           # the Trainer's data order
    sampler.set_epoch(0)
    loader = DataLoader(ds, batch_size=batch, sampler=sampler)
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    t0, c0 = time.perf_counter(), time.process_time()
    for x, y in loader:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    return time.perf_counter() - t0, time.process_time() - c0


def trainer_loop(widths, n, batch, precision):
    model, ds = make(widths, n)
    tr = Trainer(model, torch.optim.AdamW(model.parameters(), lr=1e-3), F.cross_entropy, precision=precision,
                 distributed=False)
    t0, c0 = time.perf_counter(), time.process_time()
    tr.fit(ds, epochs=1, batch_size=batch, verbose=0)
    return time.perf_counter() - t0, time.process_time() - c0


def measure(widths, n, batch, precision, reps):
    for fn in (hand_loop, trainer_loop):                           # warm-up
        fn(widths, n, batch, precision)
    a, b, ca, cb, share = [], [], [], [], []
    pairs = [(hand_loop, a, ca), (trainer_loop, b, cb)]
    for r in range(reps):                    # interleaved A B B A ...: the 2nd of a pair pays the 1st's frees
        for fn, wall, cpu in (pairs if r % 2 == 0 else pairs[::-1]):
            w, c = fn(widths, n, batch, precision)
            wall.append(w)
            cpu.append(c)
            share.append(c / w)
    med = statistics.median
    return med(a), med(b), med(ca), med(cb), med(share)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from _machine import print_header; print_header()  # CPU, threads, SIMD level, native bf16
    rows = ["| config | precision | steps | hand loop ms/step | Trainer ms/step | ratio (wall) | "
            "hand loop CPU ms/step | Trainer CPU ms/step | ratio (CPU) | CPU/wall |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name, widths, n, batch in CONFIGS:
        for precision in ("fp32", "bf16"):
            steps = n // batch
            a, b, ca, cb, share = measure(widths, n, batch, precision, args.reps)
            rows.append(f"| {name}, batch {batch} | {precision} | {steps} | {1e3 * a / steps:.3f} | "
                        f"{1e3 * b / steps:.3f} | {b / a:.2f} | {1e3 * ca / steps:.3f} | {1e3 * cb / steps:.3f} | "
                        f"{cb / ca:.2f} | {share:.2f} |")
            print(rows[-1], flush=True)
    table = "\n".join(rows)
    header = (f"## Trainer overhead (kexue.train)\n\n`python benchmarks/trainer.py --write`, "
              f"{datetime.date.today()}, 2-core CPU, torch {torch.__version__}, {args.threads} threads, "
              f"median of {args.reps} interleaved runs (A B B A order) of one epoch after warm-up. Both loops: forward, "
              "cross-entropy, backward, AdamW, zero_grad, loss.item(); ratio = Trainer / hand loop. "
              "The machine is shared (CPU/wall = share of a core the process got), so the CPU-time ratio "
              "is the steadier overhead measure.\n\n")
    print("\n" + table)
    if args.write:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
        section = f"<!-- trainer:begin -->\n{header}{table}\n<!-- trainer:end -->"
        pat = re.compile(r"<!-- trainer:begin -->.*?<!-- trainer:end -->", re.S)
        text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
