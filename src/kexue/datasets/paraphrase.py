"""Seeded synthetic paraphrase groups for sentence similarity as many-class classification
(https://kexue.fm/archives/5743, the CPU stand-in for the article's tongyiju.csv).

A "meaning" is a random sequence of content words from a lexicon; each content word has 2-3 surface tokens
(synonyms). A meaning is rendered several times: every word by a random synonym, adjacent words swapped now and
then, filler tokens inserted. All renderings of one meaning form one group (one class); groups never seen in
training test open-set retrieval. Token ids: 0 = [PAD], 1 = [UNK], then the fillers, then the surface tokens.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from kexue._validate import check_float, check_int

__all__ = ["ParaphraseGroups", "make_paraphrase_groups"]

PAD, UNK = 0, 1


@dataclass
class ParaphraseGroups:
    """sentences: token-id lists (no padding); groups: the group id of each sentence (0..num_groups-1);
    meanings: each group's content words; word_of_token: content word of each surface token (-1: special/filler)."""
    sentences: list[list[int]]
    groups: list[int]
    meanings: list[list[int]]
    word_of_token: list[int]
    vocab_size: int

    @property
    def num_groups(self) -> int:
        return len(self.meanings)

    def split(self, num_first: int) -> tuple["ParaphraseGroups", "ParaphraseGroups"]:
        """The first `num_first` groups and the rest (relabelled from 0): training groups and unseen groups."""
        num_first = check_int("num_first", num_first, 0, self.num_groups)
        parts = []
        for lo, hi in ((0, num_first), (num_first, self.num_groups)):
            keep = [i for i, g in enumerate(self.groups) if lo <= g < hi]
            parts.append(ParaphraseGroups([self.sentences[i] for i in keep], [self.groups[i] - lo for i in keep],
                                          self.meanings[lo:hi], self.word_of_token, self.vocab_size))
        return parts[0], parts[1]


def make_paraphrase_groups(num_meanings: int = 3000, lexicon_size: int = 2000, *, words: tuple[int, int] = (4, 8),
                           renderings: tuple[int, int] = (5, 10), synonyms: tuple[int, int] = (2, 3),
                           num_fillers: int = 20, filler_prob: float = 0.3, swap_prob: float = 0.15,
                           seed: int = 0) -> ParaphraseGroups:
    """The spec's recipe: `num_meanings` meanings of words[0]..words[1] content words drawn from a
    `lexicon_size`-word lexicon, each rendered renderings[0]..renderings[1] times; every content word has
    synonyms[0]..synonyms[1] surface tokens; each adjacent pair is swapped with `swap_prob` (one pass, no
    token moves twice) and up to two fillers are inserted, each with `filler_prob`."""
    num_meanings = check_int("num_meanings", num_meanings, 1)
    lexicon_size = check_int("lexicon_size", lexicon_size, 1)
    num_fillers = check_int("num_fillers", num_fillers, 1)
    filler_prob = check_float("filler_prob", filler_prob, 0.0, 1.0)
    swap_prob = check_float("swap_prob", swap_prob, 0.0, 1.0)
    seed = check_int("seed", seed)
    for name, (lo, hi) in (("words", words), ("renderings", renderings), ("synonyms", synonyms)):
        check_int(f"{name}[0]", lo, 1)
        check_int(f"{name}[1]", hi, lo)
    rng = random.Random(seed)
    first = 2 + num_fillers                                              # ids 2..first-1 are fillers
    forms, word_of_token = [], [-1] * first
    for w in range(lexicon_size):
        k = rng.randint(*synonyms)
        forms.append(list(range(len(word_of_token), len(word_of_token) + k)))
        word_of_token += [w] * k
    meanings = [[rng.randrange(lexicon_size) for _ in range(rng.randint(*words))] for _ in range(num_meanings)]
    sentences, groups = [], []
    for g, meaning in enumerate(meanings):
        for _ in range(rng.randint(*renderings)):
            toks = [rng.choice(forms[w]) for w in meaning]
            i = 0
            while i < len(toks) - 1:                                      # local word-order swaps
                if rng.random() < swap_prob:
                    toks[i], toks[i + 1] = toks[i + 1], toks[i]
                    i += 1
                i += 1
            for _ in range(2):
                if rng.random() < filler_prob:
                    toks.insert(rng.randint(0, len(toks)), rng.randrange(2, first))
            sentences.append(toks)
            groups.append(g)
    return ParaphraseGroups(sentences, groups, meanings, word_of_token, len(word_of_token))
