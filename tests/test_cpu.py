"""kexue._cpu (issue 9): CPU capability detection, the once-per-process SlowBF16Warning, the benchmark header.

Every test fixes `has_native_bf16` by monkeypatching, so the suite means the same on an AVX2-only CPU and on an
AVX-512_BF16/AMX one; no timed assertion (the measured GFLOP/s only have to be positive numbers)."""
import importlib.util
import os
import re
import warnings

import pytest
import torch

import kexue
from kexue import _cpu
from kexue._cpu import SlowBF16Warning, has_native_bf16, warn_if_bf16_weights_on_cpu, warn_if_slow_bf16

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture
def no_native_bf16(monkeypatch):
    monkeypatch.setattr(_cpu, "has_native_bf16", lambda: False)
    monkeypatch.setattr(_cpu, "_warned", False)


@pytest.fixture
def native_bf16(monkeypatch):
    monkeypatch.setattr(_cpu, "has_native_bf16", lambda: True)
    monkeypatch.setattr(_cpu, "_warned", False)


def _slow_warnings(record):
    return [w for w in record if issubclass(w.category, SlowBF16Warning)]


def test_warns_once_per_process_with_the_measured_speeds(no_native_bf16):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert warn_if_slow_bf16("Trainer(precision='bf16')") is True
        assert warn_if_slow_bf16("Trainer(precision='bf16')") is False
        assert warn_if_slow_bf16("generate (bf16 weights)", "cpu") is False  # once for every call site
    (w,) = _slow_warnings(record)
    msg = str(w.message)
    m = re.search(r"runs at ([\d.]+) GFLOP/s vs ([\d.]+) fp32", msg)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, msg
    assert msg.startswith("Trainer(precision='bf16'): bf16 matmul") and "AVX512_BF16/AMX absent" in msg
    assert "use precision='fp32'" in msg and _cpu.cpu_capability() in msg
    assert kexue.SlowBF16Warning is SlowBF16Warning and issubclass(SlowBF16Warning, UserWarning)


def test_never_warns_on_cuda_or_with_native_bf16(no_native_bf16, monkeypatch):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert warn_if_slow_bf16("x", torch.device("cuda", 0)) is False
        assert warn_if_slow_bf16("x", "cuda") is False
        monkeypatch.setattr(_cpu, "has_native_bf16", lambda: True)
        assert warn_if_slow_bf16("x") is False
        assert warn_if_slow_bf16("x", "cpu") is False
        assert warn_if_bf16_weights_on_cpu(torch.nn.Linear(2, 2).bfloat16(), "x") is False
    assert _slow_warnings(record) == []


def test_bf16_weights_warn_and_fp32_weights_do_not(no_native_bf16):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert warn_if_bf16_weights_on_cpu(torch.nn.Linear(2, 2), "x") is False
        assert warn_if_bf16_weights_on_cpu(torch.nn.Linear(2, 2).bfloat16(), "model") is True
    (w,) = _slow_warnings(record)
    assert str(w.message).startswith("model: bf16 matmul")


def _trainer(precision, dtype=torch.float32):
    from kexue.train import Trainer
    model = torch.nn.Linear(3, 1).to(dtype)
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.functional.mse_loss,
                   precision=precision, device="cpu", distributed=False)


@pytest.mark.parametrize("precision, dtype, warns", [
    ("bf16", torch.float32, True), ("fp32", torch.float32, False), ("fp32", torch.bfloat16, True),
    ("fp16", torch.float32, False)])
def test_trainer_warns_for_bf16_on_cpu_only(no_native_bf16, precision, dtype, warns):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _trainer(precision, dtype)
        _trainer(precision, dtype)  # a second Trainer: no second warning
    assert len(_slow_warnings(record)) == int(warns)


def test_trainer_bf16_is_silent_with_native_bf16(native_bf16):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _trainer("bf16")
    assert _slow_warnings(record) == []


def test_generate_with_bf16_weights_warns_once(no_native_bf16):
    from kexue.generation import generate
    cfg = dict(model_type="gpt2", vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    model = kexue.build_transformer_model(config=cfg).eval().to(torch.bfloat16)
    prompt = torch.tensor([[1, 2, 3]])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        generate(model, prompt, max_new_tokens=2)
        generate(model, prompt, max_new_tokens=2)
    assert len(_slow_warnings(record)) == 1


def test_native_bf16_agrees_with_the_cpu_flags():
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("needs Linux /proc/cpuinfo")
    with open("/proc/cpuinfo") as f:
        flags = next((line.split(":", 1)[1].split() for line in f if line.startswith(("flags", "Features"))), None)
    if flags is None:
        pytest.skip("no flags line in /proc/cpuinfo")
    assert has_native_bf16() == any(f in flags for f in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))
    assert _cpu.cpu_capability() == torch.backends.cpu.get_cpu_capability()


def test_benchmark_header_prints_the_simd_level(capsys):
    spec = importlib.util.spec_from_file_location("_machine", os.path.join(BENCHMARKS, "_machine.py"))
    machine = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(machine)
    machine.print_header()
    out = capsys.readouterr().out
    assert f"torch SIMD level {torch.backends.cpu.get_cpu_capability()}" in out
    assert ("native bf16 yes" in out) == has_native_bf16()
    assert f"{torch.get_num_threads()} torch threads" in out and _cpu.cpu_name() in out



@pytest.mark.parametrize("precision, dtype", [("bf16", torch.float32), ("fp32", torch.bfloat16)])
def test_the_warning_points_at_the_users_line(no_native_bf16, precision, dtype):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _trainer(precision, dtype)  # the Trainer is built in this file's _trainer: the warning names it
    (w,) = _slow_warnings(record)
    assert w.filename == __file__, w.filename
