"""Synthetic marker sentences for attribution tests (spec nlp/12, reproduction A, after
https://kexue.fm/archives/7533): sentences of neutral tokens with one or two *marker* tokens of one polarity;
the label is that polarity, so the markers are the only evidence and a faithful attribution puts them on top.
With `p_no_marker` > 0 some sentences have no marker and label 2 ("none"): a model must then detect both
polarities (with two labels it may learn one polarity as the default and ignore the other's markers).

Vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK], then the neutral tokens "n0".."n{N-1}", the positive markers
"+0".."+{M-1}" and the negative markers "-0".."-{M-1}". Each sentence is `[CLS] w_1 .. w_L [SEP]`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .._validate import check_float, check_int

__all__ = ["MarkerSentences", "marker_sentences", "marker_vocab"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def marker_vocab(n_neutral: int = 500, n_markers: int = 10) -> dict[str, int]:
    """token -> id: the five special tokens, the neutral tokens, the positive then the negative markers."""
    n_neutral = check_int("n_neutral", n_neutral, 1)
    n_markers = check_int("n_markers", n_markers, 1)
    tokens = [*SPECIAL_TOKENS, *(f"n{i}" for i in range(n_neutral)), *(f"+{i}" for i in range(n_markers)),
              *(f"-{i}" for i in range(n_markers))]
    return {t: i for i, t in enumerate(tokens)}


@dataclass
class MarkerSentences:
    """input_ids[i] = [CLS] w_1..w_L [SEP] (ids of `vocab`); labels[i] = 1 for positive markers, 0 for negative,
    2 for none;
    is_marker[i][j] = True where input_ids[i][j] is a marker (False on [CLS] / [SEP])."""
    vocab: dict[str, int]
    input_ids: list[list[int]]
    labels: list[int]
    is_marker: list[list[bool]]

    def __len__(self) -> int:
        return len(self.labels)

    def tokens(self, i: int) -> list[str]:
        """The token strings of sentence i."""
        inverse = {v: k for k, v in self.vocab.items()}
        return [inverse[t] for t in self.input_ids[i]]


def marker_sentences(n: int, seed: int = 0, n_neutral: int = 500, n_markers: int = 10, min_len: int = 10,
                     max_len: int = 30, max_markers_per_sentence: int = 2, p_no_marker: float = 0.0) -> MarkerSentences:
    """n seeded sentences of min_len..max_len words (uniform): neutral words drawn uniformly; then, unless the
    sentence is marker-free (probability p_no_marker, label 2), 1..max_markers positions (uniform count)
    replaced by markers of one polarity (a fair coin = the label)."""
    n = check_int("n", n, 1)
    seed = check_int("seed", seed, 0)
    min_len = check_int("min_len", min_len, 1)
    max_len = check_int("max_len", max_len, min_len)
    k_max = check_int("max_markers_per_sentence", max_markers_per_sentence, 1, min_len)
    p_no_marker = check_float("p_no_marker", p_no_marker, 0.0, 1.0)
    vocab = marker_vocab(n_neutral, n_markers)
    neutral0, pos0 = len(SPECIAL_TOKENS), len(SPECIAL_TOKENS) + n_neutral
    neg0 = pos0 + n_markers
    rng = random.Random(seed)
    ids, labels, marks = [], [], []
    for _ in range(n):
        length = rng.randint(min_len, max_len)
        words = [neutral0 + rng.randrange(n_neutral) for _ in range(length)]
        label = rng.randrange(2)
        where = rng.sample(range(length), rng.randint(1, k_max))
        if p_no_marker > 0 and rng.random() < p_no_marker:
            label, where = 2, []
        first = pos0 if label == 1 else neg0
        for j in where:
            words[j] = first + rng.randrange(n_markers)
        flags = [False] * length
        for j in where:
            flags[j] = True
        ids.append([vocab["[CLS]"], *words, vocab["[SEP]"]])
        labels.append(label)
        marks.append([False, *flags, False])
    return MarkerSentences(vocab, ids, labels, marks)
