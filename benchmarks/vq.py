"""VQ step time (https://kexue.fm/archives/6760): kexue.nn.VectorQuantizer forward + backward vs a plain-torch
baseline written the straightforward way (torch.cdist, argmin, gather, two MSE terms, straight-through).

Both quantise the same [N, D] encoder output against the same [K, D] codebook and backpropagate the same
scalar (sum of the straight-through output times a fixed random tensor, plus the VQ loss); the script
first checks they pick the same codes and give the same gradients.  Runs are interleaved (A B A B ...)
after warm-up; the table gives medians, the kexue/baseline ratio, and the cores each run got
(process CPU time / wall time).  Usage: python benchmarks/vq.py [--runs 9] [--threads 2]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from kexue.nn.quantize import VectorQuantizer

CONFIGS = [(4096, 512, 64), (16384, 512, 64), (4096, 2048, 256)]  # (N vectors, K codes, D)


def baseline_step(z: torch.Tensor, codebook: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook VQ layer: cdist + argmin, lookup, codebook + 0.25 commitment loss, straight-through."""
    idx = torch.cdist(z.detach(), codebook.detach()).argmin(-1)  # [N]
    z_q = codebook[idx]  # [N, D]
    loss = F.mse_loss(z_q, z.detach()) + 0.25 * F.mse_loss(z, z_q.detach())
    z_st = z + (z_q - z).detach()
    ((z_st * w).sum() + loss).backward()
    return idx, loss


def kexue_step(vq: VectorQuantizer, z: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = vq(z)
    ((out.z_q_st * w).sum() + out.loss).backward()
    return out.indices, out.loss


def timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def bench(N: int, K: int, D: int, runs: int) -> dict:
    g = torch.Generator().manual_seed(0)
    vq = VectorQuantizer(num_codes=K, embedding_size=D)
    with torch.no_grad():
        vq.weight.copy_(torch.randn(K, D, generator=g))
    codebook = vq.weight.detach().clone().requires_grad_(True)
    z_k = torch.randn(N, D, generator=g).requires_grad_(True)
    z_b = z_k.detach().clone().requires_grad_(True)
    w = torch.randn(N, D, generator=g)

    idx_b, loss_b = baseline_step(z_b, codebook, w)
    idx_k, loss_k = kexue_step(vq, z_k, w)
    agree = (idx_b == idx_k).float().mean().item()
    torch.testing.assert_close(loss_k, loss_b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(z_k.grad, z_b.grad, rtol=1e-4, atol=1e-6)

    def run_b():
        z_b.grad = codebook.grad = None
        baseline_step(z_b, codebook, w)

    def run_k():
        z_k.grad = vq.weight.grad = None
        kexue_step(vq, z_k, w)

    for _ in range(2):  # warm-up
        run_b()
        run_k()
    res = {"baseline": [], "kexue": []}
    for _ in range(runs):  # interleaved A B A B
        res["baseline"].append(timed(run_b))
        res["kexue"].append(timed(run_k))
    out = {"agree": agree}
    for k, v in res.items():
        out[k] = statistics.median(t for t, _ in v)
        out[k + "_cores"] = statistics.median(c / t for t, c in v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from _machine import print_header; print_header()  # CPU, threads, SIMD level, native bf16
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"median of {args.runs} interleaved runs")
    print()
    print("| N x K x D | baseline cdist/argmin (ms) | kexue VectorQuantizer (ms) | ratio kexue/baseline | "
          "cores (base / kexue) | same codes |")
    print("|---|---|---|---|---|---|")
    for N, K, D in CONFIGS:
        r = bench(N, K, D, args.runs)
        print(f"| {N} x {K} x {D} | {1e3 * r['baseline']:.2f} | {1e3 * r['kexue']:.2f} | "
              f"{r['kexue'] / r['baseline']:.2f} | {r['baseline_cores']:.1f} / {r['kexue_cores']:.1f} | "
              f"{100 * r['agree']:.2f} % |")


if __name__ == "__main__":
    main()
