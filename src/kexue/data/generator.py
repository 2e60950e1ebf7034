"""bert4keras-style `DataGenerator` (https://kexue.fm/archives/6736): shuffled, dynamically padded batches.

Works on sized data (a full permutation per epoch) and on lazy iterables (bert4keras's shuffle buffer).
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterable, Iterator

from .padding import collate_padded

__all__ = ["DataGenerator"]


class DataGenerator:
    """Batches of `collate([encode(x) for x in a batch])`; `encode` may return None to drop a sample.

    `shuffle=True` draws a fresh permutation each epoch from `seed` (reproducible run to run); data
    without `len()` is shuffled through a buffer of `buffer_size` samples. `forfit()` repeats forever.
    """

    def __init__(self, data: Iterable, batch_size: int = 32, *, encode: Callable[[Any], Any] | None = None,
                 collate: Callable[[list], Any] = collate_padded, shuffle: bool = False,
                 buffer_size: int | None = None, seed: int | None = None, drop_last: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if buffer_size is not None and (not isinstance(buffer_size, int) or buffer_size < 1):
            raise ValueError(f"buffer_size must be an int >= 1 or None, got {buffer_size!r}")
        if not hasattr(data, "__iter__"):
            raise TypeError(f"data must be iterable, got {type(data).__name__}")
        self.data, self.batch_size, self.encode, self.collate = data, batch_size, encode, collate
        self.shuffle, self.drop_last = shuffle, drop_last
        self.buffer_size = buffer_size or batch_size * 1000
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        """Batches per epoch (before any sample dropped by `encode`)."""
        if not hasattr(self.data, "__len__"):
            raise TypeError(f"len() needs sized data, got {type(self.data).__name__}")
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def sample(self, shuffle: bool | None = None) -> Iterator[tuple[bool, Any]]:
        """Yield (is_last, sample) over one epoch, shuffled when asked (bert4keras `sample`)."""
        shuffle = self.shuffle if shuffle is None else shuffle
        if not shuffle:
            data = iter(self.data)
        elif hasattr(self.data, "__len__") and hasattr(self.data, "__getitem__"):
            order = list(range(len(self.data)))
            self._rng.shuffle(order)
            data = (self.data[i] for i in order)
        else:
            data = self._buffer_shuffle(iter(self.data))
        previous, has_previous = None, False
        for item in data:
            if has_previous:
                yield False, previous
            previous, has_previous = item, True
        if has_previous:
            yield True, previous

    def _buffer_shuffle(self, data: Iterator) -> Iterator:
        buffer = []
        for item in data:
            buffer.append(item)
            if len(buffer) >= self.buffer_size:
                yield buffer.pop(self._rng.randrange(len(buffer)))
        while buffer:
            yield buffer.pop(self._rng.randrange(len(buffer)))

    def __iter__(self) -> Iterator[Any]:
        batch = []
        for is_last, item in self.sample():
            if self.encode is not None:
                item = self.encode(item)
            if item is not None:
                batch.append(item)
            if len(batch) == self.batch_size or (is_last and batch and not self.drop_last):
                yield self.collate(batch)
                batch = []

    def forfit(self) -> Iterator[Any]:
        """Endless batches, epoch after epoch (each epoch reshuffled)."""
        while True:
            yield from self
