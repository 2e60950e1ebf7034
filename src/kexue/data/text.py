"""bert4keras's text snippets (https://kexue.fm/archives/7630): truncate sequences, split text at punctuation."""
from __future__ import annotations

import numbers
from typing import MutableSequence, Sequence

from kexue._validate import check_int

__all__ = ["truncate_sequences", "text_segmentate", "split_passage"]


def truncate_sequences(maxlen: int, indices: int | Sequence[int], *sequences: MutableSequence | None) -> list:
    """Cut the sequences in place until their total length is <= maxlen, always popping from the longest one
    (the earliest on ties) at position `indices` (one int, or one per sequence; -1 = the end, -2 keeps a
    trailing [SEP]). None sequences are ignored. Returns the non-None sequences."""
    maxlen = check_int("maxlen", maxlen, low=0)
    seqs = [s for s in sequences if s is not None]
    for k, s in enumerate(seqs):
        if not hasattr(s, "pop"):
            raise TypeError(f"sequences must be mutable lists (truncated in place), got {type(s).__name__} at {k}")
    if isinstance(indices, numbers.Integral) and not isinstance(indices, bool):
        indices = [int(indices)] * len(seqs)
    elif not isinstance(indices, Sequence) or isinstance(indices, str):
        raise TypeError(f"indices must be an int or one int per sequence, got {indices!r}")
    elif len(indices) != len(sequences):
        raise ValueError(f"indices must be an int or one index per sequence ({len(sequences)}), got {list(indices)}")
    else:
        indices = [check_int(f"indices[{k}]", i) for k, (i, s) in enumerate(zip(indices, sequences))
                   if s is not None]
    lengths = [len(s) for s in seqs]
    cuts = [0] * len(seqs)
    for _ in range(max(0, sum(lengths) - maxlen)):
        k = max(range(len(seqs)), key=lambda j: (lengths[j], -j))  # longest, earliest on ties
        lengths[k] -= 1
        cuts[k] += 1
    for k, (s, i, n) in enumerate(zip(seqs, indices, cuts)):
        final = len(s) - n  # popping at i needs len > i (i >= 0) or len >= -i (i < 0) before every pop
        if n and (final < i if i >= 0 else final < -i - 1):
            raise ValueError(f"cannot cut sequence {k} from {len(s)} to {final} items by popping at index {i} "
                             f"(maxlen={maxlen} is too small for that index)")
    for s, i, n in zip(seqs, indices, cuts):
        for _ in range(n):
            s.pop(i)
    return seqs


def text_segmentate(text: str, maxlen: int, seps: str = "\n", strips: str | None = None) -> list[str]:
    """Split `text` into pieces of at most `maxlen` characters, cutting at `seps[0]` first and at the finer
    separators `seps[1:]` only inside pieces still too long; separators stay at the end of their piece and
    `strips` characters are stripped from both ends of every piece. A piece with no separator left may
    exceed maxlen."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    maxlen = check_int("maxlen", maxlen, low=1)
    if not isinstance(seps, (str, Sequence)):
        raise TypeError(f"seps must be a str of separator characters (coarse to fine), got {seps!r}")
    for k, sep in enumerate(seps):
        if not isinstance(sep, str) or not sep:
            raise ValueError(f"seps[{k}] must be a non-empty separator string, got {sep!r}")
    if strips is not None and not isinstance(strips, str):
        raise TypeError(f"strips must be a str or None, got {type(strips).__name__}: {strips!r}")
    text = text.strip().strip(strips)
    if not seps or len(text) <= maxlen:
        return [text]
    pieces = text.split(seps[0])
    current, out = "", []
    for i, piece in enumerate(pieces):
        if current and piece and len(current) + len(piece) > maxlen - 1:
            out.extend(text_segmentate(current, maxlen, seps[1:], strips))
            current = ""
        current += piece if i + 1 == len(pieces) else piece + seps[0]
    if current:
        out.extend(text_segmentate(current, maxlen, seps[1:], strips))
    return out


def split_passage(text: str, max_len: int, seps: str = "\n。！？!?；;，, ",
                  strips: str = "；;，, ") -> list[str]:
    """A passage as non-empty chunks of at most `max_len` characters for seq2seq training
    (https://kexue.fm/archives/7630): `text_segmentate` cuts at `seps` (coarse to fine) and strips `strips`
    from chunk ends; a run with no separator still longer than max_len is cut every max_len characters.
    Joined, the chunks give the text back without the stripped characters at chunk ends."""
    max_len = check_int("max_len", max_len, low=1)
    if not isinstance(seps, str) or not isinstance(strips, str):
        raise TypeError(f"seps and strips must be str of separator characters, got {seps!r} and {strips!r}")
    out = []
    for piece in text_segmentate(text, max_len, seps, strips):
        out.extend(piece[i:i + max_len] for i in range(0, len(piece), max_len))
    return [c for c in out if c]
