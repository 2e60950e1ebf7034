"""Shared encode/batch logic of the WordPiece and SentencePiece tokenizers (https://kexue.fm/archives/6736).

A subclass only turns one text into ids (and character offsets); this base adds the special tokens,
the longest-first truncation of Hugging Face `tokenizers` (so ids match `transformers` exactly), the
segment ids of a pair `[CLS] A [SEP] B [SEP]`, and dynamic padding of a batch.
"""
from __future__ import annotations

import abc
import numbers
from typing import Sequence

import torch

from kexue._validate import check_bool, check_int

from .batch import Specials, assemble_batch

__all__ = ["TokenizerBase", "longest_first"]

Offsets = list[tuple[int, int]]


def longest_first(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Lengths kept of a pair (n1, n2) under `budget` tokens, Hugging Face's `longest_first` rule:
    cut the longer one down to the shorter, then split the budget evenly (the odd token to the longer)."""
    n1, n2 = check_int("n1", n1, low=0), check_int("n2", n2, low=0)
    budget = check_int("budget", budget, low=0)
    if n1 + n2 <= budget:
        return n1, n2
    swap = n1 > n2
    short, long_ = (n2, n1) if swap else (n1, n2)
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short, long_ = budget // 2, budget // 2 + budget % 2
    return (long_, short) if swap else (short, long_)


def _check_text(text, name: str) -> None:
    """A str that the Rust tokenizer can take: a surrogate code point (e.g. '\\ud800' from a bad decode)
    has no UTF-8 form, so it is refused here by name and position, as Hugging Face refuses it (with an
    unclear TypeError); repair the text upstream (decode with errors='replace', or join surrogate pairs
    with .encode('utf-16', 'surrogatepass').decode('utf-16'))."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}: {repr(text)[:60]}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} contains a surrogate code point {text[e.start]!r} at position {e.start}, "
                         "which has no UTF-8 form: the text must be valid Unicode (repair its decoding, "
                         "e.g. errors='replace')") from None


class TokenizerBase(abc.ABC):
    """bert4keras `TokenizerBase`: tokenize / encode / encode_batch on top of `_pieces(text)`."""

    _token_start_id: int | None = None
    _token_end_id: int | None = None
    _token_pad_id: int | None = None
    _token_unk_id: int | None = None
    _token_mask_id: int | None = None
    _return_offsets: bool = False

    # ---- what a subclass provides -------------------------------------------------------------
    @abc.abstractmethod
    def _pieces(self, text: str) -> tuple[list[int], Offsets | None]:
        """Ids of `text` without special tokens, and their (start, end) character spans (or None)."""

    @abc.abstractmethod
    def id_to_token(self, i: int) -> str:
        """The token string of id `i`."""

    @abc.abstractmethod
    def token_to_id(self, token: str) -> int:
        """The id of `token` (the unknown id when absent)."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids."""

    # ---- public API ---------------------------------------------------------------------------
    @property
    def _vocab_size(self) -> int:  # bert4keras spelling
        return self.vocab_size

    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.token_to_id(t) for t in _as_token_list(tokens)]

    def ids_to_tokens(self, ids) -> list[str]:
        return [self.id_to_token(i) for i in _as_id_list(ids, self.vocab_size)]

    def tokenize(self, text: str, maxlen: int | None = None) -> list[str]:
        """Tokens of `text` with the start/end tokens, as bert4keras (`[CLS] ... [SEP]`)."""
        _check_text(text, "text")
        ids, _ = self.encode(text, maxlen=maxlen, return_offsets=False)
        return [self.id_to_token(i) for i in ids]

    def encode(self, first: str, second: str | None = None, maxlen: int | None = None,
               return_offsets: bool | None = None):
        """(token_ids, segment_ids) of `[CLS] first [SEP] (second [SEP])`, longest-first truncated to
        `maxlen`; with `return_offsets` also the (start, end) character span of each token in its own
        text ((0, 0) for special tokens), as Hugging Face's `offset_mapping`."""
        _check_text(first, "first")
        if second is not None:
            _check_text(second, "second")
        maxlen = self._check_maxlen(maxlen, second is not None)
        with_offsets = self._want_offsets(return_offsets)
        a = self._pieces(first)
        b = None if second is None else self._pieces(second)
        return self._assemble(a, b, maxlen, with_offsets)

    def encode_batch(self, firsts: Sequence[str], seconds: Sequence[str] | None = None,
                     maxlen: int | None = None, return_tensors: bool = True, return_offsets: bool = False):
        """Encode a batch and right-pad it to its longest row: (token_ids, segment_ids, attention_mask),
        each a LongTensor [B, n] (nested lists when `return_tensors=False`); mask 1 = real token. Row i
        equals `encode(firsts[i], seconds[i], maxlen)`. With `return_offsets=True` also the character spans
        [B, n, 2] of each token in its own text, (0, 0) for special tokens and padding.

        The texts go to the Rust tokenizer in one call and the rows are truncated, framed and padded with
        array operations (`batch.assemble_batch`), not per sentence in Python."""
        firsts = _check_texts(firsts, "firsts")
        if seconds is not None:
            seconds = _check_texts(seconds, "seconds")
            if len(seconds) != len(firsts):
                raise ValueError(f"seconds must have one text per first text: got {len(seconds)} "
                                 f"seconds for {len(firsts)} firsts")
        maxlen = self._check_maxlen(maxlen, seconds is not None)
        check_bool("return_tensors", return_tensors)
        check_bool("return_offsets", return_offsets)
        if self._token_pad_id is None:
            raise ValueError("encode_batch pads with the [PAD] token, which is not in this vocabulary")
        rows, spans = self._pieces_batch(firsts if seconds is None else firsts + seconds, return_offsets)
        if return_offsets and spans is None:
            raise ValueError(f"return_offsets=True is not supported by {type(self).__name__}")
        n = len(firsts)
        a_rows, b_rows = rows[:n], (None if seconds is None else rows[n:])
        a_spans, b_spans = (None, None) if spans is None else (spans[:n], spans[n:])
        specials = Specials(self._token_start_id, self._token_end_id, self._token_pad_id)
        out = assemble_batch(a_rows, b_rows, maxlen, specials, a_spans, b_spans)
        if return_tensors:
            return tuple(torch.from_numpy(x) for x in out)
        lists = [x.tolist() for x in out[:3]]
        if return_offsets:
            lists.append([[tuple(span) for span in row] for row in out[3].tolist()])
        return tuple(lists)

    def _pieces_batch(self, texts: list[str], with_offsets: bool) -> tuple[list[list[int]], list[Offsets] | None]:
        """Piece ids of each text (and their spans when `with_offsets`, None when unsupported); a subclass
        with a batched backend overrides this loop."""
        pieces = [self._pieces(t) for t in texts]
        rows = [ids for ids, _ in pieces]
        if not with_offsets or any(off is None for _, off in pieces):
            return rows, None
        return rows, [off for _, off in pieces]

    # ---- helpers ------------------------------------------------------------------------------
    def _n_special(self, pair: bool) -> int:
        n_start = int(self._token_start_id is not None)
        n_end = int(self._token_end_id is not None)
        return n_start + n_end * (2 if pair else 1)

    def _check_maxlen(self, maxlen, pair: bool) -> int | None:
        if maxlen is None:
            return None
        need = max(self._n_special(pair), 1)
        if isinstance(maxlen, bool) or not isinstance(maxlen, numbers.Integral):
            raise TypeError(f"maxlen must be an int or None, got {type(maxlen).__name__}: {maxlen!r}")
        if maxlen < need:
            raise ValueError(f"maxlen must be >= {need} to hold the special tokens of a "
                             f"{'pair' if pair else 'single text'}, got {maxlen}")
        return int(maxlen)

    def _want_offsets(self, return_offsets: bool | None) -> bool:
        if return_offsets is None:
            return self._return_offsets
        if not isinstance(return_offsets, bool):
            raise TypeError(f"return_offsets must be a bool or None, got {return_offsets!r} "
                            f"({type(return_offsets).__name__})")
        return return_offsets

    def _assemble(self, a, b, maxlen: int | None, with_offsets: bool):
        a_ids, a_off = a
        b_ids, b_off = b if b is not None else ([], [])
        if maxlen is None:
            k1, k2 = len(a_ids), len(b_ids)
        elif b is None:
            k1, k2 = min(len(a_ids), maxlen - self._n_special(False)), 0
        else:
            k1, k2 = longest_first(len(a_ids), len(b_ids), maxlen - self._n_special(True))
        start = [] if self._token_start_id is None else [self._token_start_id]
        end = [] if self._token_end_id is None else [self._token_end_id]
        ids = start + a_ids[:k1] + end
        segs = [0] * len(ids)
        if b is not None:
            ids += b_ids[:k2] + end
            segs += [1] * (k2 + len(end))
        if not with_offsets:
            return ids, segs
        if a_off is None or (b is not None and b_off is None):
            raise ValueError(f"return_offsets=True is not supported by {type(self).__name__}")
        zero = [(0, 0)]
        offsets = zero * len(start) + list(a_off[:k1]) + zero * len(end)
        if b is not None:
            offsets += list(b_off[:k2]) + zero * len(end)
        return ids, segs, offsets


