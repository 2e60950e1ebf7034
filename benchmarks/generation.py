"""Decoding speed (https://kexue.fm/archives/6933): kexue.generation.generate, eager and compiled
(`compile=True`), vs transformers.generate (eager; with --hf-compile also its static cache + torch.compile) on
one set of random GPT-2-small weights; UniLM seq2seq on a BERT-base config, KV-cached vs recompute-every-step
(bert4keras's way) and vs bert4torch when its venv exists; fp32 and bf16 weights.

Each row also states the weight-read floor: the time of every linear layer and the LM head applied to one
token in the same dtype, i.e. the memory-bandwidth bound of one decoding step at batch 1.
Runs are interleaved (A B A B) after a warm-up; medians. Usage: python benchmarks/generation.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers as T

import kexue
from kexue.generation import generate

B4T_PY = "/tmp/b4t-venv/bin/python"
B4T_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generation_b4t_worker.py")


def timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def interleave(fns: dict, runs: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Run every callable in turn (A B A B ...) after warm-up; median wall seconds and cores used."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    res = {k: [] for k in fns}
    for _ in range(runs):
        for k, f in fns.items():
            res[k].append(timed(f))
    return {k: dict(wall=statistics.median(w for w, _ in v), cores=statistics.median(c / w for w, c in v))
            for k, v in res.items()}


@torch.inference_mode()
def weight_floor(weights: list[torch.Tensor], runs: int = 20) -> tuple[float, int]:
    """Median seconds of F.linear(one token, W) over every weight matrix of one decoding step, and the bytes."""
    xs = {w.shape[1]: torch.randn(1, 1, w.shape[1], dtype=w.dtype) for w in weights}
    step = lambda: [F.linear(xs[w.shape[1]], w) for w in weights]
    for _ in range(3):
        step()
    times = [timed(step)[0] for _ in range(runs)]
    return statistics.median(times), sum(w.numel() * w.element_size() for w in weights)


def linear_weights(model, lm_head: torch.Tensor) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)] + [lm_head]


def hf_compiled(hf):
    """transformers' own compiled decoding (static cache + torch.compile of forward), or None where it does not
    compile here."""
    try:
        hf.generation_config.cache_implementation = "static"
        hf.forward = torch.compile(hf.forward, dynamic=False)
        return hf
    except Exception as e:                                        # noqa: BLE001 - reported in the table
        print(f"transformers compiled row skipped: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def gpt2_rows(runs: int, new: int, prompt: int, dtypes: list[torch.dtype], compiled_peer: bool) -> list[dict]:
    """GPT-2 small (random weights): kexue eager, kexue compiled (generate(compile=True)), transformers eager
    (and compiled with --hf-compile); greedy batch 1 and 8, beam 4."""
    torch.manual_seed(0)
    hf = T.GPT2LMHeadModel(T.GPT2Config()).eval()                    # GPT-2 small, random weights
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        kx = kexue.build_transformer_model(checkpoint=d).eval()
    hf_c = None
    if compiled_peer:
        hf_c = T.GPT2LMHeadModel(hf.config).eval()
        hf_c.load_state_dict(hf.state_dict())
        hf_c.generation_config.eos_token_id, hf_c.generation_config.pad_token_id = None, 0
        hf_c = hf_compiled(hf_c)
    rows = []
    for dtype in dtypes:
        for m in (hf, kx, hf_c):
            if m is not None:
                m.to(dtype)
        floor, nbytes = weight_floor(linear_weights(kx, kx.embeddings.word.weight))
        for batch, beams in ((1, 1), (8, 1), (1, 4)):
            ids = torch.randint(100, 50000, (batch, prompt), generator=torch.Generator().manual_seed(batch))
            mask = torch.ones_like(ids)

            def ours(compile: bool):
                return lambda: generate(kx, ids, attention_mask=mask, max_new_tokens=new, stop_at_eos=False,
                                        num_beams=beams, compile=compile).sequences

            def theirs(model):
                def run():
                    with torch.inference_mode():
                        return model.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                                              num_beams=beams, early_stopping=False,
                                              length_penalty=0.0)[:, prompt:]
                return run
            fns = {"eager": ours(False), "compiled": ours(True), "transformers": theirs(hf)}
            if hf_c is not None:
                fns["transformers compiled"] = theirs(hf_c)
            outs = {k: f() for k, f in fns.items()}                   # also the compile warm-up
            ref = outs["transformers"]
            same = {k: bool(torch.equal(v, ref)) for k, v in outs.items() if k != "transformers"}
            t = interleave(fns, runs, warmup=0)
            rows.append(dict(case=f"GPT-2 small greedy B={batch}" if beams == 1 else f"GPT-2 small beam {beams}",
                             dtype=str(dtype).replace("torch.", ""), times=t, steps=new, floor=floor,
                             nbytes=nbytes, same=same))
    return rows


@torch.inference_mode()
def step_rows(runs: int, prompt: int, batches=(1, 8)) -> list[dict]:
    """One cached decode step alone (no prefill, no sampling loop): kexue eager vs compiled vs the weight-read
    floor, interleaved per round, GPT-2 small fp32 (the issue's batch-1 target: within 1.1x of the floor)."""
    from kexue.generation.generate import _decode_step
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        T.GPT2LMHeadModel(T.GPT2Config()).save_pretrained(d)
        kx = kexue.build_transformer_model(checkpoint=d).eval()
    weights = linear_weights(kx, kx.embeddings.word.weight)
    out = []
    for batch in batches:
        ids = torch.randint(100, 50000, (batch, prompt), generator=torch.Generator().manual_seed(batch))
        p = kx.prepare_decoding(ids, torch.ones_like(ids), max_new_tokens=64)
        steps = {"eager": _decode_step(kx, False), "compiled": _decode_step(kx, True)}

        def per_step(step, n=32):
            kx.setup_caches(batch, p.decoder_len + 64)
            tok = kx.prefill(p.rows, ids[:, :0], p.extra).argmax(-1, keepdim=True)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                tok = step(tok).argmax(-1, keepdim=True)
                times.append(time.perf_counter() - t0)
            return statistics.median(times)
        per_step(steps["compiled"], 2)                                 # compile
        res = {"eager": [], "compiled": [], "floor": []}
        for _ in range(runs):
            res["eager"].append(per_step(steps["eager"]))
            res["compiled"].append(per_step(steps["compiled"]))
            res["floor"].append(weight_floor(weights)[0])
        med = {k: statistics.median(v) for k, v in res.items()}
        out.append(dict(batch=batch, **med, nbytes=weight_floor(weights)[1]))
    return out


def step_table(rows: list[dict]) -> str:
    out = ["| GPT-2 small fp32, one decode step | eager ms | compiled ms | floor ms | eager/floor | compiled/floor |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| batch {r['batch']} | {1e3 * r['eager']:.1f} | {1e3 * r['compiled']:.1f} | "
                   f"{1e3 * r['floor']:.1f} ({r['nbytes'] / r['floor'] / 1e9:.0f} GB/s) | "
                   f"{r['eager'] / r['floor']:.2f} | {r['compiled'] / r['floor']:.2f} |")
    return "\n".join(out)


def gpt2_table(rows: list[dict]) -> str:
    """ms per decoding step of each variant; ratios: step / weight-read floor and transformers / kexue."""
    names = [k for k in rows[0]["times"]] if rows else []
    out = ["| case | dtype | " + " | ".join(f"{n} ms/step" for n in names) + " | floor ms/step | "
           "compiled/floor | eager/floor | transformers/compiled | transformers/eager | same tokens as transformers |",
           "|---|---|" + "---|" * (len(names) + 6)]
    for r in rows:
        ms = {k: 1e3 * v["wall"] / r["steps"] for k, v in r["times"].items()}
        fl = 1e3 * r["floor"]
        out.append(f"| {r['case']} | {r['dtype']} | " + " | ".join(f"{ms[n]:.1f}" for n in names)
                   + f" | {fl:.1f} ({r['nbytes'] / r['floor'] / 1e9:.0f} GB/s) | {ms['compiled'] / fl:.2f} | "
                   f"{ms['eager'] / fl:.2f} | {ms['transformers'] / ms['compiled']:.2f} | "
                   f"{ms['transformers'] / ms['eager']:.2f} | "
                   + ", ".join(f"{k}: {v}" for k, v in r["same"].items()) + " |")
    return "\n".join(out)


class B4TWorker:
    """bert4torch in its own venv, driven over stdin/stdout so its runs interleave with ours."""

    def __init__(self, ckpt_dir: str, src_len: int, new: int, dtype: str):
        self.p = subprocess.Popen([B4T_PY, B4T_WORKER, ckpt_dir, str(src_len), str(new), dtype],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.p.stdout.readline()
        while ready and not ready.startswith("ready"):        # skip bert4torch's own log lines
            ready = self.p.stdout.readline()
        if not ready.startswith("ready"):
            raise RuntimeError(f"bert4torch worker failed: {ready!r}")
        self.tokens = json.loads(ready[len("ready"):])       # its greedy output, to compare with ours

    def __call__(self):
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        while line and not line.startswith("done"):
            line = self.p.stdout.readline()
        if not line.startswith("done"):
            raise RuntimeError(f"bert4torch worker failed: {line!r}")

    def close(self):
        self.p.stdin.write("quit\n")
        self.p.stdin.flush()
        self.p.wait(timeout=60)


def unilm_rows(runs: int, new: int, src_len: int) -> list[dict]:
    torch.manual_seed(0)
    cfg = dict(model_type="bert", vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072, max_position_embeddings=512, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)
    kx = kexue.build_transformer_model(config=cfg, application="unilm", with_mlm=True).eval()
    ids = torch.randint(1000, 21000, (1, src_len), generator=torch.Generator().manual_seed(0))
    seg = torch.zeros_like(ids)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        kx.to(dtype)
        floor, nbytes = weight_floor(linear_weights(kx, kx.embeddings.word.weight))
        cached = lambda: generate(kx, ids, segment_ids=seg, max_new_tokens=new, stop_at_eos=False).trimmed()
        recompute = lambda: generate(kx, ids, segment_ids=seg, max_new_tokens=new, stop_at_eos=False,
                                     use_cache=False).trimmed()
        t = interleave({"kexue": cached, "peer": recompute}, max(3, runs // 2))
        same = [s.tolist() for s in cached()] == [s.tolist() for s in recompute()]
        name = str(dtype).replace("torch.", "")
        rows.append(dict(case=f"UniLM BERT-base src {src_len}", dtype=name, peer="recompute (bert4keras way)",
                         kexue=t["kexue"], other=t["peer"], new=new, steps=new, floor=floor, nbytes=nbytes, same=same))
        if os.path.exists(B4T_PY):
            with tempfile.TemporaryDirectory() as d:
                kexue.models.save_pretrained(kx.float(), d)
                kx.to(dtype)
                try:
                    worker = B4TWorker(d, src_len, new, name)
                except RuntimeError as e:
                    print(f"bert4torch row skipped: {e}", file=sys.stderr)
                    continue
                try:
                    t = interleave({"kexue": cached, "peer": worker}, max(3, runs // 2))
                finally:
                    worker.close()
            rows.append(dict(case=f"UniLM BERT-base src {src_len}", dtype=name,
                             peer="bert4torch 0.4.9 (UniLM example decoder)", kexue=t["kexue"], other=t["peer"],
                             new=new, steps=new, floor=floor, nbytes=nbytes,
                             same=worker.tokens == cached()[0].tolist()))
    return rows


def table(rows: list[dict]) -> str:
    out = ["| case | dtype | peer | kexue ms/step | peer ms/step | kexue tok/s | peer tok/s | speed-up | "
           "floor ms/step | kexue/floor | same tokens | cores |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k, o = r["kexue"]["wall"], r["other"]["wall"]
        out.append(f"| {r['case']} | {r['dtype']} | {r['peer']} | {1e3 * k / r['steps']:.1f} | "
                   f"{1e3 * o / r['steps']:.1f} | {r['new'] / k:.1f} | {r['new'] / o:.1f} | {o / k:.2f} | "
                   f"{1e3 * r['floor']:.1f} ({r['nbytes'] / r['floor'] / 1e9:.0f} GB/s) | "
                   f"{k / r['steps'] / r['floor']:.2f} | {'-' if r['same'] is None else r['same']} | "
                   f"{r['kexue']['cores']:.1f}/{r['other']['cores']:.1f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--src", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", choices=["gpt2", "unilm", "step"], default=None)
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated torch dtypes")
    ap.add_argument("--hf-compile", action="store_true", help="add transformers with a static cache + torch.compile")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from _machine import print_header; print_header()  # CPU, threads, SIMD level, native bf16
    T.logging.set_verbosity_error()
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    gpt2, rows, steps = [], [], []
    if args.only in (None, "step"):
        steps = step_rows(args.runs, args.prompt)
    if args.only in (None, "gpt2"):
        gpt2 = gpt2_rows(args.runs, args.new, args.prompt, dtypes, args.hf_compile)
    if args.only in (None, "unilm"):
        rows += unilm_rows(args.runs, args.new, args.src)
    print(f"torch {torch.__version__}, transformers {T.__version__}, {args.threads} threads, "
          f"{time.strftime('%Y-%m-%d')}; medians of {args.runs} interleaved runs; speed-up = peer time / kexue time")
    if steps:
        print(step_table(steps))
    if gpt2:
        print(gpt2_table(gpt2))
    if rows:
        print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(steps + gpt2 + rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
