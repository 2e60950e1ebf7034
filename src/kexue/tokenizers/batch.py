"""A padded batch of `[CLS] A [SEP] (B [SEP])` rows built with array operations (https://kexue.fm/archives/6736).

`encode_batch` gets the pieces of every text from one Rust `tokenizers` call; this module truncates them
(longest first, as `longest_first`), adds the special tokens, the segment ids and the padding for the whole
batch at once: one pass over the ids in C (`np.fromiter`), then index arithmetic on [B, n] arrays, instead
of a Python loop over rows. The result equals `encode` row by row, right-padded.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

__all__ = ["Specials", "longest_first_array", "assemble_batch"]


@dataclass(frozen=True)
class Specials:
    """The ids framing a row: start ([CLS]) and end ([SEP]) or None when the tokenizer has none, and pad."""

    start: int | None
    end: int | None
    pad: int


def longest_first_array(n1: np.ndarray, n2: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """`longest_first` over arrays of lengths [B]: the lengths kept of each pair under `budget` tokens."""
    swap = n1 > n2
    short, long_ = np.minimum(n1, n2), np.maximum(n1, n2)
    long_ = np.where(short > budget, short, np.maximum(short, budget - short))
    split = short + long_ > budget  # both cut: the budget halved, the odd token to the longer one
    short = np.where(split, budget // 2, short)
    long_ = np.where(split, budget // 2 + budget % 2, long_)
    k1, k2 = np.where(swap, long_, short), np.where(swap, short, long_)
    fits = n1 + n2 <= budget
    return np.where(fits, n1, k1), np.where(fits, n2, k2)


def _flatten(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ids -> (all ids in one int64 array, row lengths [B], start of each row in it [B])."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    starts = np.zeros_like(lengths)
    np.cumsum(lengths[:-1], out=starts[1:])
    return flat, lengths, starts


def _flatten_offsets(rows: list[list[tuple[int, int]]], total: int) -> np.ndarray:
    """Rows of (start, end) spans -> one int64 array [total, 2]."""
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(rows)), dtype=np.int64, count=2 * total)
    return flat.reshape(total, 2)


def _scatter(out: np.ndarray, flat: np.ndarray, row_start: np.ndarray, first_col: np.ndarray,
             keep: np.ndarray) -> None:
    """out[r, first_col[r] + j] = flat[row_start[r] + j] for j < keep[r] (out: [B, n] or [B, n, 2]);
    index work proportional to the kept tokens, not to B x n."""
    row = np.repeat(np.arange(len(keep)), keep)                                    # [kept] row of each token
    j = np.arange(len(row)) - np.repeat(np.cumsum(keep) - keep, keep)              # [kept] position in its row
    out[row, first_col[row] + j] = flat[row_start[row] + j]


def assemble_batch(a_rows: list[list[int]], b_rows: list[list[int]] | None, maxlen: int | None,
                   specials: Specials, a_offsets=None, b_offsets=None):
    """(ids, segment ids, mask[, offsets]) as int64 arrays [B, n] ([B, n, 2]) of the rows
    `[start] a[:k1] [end] (b[:k2] [end])`, padded on the right to the longest row.

    `a_rows` / `b_rows` are the piece ids of each first / second text (no special tokens); with `a_offsets`
    (and `b_offsets` for pairs) also each token's character span in its own text, (0, 0) for special
    tokens and padding. Truncation: the first text alone to `maxlen` minus the special tokens, a pair by
    `longest_first`."""
    pair = b_rows is not None
    n_start, n_end = int(specials.start is not None), int(specials.end is not None)
    a_flat, la, a_at = _flatten(a_rows)
    if pair:
        b_flat, lb, b_at = _flatten(b_rows)
    else:
        lb = np.zeros_like(la)
    n_special = n_start + n_end * (2 if pair else 1)
    if maxlen is None:
        k1, k2 = la, lb
    elif pair:
        k1, k2 = longest_first_array(la, lb, maxlen - n_special)
    else:
        k1, k2 = np.minimum(la, maxlen - n_special), lb
    b_col = n_start + k1 + n_end                       # [B] first column of the second text
    length = b_col + (k2 + n_end if pair else 0)       # [B] real tokens per row
    batch, n = len(a_rows), int(length.max(initial=0))
    rows, cols = np.arange(batch), np.arange(n)
    ids = np.full((batch, n), specials.pad, dtype=np.int64)
    if n_start:
        ids[:, 0] = specials.start
    _scatter(ids, a_flat, a_at, np.full(batch, n_start), k1)
    if n_end:
        ids[rows, n_start + k1] = specials.end
    if pair:
        _scatter(ids, b_flat, b_at, b_col, k2)
        if n_end:
            ids[rows, length - 1] = specials.end
    mask = (cols[None, :] < length[:, None]).astype(np.int64)                      # [B, n]
    segs = ((cols[None, :] >= b_col[:, None]) & (mask == 1)).astype(np.int64) if pair \
        else np.zeros((batch, n), dtype=np.int64)                                  # [B, n]
    if a_offsets is None:
        return ids, segs, mask
    offsets = np.zeros((batch, n, 2), dtype=np.int64)                              # [B, n, 2]
    _scatter(offsets, _flatten_offsets(a_offsets, len(a_flat)), a_at, np.full(batch, n_start), k1)
    if pair:
        _scatter(offsets, _flatten_offsets(b_offsets, len(b_flat)), b_at, b_col, k2)
    return ids, segs, mask, offsets
