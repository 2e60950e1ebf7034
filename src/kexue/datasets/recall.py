"""Seeded synthetic tasks for two NLP articles.

Associative recall (sparse attention, https://kexue.fm/archives/6853): a length-n sequence of filler tokens with
`num_items` (key, value) items at random positions and, at the last position, a query key; the answer is the
value of the item with that key. One item is one token (id names its key and its value), so the task measures
what a pattern can *reach* in one hop: "distant" puts the answer item >= min_distance back at an offset that is a
multiple of `rate` (atrous reach), "near" puts it 1-3 back at an offset that is not (local reach).

Sort-unique (bidirectional decoding, https://kexue.fm/archives/6877): source = a random string of min_len..max_len
symbols, target = its distinct symbols in increasing order (a task where decoding errors accumulate).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from .._validate import check_choice, check_int

__all__ = ["RecallTask", "associative_recall", "recall_vocab_size", "sort_unique"]

VARIANTS = ("distant", "near")


class RecallTask(NamedTuple):
    """tokens [N, n] long, targets [N] (value index in [0, num_values)), offsets [N] (query pos - answer pos)."""
    tokens: torch.Tensor
    targets: torch.Tensor
    offsets: torch.Tensor
    vocab_size: int


def recall_vocab_size(num_keys: int, num_values: int, num_fillers: int = 4) -> int:
    """Token ids: [0, F) fillers, F + key*V + value items, F + K*V + key queries."""
    return num_fillers + num_keys * num_values + num_keys


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(check_int("seed", seed, 0))


def _offsets(variant: str, seq_len: int, rate: int, min_distance: int) -> list[int]:
    """The allowed distances from the query (position n - 1) back to the answer item."""
    if variant == "distant":
        allowed = [d for d in range(min_distance, seq_len) if d % rate == 0]
        if not allowed:
            raise ValueError(f"variant='distant' needs a multiple of rate={rate} in [min_distance={min_distance}, "
                             f"seq_len - 1={seq_len - 1}]; lengthen seq_len or lower min_distance")
    else:
        allowed = [d for d in (1, 2, 3) if d % rate != 0 and d < seq_len]
        if not allowed:
            raise ValueError(f"variant='near' needs an offset in 1..3 that is not a multiple of rate={rate} and "
                             f"< seq_len={seq_len}")
    return allowed


def associative_recall(num: int, variant: str = "distant", *, seq_len: int = 256, num_keys: int = 8,
                       num_values: int = 8, num_items: int = 8, num_fillers: int = 4, rate: int = 8,
                       min_distance: int = 100, seed: int | torch.Generator = 0) -> RecallTask:
    """`num` associative-recall sequences (module docstring); seeded, no download.

    Items carry distinct keys within a sequence (so the answer is unique) and independent uniform values (so
    the items a pattern sees besides the answer say nothing about it: chance accuracy is 1 / num_values)."""
    num = check_int("num", num, 0)
    check_choice("variant", variant, VARIANTS)
    seq_len = check_int("seq_len", seq_len, 2)
    num_keys, num_values = check_int("num_keys", num_keys, 1), check_int("num_values", num_values, 1)
    num_items = check_int("num_items", num_items, 1, min(num_keys, seq_len - 1))
    num_fillers = check_int("num_fillers", num_fillers, 1)
    rate, min_distance = check_int("rate", rate, 1), check_int("min_distance", min_distance, 1)
    allowed = torch.tensor(_offsets(variant, seq_len, rate, min_distance))
    g = _generator(seed)
    F, K, V, n = num_fillers, num_keys, num_values, seq_len
    tokens = torch.randint(0, F, (num, n), generator=g)                               # [N, n] fillers
    keys = torch.rand(num, K, generator=g).argsort(-1)[:, :num_items]                 # [N, M] distinct keys
    values = torch.randint(0, V, (num, num_items), generator=g)                       # [N, M]
    offsets = allowed[torch.randint(0, len(allowed), (num,), generator=g)]            # [N] item 0 = the answer
    # the other items: distinct random positions in [0, n - 1) other than the answer's
    score = torch.rand(num, n - 1, generator=g)
    score[torch.arange(num), n - 1 - offsets] = 2.0                                   # answer position first
    pos = score.argsort(-1, descending=True)[:, :num_items]                           # [N, M]
    rows = torch.arange(num)[:, None]
    tokens[rows, pos] = F + keys * V + values
    tokens[:, n - 1] = F + K * V + keys[:, 0]
    return RecallTask(tokens, values[:, 0].clone(), offsets, recall_vocab_size(K, V, F))


def sort_unique(num: int, *, alphabet: int = 30, min_len: int = 8, max_len: int = 16, offset: int = 0,
                seed: int | torch.Generator = 0) -> list[tuple[list[int], list[int]]]:
    """`num` (source, target) pairs: source = min_len..max_len symbols drawn uniformly from
    [offset, offset + alphabet), target = sorted(set(source)). Seeded, no download."""
    num, alphabet = check_int("num", num, 0), check_int("alphabet", alphabet, 1)
    min_len = check_int("min_len", min_len, 1)
    max_len = check_int("max_len", max_len, min_len)
    offset = check_int("offset", offset, 0)
    g = _generator(seed)
    lengths = torch.randint(min_len, max_len + 1, (num,), generator=g).tolist()
    out = []
    for length in lengths:
        src = (torch.randint(0, alphabet, (length,), generator=g) + offset).tolist()
        out.append((src, sorted(set(src))))
    return out
