"""Distributed setup for the Trainer: detect `torchrun`, init the process group, reduce logs.

A script that runs on one process runs unchanged under `torchrun --nproc_per_node=N`: the
environment variables WORLD_SIZE / RANK / LOCAL_RANK switch the Trainer to DDP (gloo on CPU,
nccl on CUDA).  (https://kexue.fm/archives/6794: data parallelism is batch size bought with hardware)
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "setup_distributed", "is_main_process", "all_reduce_sum", "gather_objects"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank and its device."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def setup_distributed(mode: bool | str = "auto", backend: str | None = None) -> DistInfo:
    """Init the default process group when launched by torchrun (WORLD_SIZE > 1).

    mode: "auto" (use the environment), False (always single process), True (require WORLD_SIZE > 1).
    backend: default "nccl" when CUDA is available, "gloo" otherwise.
    """
    if mode not in ("auto", True, False):
        raise ValueError(f"distributed must be 'auto', True or False, got {mode!r}")
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    else:
        world, rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if mode is True and world <= 1:
        raise ValueError(f"distributed=True needs WORLD_SIZE > 1 (launch with torchrun), got WORLD_SIZE={world}")
    if mode is False or world <= 1:
        return DistInfo()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def is_main_process() -> bool:
    """True on rank 0 (and when not distributed)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op on one process); returns it."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_objects(obj) -> list:
    """All ranks' `obj` in rank order ([obj] on one process)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
