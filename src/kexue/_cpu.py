"""What this CPU can do fast: torch's SIMD level, native bf16, and a once-per-process warning when bf16 is slow.

A CPU without bf16 instructions (AVX512_BF16 or AMX on x86, the BF16 extension on ARM) emulates every bf16
matmul: on an AVX2-only machine 0.3 GFLOP/s against 74 in fp32, so a bf16 Trainer or bf16 weights run a
hundred times slower than fp32. `warn_if_slow_bf16(where)` says so once, with numbers measured on the spot.
"""
from __future__ import annotations

import functools
import sys
import time
import warnings

import torch
from torch import nn

__all__ = ["SlowBF16Warning", "cpu_capability", "cpu_name", "has_native_bf16", "matmul_gflops",
           "warn_if_slow_bf16", "warn_if_bf16_weights_on_cpu"]

# the feature names of torch.cpu.get_capabilities() / /proc/cpuinfo that mean native bf16 arithmetic
_BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")
_warned = False  # one warning per process, whatever the call site


class SlowBF16Warning(UserWarning):
    """bf16 was asked for on a CPU that has no bf16 instructions: it runs far slower than fp32."""


def cpu_capability() -> str:
    """torch's SIMD level for CPU kernels ("AVX512", "AVX2", "DEFAULT", ...), or "unknown"."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # very old torch
        return "unknown"


@functools.lru_cache(maxsize=None)
def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo, torch's cpuinfo, else `platform.processor()`)."""
    name = _proc_cpuinfo_field("model name") or _proc_cpuinfo_field("Model")
    if not name:
        caps = _torch_capabilities()
        name = str(caps.get("cpu_name", "")) if caps else ""
    if not name:
        import platform
        name = platform.processor() or platform.machine()
    return name or "unknown"


@functools.lru_cache(maxsize=None)
def has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions torch's kernels use (AVX512_BF16, AMX-BF16, ARM BF16).

    Sources in order: torch.cpu.get_capabilities() (torch's cpuinfo, every OS), the flags of /proc/cpuinfo
    (Linux), torch's private probes (older torch). When none answers, False: bf16 is then treated as slow."""
    caps = _torch_capabilities()
    if caps is not None:
        return any(bool(caps.get(f)) for f in _BF16_FEATURES)
    flags = _proc_cpuinfo_field("flags") or _proc_cpuinfo_field("Features")
    if flags is not None:
        return any(f in flags.split() for f in _BF16_FEATURES)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            pass
    return False


def matmul_gflops(dtype: torch.dtype, n: int = 128, budget_s: float = 0.02) -> float:
    """Achieved GFLOP/s of an [n, n] @ [n, n] CPU matmul in `dtype`: the best of repeats within ~`budget_s`
    (at least two, the first a warm-up)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up (kernel selection, first-touch)
    best, spent = float("inf"), 0.0
    while spent < budget_s or best == float("inf"):
        t0 = time.perf_counter()
        a @ b
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2 * n ** 3 / max(best, 1e-9) / 1e9


def warn_if_slow_bf16(where: str, device: torch.device | str | None = None, *, _stacklevel: int = 2) -> bool:
    """Warn once per process (a `SlowBF16Warning`) that bf16 asked for at `where` runs slowly on this CPU,
    with the bf16 and fp32 matmul speeds measured now (a few ms). Nothing on a non-CPU `device` or when
    the CPU has native bf16. Returns True when it warned."""
    global _warned
    if _warned or (device is not None and torch.device(device).type != "cpu") or has_native_bf16():
        return False
    _warned = True
    bf16, fp32 = matmul_gflops(torch.bfloat16), matmul_gflops(torch.float32)
    warnings.warn(f"{where}: bf16 matmul on this CPU runs at {bf16:.1f} GFLOP/s vs {fp32:.1f} fp32 (no native "
                  f"bf16: AVX512_BF16/AMX absent, torch SIMD level {cpu_capability()}); use precision='fp32' "
                  "(float32 weights) on this machine", SlowBF16Warning, stacklevel=_stacklevel + 1)
    return True


def warn_if_bf16_weights_on_cpu(model: nn.Module, where: str) -> bool:
    """`warn_if_slow_bf16(where)` when `model` holds bf16 parameters on the CPU (a one-line setup check)."""
    if _warned or not isinstance(model, nn.Module) or has_native_bf16():
        return False
    slow = any(p.dtype == torch.bfloat16 and p.device.type == "cpu" for p in model.parameters())
    return warn_if_slow_bf16(where, _stacklevel=3) if slow else False


def _torch_capabilities():
    get = getattr(torch.cpu, "get_capabilities", None)
    try:
        return get() if get is not None else None
    except RuntimeError:
        return None


@functools.lru_cache(maxsize=None)
def _proc_cpuinfo_lines() -> tuple[str, ...]:
    if not sys.platform.startswith("linux"):
        return ()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return tuple(f.read().splitlines())
    except OSError:
        return ()


def _proc_cpuinfo_field(key: str) -> str | None:
    """The value of the first `key : value` line of /proc/cpuinfo (None off Linux or when absent)."""
    for line in _proc_cpuinfo_lines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return None
