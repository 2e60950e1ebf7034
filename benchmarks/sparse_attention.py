"""Sparse attention (https://kexue.fm/archives/6853) and CRF benchmarks, kexue vs torch-native baselines.

1. Local (window 128), atrous (rate 8) and strided (rate ceil(sqrt(n/2))) attention, kexue's blocked kernels vs
   dense masked SDPA (the same pattern as an [n, n] bool mask), batch 1, 4 heads, head_dim 64, forward pass.
   Time: same process, interleaved A B A B after warm-up, median of REPS runs.
   Peak memory: each (method, n) in a fresh subprocess; inputs (and the dense mask) are built first, then the
   kernel's peak RSS is read as VmHWM - VmRSS after resetting the high-water mark (/proc/self/clear_refs = 5).
   The dense bool mask itself (n^2 bytes) is excluded, which favours the baseline.
2. CRF negative log-likelihood forward + backward: kexue.nn.CRF (forward algorithm batched over sequences)
   vs a straightforward per-sequence, per-step loop written here.
Run: .venv/bin/python benchmarks/sparse_attention.py
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from kexue.nn.crf import CRF
from kexue.nn.sparse_attention import sparse_attention, sparse_attention_mask

H, D, REPS = 4, 64, 5
SIZES = (1024, 4096, 8192)


def patterns(n: int) -> list[tuple[str, dict]]:
    return [("local", {"window": 128}), ("atrous", {"rate": 8}), ("strided", {"rate": math.ceil(math.sqrt(n / 2))})]


def _inputs(n: int):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(1, H, n, D, generator=g) for _ in range(3)]


def _runner(method: str, n: int, pattern: str, kw: dict):
    q, k, v = _inputs(n)
    if method == "dense":
        mask = sparse_attention_mask(n, pattern, **kw)
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return lambda: sparse_attention(q, k, v, pattern=pattern, impl="blocked", **kw)


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
    raise KeyError(field)


def child(method: str, n: int, pattern: str, kw: str) -> None:
    """Subprocess: print the kernel's peak extra RSS in MiB."""
    torch.set_num_threads(2)
    run = _runner(method, n, pattern, json.loads(kw))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                                                 # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    with torch.no_grad():
        run()
    print((_status_kb("VmHWM") - before) / 1024)


def peak_mib(method: str, n: int, pattern: str, kw: dict) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(n), pattern, json.dumps(kw)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def timed(fns: dict, reps: int = REPS) -> dict:
    """Interleaved A B A B timing after one warm-up each; returns medians (s) and the CPU/wall ratio."""
    times = {k: [] for k in fns}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with torch.no_grad():
        for f in fns.values():
            f()
        for _ in range(reps):
            for name, f in fns.items():
                t = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t)
    cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return {**{k: statistics.median(v) for k, v in times.items()}, "cores": cores}


def attention_table() -> list[str]:
    rows = ["| pattern | n | dense SDPA ms | kexue blocked ms | speed-up | dense peak MiB | blocked peak MiB "
            "| memory ratio | cores |", "|---|---|---|---|---|---|---|---|---|"]
    for n in SIZES:
        for pattern, kw in patterns(n):
            t = timed({"dense": _runner("dense", n, pattern, kw), "blocked": _runner("blocked", n, pattern, kw)})
            md, mb = peak_mib("dense", n, pattern, kw), peak_mib("blocked", n, pattern, kw)
            arg = ",".join(f"{k}={v}" for k, v in kw.items())
            rows.append(f"| {pattern}({arg}) | {n} | {t['dense'] * 1e3:.1f} | {t['blocked'] * 1e3:.1f} | "
                        f"{t['dense'] / t['blocked']:.1f}x | {md:.0f} | {mb:.0f} | {md / max(mb, 1e-3):.1f}x | "
                        f"{t['cores']:.2f} |")
            print(rows[-1], flush=True)
    return rows


def crf_loop_nll(trans, start, end, em, tags, lengths):
    """Baseline: per-sequence, per-step forward algorithm and gold score (the textbook loop)."""
    total = em.new_zeros(())
    for b in range(em.shape[0]):
        L = int(lengths[b])
        alpha = start + em[b, 0]
        gold = start[tags[b, 0]] + em[b, 0, tags[b, 0]]
        for t in range(1, L):
            alpha = torch.logsumexp(alpha[:, None] + trans, 0) + em[b, t]
            gold = gold + trans[tags[b, t - 1], tags[b, t]] + em[b, t, tags[b, t]]
        total = total + torch.logsumexp(alpha + end, 0) - (gold + end[tags[b, L - 1]])
    return total / em.shape[0]


def crf_table() -> list[str]:
    rows = ["| CRF (B, n, tags) | loop baseline ms | kexue CRF ms | speed-up | max abs diff | cores |",
            "|---|---|---|---|---|---|"]
    for B, n, T in ((32, 50, 9), (128, 32, 5)):
        g = torch.Generator().manual_seed(0)
        crf = CRF(T)
        em = torch.randn(B, n, T, generator=g, requires_grad=True)
        tags = torch.randint(0, T, (B, n), generator=g)
        lengths = torch.randint(n // 2, n + 1, (B,), generator=g)
        mask = torch.arange(n) < lengths[:, None]
        args = (crf.transitions, crf.start_transitions, crf.end_transitions)

        def loop():
            em.grad = None
            crf_loop_nll(*args, em, tags, lengths).backward()

        def ours():
            em.grad = None
            crf(em, tags, mask).backward()

        diff = (crf_loop_nll(*args, em, tags, lengths) - crf(em, tags, mask)).abs().item()
        times, cpu0, wall0 = {"loop": [], "ours": []}, time.process_time(), time.perf_counter()
        loop(), ours()
        for _ in range(3):
            for name, f in (("loop", loop), ("ours", ours)):
                t = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - t)
        cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        tl, to = statistics.median(times["loop"]), statistics.median(times["ours"])
        rows.append(f"| ({B}, {n}, {T}) | {tl * 1e3:.1f} | {to * 1e3:.1f} | {tl / to:.1f}x | {diff:.1e} | {cores:.2f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    from _machine import print_header; print_header()  # CPU, threads, SIMD level, native bf16
    rows = attention_table()
    print()
    rows += [""] + crf_table()
    print("\n".join(rows))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        main()