def _check_texts(texts, name: str) -> list[str]:
    """`texts` as a list of valid str, each checked as `_check_text` does, but in two C passes over the
    joined batch (join refuses a non-str item, UTF-8 encoding a surrogate); only a failing batch is
    walked item by item to name the bad text and position."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of str, got {type(texts).__name__}: {repr(texts)[:60]}")
    if len(texts) == 0:
        raise ValueError(f"{name} must hold at least one text, got an empty {type(texts).__name__}")
    texts = list(texts)
    try:
        joined = "".join(texts)
        if not joined.isascii():
            joined.encode("utf-8")
    except (TypeError, UnicodeEncodeError):
        for i, t in enumerate(texts):
            _check_text(t, f"{name}[{i}]")
        raise
    return texts


def _as_id_list(ids, vocab_size: int | None = None) -> list[int]:
    """`ids` (a list, 1-D tensor or array of ints) as a list of ints, each checked by position: a float id
    is refused rather than truncated, and with `vocab_size` every id must lie in [0, vocab_size)."""
    if isinstance(ids, torch.Tensor) or hasattr(ids, "ndim"):  # tensors and numpy arrays
        if ids.ndim != 1:
            raise ValueError(f"ids must be a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}: {ids!r:.60}")
    out = []
    for k, i in enumerate(ids):
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"ids[{k}] must be an int token id, got {i!r} ({type(i).__name__})")
        if vocab_size is not None and not 0 <= i < vocab_size:
            raise ValueError(f"ids[{k}] must be a token id in [0, {vocab_size}), got {i}")
        out.append(int(i))
    return out


def _check_id(i, vocab_size: int) -> int:
    """One token id (numpy ints accepted) in [0, vocab_size), for `id_to_token`."""
    if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < vocab_size:
        raise ValueError(f"token id must be an int in [0, {vocab_size}), got {i!r}")
    return int(i)


def _as_token_list(tokens) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"tokens must be a list of token strings, got {type(tokens).__name__}: {tokens!r:.60}")
    for k, t in enumerate(tokens):
        if not isinstance(t, str):
            raise TypeError(f"tokens[{k}] must be a token string, got {type(t).__name__}: {t!r:.60}")
    return list(tokens)
