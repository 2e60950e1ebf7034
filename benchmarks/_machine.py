"""The header every benchmark prints first: which CPU, how many cores torch uses, its SIMD level, native bf16.

A ratio measured on an AVX2-only CPU (bf16 emulated, ~100x slower than fp32) means something else than one
on an AVX-512/AMX CPU; the header makes every table say which it was. Usage in a script run from
benchmarks/: `from _machine import print_header; print_header()`.
"""
from __future__ import annotations

import os
import platform

import torch

from kexue._cpu import cpu_capability, cpu_name, has_native_bf16

__all__ = ["machine_header", "print_header"]


def machine_header() -> str:
    """One line: CPU model, cores used / present, torch SIMD level, native bf16 yes/no, torch version."""
    cores = os.cpu_count() or 0
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may run on (taskset, cgroups)
    except (AttributeError, OSError):
        pass
    return (f"machine: {cpu_name()} ({platform.machine()}), {torch.get_num_threads()} torch threads on "
            f"{cores} cores, torch SIMD level {cpu_capability()}, native bf16 "
            f"{'yes' if has_native_bf16() else 'no (bf16 emulated: expect it far slower than fp32)'}, "
            f"torch {torch.__version__}")


def print_header() -> None:
    print(machine_header(), flush=True)
