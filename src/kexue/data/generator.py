"""bert4keras-style `DataGenerator` (https://kexue.fm/archives/6736): shuffled, dynamically padded batches.

Works on sized data (a full permutation per epoch) and on lazy iterables (bert4keras's shuffle buffer). The order
of an epoch is a function of (seed, epoch) only, so a Trainer resumed mid-epoch replays the same batches.
"""
from __future__ import annotations

import inspect
import math
import random
from typing import Any, Callable, Iterable, Iterator

from .._validate import check_bool, check_int
from .padding import collate_padded

__all__ = ["DataGenerator"]


class DataGenerator:
    """Batches of `collate([encode(x) for x in a batch])`; `encode` may return None to drop a sample.

    The default `collate` is `collate_padded`: `encode` may return nested samples such as `((ids, segs), tags)`
    or dicts, and each field is padded on its own; for other pad values pass
    `collate=functools.partial(collate_padded, pad_values={1: -100})`. The batches then go to `Trainer.fit`
    as they are (a tuple batch: inputs = all but the last item, targets = the last).

    shuffle: True / False, or None (default): shuffled when training (`Trainer.fit`, `forfit()`, like bert4keras),
    in order when simply iterated (evaluation). Each epoch's permutation is drawn from (seed, epoch): `seed=None`
    takes the Trainer's seed under `fit` and a random one otherwise. Data without `len()` is shuffled through a
    buffer of `buffer_size` samples. `len()` counts batches before `encode` drops any (an upper bound).
    A bert4keras subclass that overrides `__iter__(self, random=False)` and calls `self.sample(random)` works
    as is: `fit` and `forfit` pass it `random=<shuffle>`.
    """

    def __init__(self, data: Iterable, batch_size: int = 32, *, encode: Callable[[Any], Any] | None = None,
                 collate: Callable[[list], Any] = collate_padded, shuffle: bool | None = None,
                 buffer_size: int | None = None, seed: int | None = None, drop_last: bool = False):
        check_int("batch_size", batch_size, low=1)
        if buffer_size is not None:
            check_int("buffer_size", buffer_size, low=1)
        if shuffle is not None:
            check_bool("shuffle", shuffle)
        if seed is not None:
            check_int("seed", seed)
        check_bool("drop_last", drop_last)
        if not hasattr(data, "__iter__"):
            raise TypeError(f"data must be iterable, got {type(data).__name__}")
        if encode is not None and not callable(encode):
            raise TypeError(f"encode must be callable or None, got {type(encode).__name__}")
        if not callable(collate):
            raise TypeError(f"collate must be callable, got {type(collate).__name__}")
        self.data, self.batch_size, self.encode, self.collate = data, batch_size, encode, collate
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.buffer_size = buffer_size or batch_size * 1000
        self._own_seed = random.SystemRandom().getrandbits(63) if seed is None else seed
        self._epoch = 0
        self._next: tuple[bool | None, int | None] = (None, None)    # (shuffle, seed) set by iter_epoch

    def __len__(self) -> int:
        """Batches per epoch before any sample dropped by `encode` (an upper bound; the Trainer stops early)."""
        if not hasattr(self.data, "__len__"):
            raise TypeError(f"len() needs sized data, got {type(self.data).__name__}")
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration yields (each iteration then moves to the next epoch)."""
        self._epoch = check_int("epoch", epoch, low=0)

    def _takes_random(self) -> bool:
        """True for a bert4keras-style subclass whose `__iter__` takes a `random` argument."""
        return len(inspect.signature(self.__iter__).parameters) > 0

    def iter_epoch(self, epoch: int, shuffle: bool | None = None, seed: int | None = None) -> Iterator[Any]:
        """Batches of one training epoch (the Trainer protocol): order from (self.seed or `seed`, epoch);
        `shuffle=None` follows the generator's own setting, and shuffles when that is unset."""
        self.set_epoch(epoch)
        shuffle = shuffle if shuffle is not None else (self.shuffle if self.shuffle is not None else True)
        self._next = (shuffle, seed)
        return iter(self.__iter__(shuffle)) if self._takes_random() else iter(self)

    def sample(self, shuffle: bool | None = None) -> Iterator[tuple[bool, Any]]:
        """Yield (is_last, sample) over one epoch, shuffled when asked (bert4keras `sample`)."""
        planned, trainer_seed = self._next
        self._next = (None, None)
        if shuffle is None:
            shuffle = planned if planned is not None else bool(self.shuffle)
        seed = self.seed if self.seed is not None else trainer_seed if trainer_seed is not None else self._own_seed
        rng, self._epoch = random.Random(f"{seed}:{self._epoch}"), self._epoch + 1
        return self._sample(shuffle, rng)

    def _sample(self, shuffle: bool, rng: random.Random) -> Iterator[tuple[bool, Any]]:
        if not shuffle:
            data = iter(self.data)
        elif hasattr(self.data, "__len__") and hasattr(self.data, "__getitem__"):
            order = list(range(len(self.data)))
            rng.shuffle(order)
            data = (self.data[i] for i in order)
        else:
            data = self._buffer_shuffle(iter(self.data), rng)
        previous, has_previous = None, False
        for item in data:
            if has_previous:
                yield False, previous
            previous, has_previous = item, True
        if has_previous:
            yield True, previous

    def _buffer_shuffle(self, data: Iterator, rng: random.Random) -> Iterator:
        buffer = []
        for item in data:
            buffer.append(item)
            if len(buffer) >= self.buffer_size:
                yield buffer.pop(rng.randrange(len(buffer)))
        while buffer:
            yield buffer.pop(rng.randrange(len(buffer)))

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

    def forfit(self, shuffle: bool | None = None) -> Iterator[Any]:
        """Endless batches, epoch after epoch, each epoch reshuffled (unless shuffle=False, or the generator was
        built with shuffle=False)."""
        if shuffle is not None:
            check_bool("shuffle", shuffle)
        shuffle = shuffle if shuffle is not None else (self.shuffle if self.shuffle is not None else True)
        while True:
            if self._takes_random():
                yield from self.__iter__(shuffle)
            else:
                self._next = (shuffle, None)
                yield from self
