"""A character vocabulary built from text, for a small Chinese char-level BERT (spec nlp/02 section 4,
https://kexue.fm/archives/6736): the article's BERT maps every Chinese character to one token; here the
vocabulary is counted from the corpus instead of taken from Google's checkpoint.

Characters are normalised as `Tokenizer(do_lower_case=True)` normalises them (lower case, accents stripped),
so every counted character is found again by the tokenizer; whitespace (the tokenizer's [unused1]) and
control characters (removed by BERT's cleaning) are not counted.
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Iterable

from kexue._validate import check_bool, check_int

from .vocab import is_control, is_space

__all__ = ["CHAR_VOCAB_SPECIALS", "build_char_vocab"]

CHAR_VOCAB_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]")


def _normalize(ch: str) -> str:
    """BertNormalizer(lowercase=True) on one character: lower case, then accents (Mn marks) removed."""
    return "".join(c for c in unicodedata.normalize("NFD", ch.lower()) if unicodedata.category(c) != "Mn")


def build_char_vocab(texts: Iterable[str], min_count: int = 5, max_size: int | None = None,
                     do_lower_case: bool = True) -> dict[str, int]:
    """{token: id}: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 [unused1]=5, then every character seen at least
    `min_count` times, most frequent first (ties by character), at most `max_size` tokens in all.

    `Tokenizer(vocab, char_level_mapping=True)` then gives one token per character of any text (rarer
    characters -> [UNK], whitespace -> [unused1]); plain `Tokenizer(vocab)` does too on CJK text.
    Pass the same `do_lower_case` to the tokenizer.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, got one str (wrap it in a list)")
    check_int("min_count", min_count, low=1)
    if max_size is not None:
        check_int("max_size", max_size, low=len(CHAR_VOCAB_SPECIALS))
    check_bool("do_lower_case", do_lower_case)
    counts: Counter[str] = Counter()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}: {text!r:.60}")
        counts.update(text)
    merged: Counter[str] = Counter()
    for ch, n in counts.items():
        if is_space(ch) or is_control(ch):
            continue
        norm = _normalize(ch) if do_lower_case else ch
        if len(norm) == 1 and not is_space(norm) and not is_control(norm):
            merged[norm] += n
    chars = sorted((c for c, n in merged.items() if n >= min_count and c not in CHAR_VOCAB_SPECIALS),
                   key=lambda c: (-merged[c], c))
    if max_size is not None:
        chars = chars[:max_size - len(CHAR_VOCAB_SPECIALS)]
    return {token: i for i, token in enumerate((*CHAR_VOCAB_SPECIALS, *chars))}
