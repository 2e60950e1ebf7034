"""Deterministic, resumable data loading for the Trainer (https://kexue.fm/archives/6794).

The order of an epoch depends only on (seed, epoch), as in DistributedSampler, so a run resumed
from a mid-epoch checkpoint sees exactly the remaining batches of the interrupted epoch.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Iterator

import torch
from torch.utils.data import (BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler,
                              SequentialSampler)

__all__ = ["ResumableSampler", "ShardSampler", "build_loader", "prepare_user_loader"]


class ResumableSampler(DistributedSampler):
    """DistributedSampler (also for one process) that can start at a position inside the epoch.

    With R ranks and per-rank batch b, step s of rank r reads perm[r::R][s*b:(s+1)*b], so the union
    over ranks is perm[s*R*b:(s+1)*R*b]: the same global batch as one process with batch R*b.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
        self.start_index = 0

    def set_start(self, index: int) -> None:
        """Skip the first `index` samples of this rank's share of the epoch."""
        if not 0 <= index <= self.num_samples:
            raise ValueError(f"start index must be in [0, {self.num_samples}], got {index}")
        self.start_index = index

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start_index, None)

    def __len__(self) -> int:
        return self.num_samples - self.start_index


class ShardSampler(Sampler[int]):
    """Sequential indices rank::world_size, without padding (evaluation counts every sample once)."""

    def __init__(self, n: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = range(rank, n, num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loader(dataset: Dataset, batch_size: int, *, world_size: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0, epoch: int = 0, start_batch: int = 0,
                 train: bool = True, collate_fn: Callable | None = None, drop_last: bool = False,
                 num_workers: int = 0) -> DataLoader:
    """DataLoader over this rank's share; `batch_size` is the GLOBAL batch (split over ranks)."""
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size % world_size:
        raise ValueError(f"batch_size={batch_size} (global) must be divisible by world_size={world_size}")
    local = batch_size // world_size
    if train:
        sampler = ResumableSampler(dataset, world_size, rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        sampler.set_epoch(epoch)
        sampler.set_start(min(start_batch * local, sampler.num_samples))
    else:
        sampler = ShardSampler(len(dataset), world_size, rank)
    # A private generator: creating the iterator must not consume the global torch RNG (exact resume).
    gen = torch.Generator().manual_seed(seed + epoch)
    return DataLoader(dataset, batch_size=local, sampler=sampler, collate_fn=collate_fn,
                      drop_last=drop_last, num_workers=num_workers, generator=gen)


def num_batches(dataset: Dataset, batch_size: int, world_size: int = 1, drop_last: bool = False) -> int:
    """Per-rank micro-batches in one epoch of `build_loader(train=True)`."""
    n, local = len(dataset), batch_size // world_size
    per_rank = n // world_size if drop_last and n % world_size else math.ceil(n / world_size)
    return per_rank // local if drop_last else math.ceil(per_rank / local)


def prepare_user_loader(data, shuffle: bool | None, seed: int, epoch: int) -> None:
    """Before an epoch of a user iterable: refuse a shuffle request it cannot honour (shuffle=True on data read in
    order, shuffle=False on a shuffling DataLoader); seed a RandomSampler without generator by (seed, epoch), so
    its order is reproducible and a resume exact; call its sampler's set_epoch."""
    sampler = getattr(data, "sampler", None) if isinstance(data, DataLoader) else None
    own_batches = getattr(data, "batch_sampler", None)
    if sampler is not None and own_batches is not None and type(own_batches) is not BatchSampler:
        if hasattr(own_batches, "set_epoch"):       # the user's own batch sampler: its order is their choice
            own_batches.set_epoch(epoch)
        return
    shuffles = isinstance(sampler, RandomSampler) or (isinstance(sampler, DistributedSampler) and sampler.shuffle)
    in_order = isinstance(sampler, SequentialSampler) or (isinstance(sampler, DistributedSampler)
                                                          and not sampler.shuffle)
    if shuffle is True and (sampler is None or in_order or not isinstance(data.dataset, Dataset)
                            or type(sampler).__name__ == "_InfiniteConstantSampler"):
        why = (f"the DataLoader reads in order ({type(sampler).__name__})" if sampler is not None
               else f"train_data is a {type(data).__name__} the Trainer cannot shuffle")
        raise ValueError(f"shuffle=True but {why}: pass the map-style Dataset itself, a DataGenerator, or "
                         "DataLoader(..., shuffle=True); or leave shuffle=None to take the data as it comes")
    if shuffle is False and shuffles:
        raise ValueError(f"shuffle=False but the DataLoader shuffles ({type(sampler).__name__}): build it "
                         "with shuffle=False or leave shuffle=None")
    if isinstance(sampler, RandomSampler) and getattr(sampler, "_kexue_seeded", sampler.generator is None):
        sampler.generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
        sampler._kexue_seeded = True                 # order = f(seed, epoch): reproducible, exact resume
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
