"""DDP under torchrun: 2 gloo processes with global batch B == 1 process with batch B."""
import os
import subprocess
import sys

import pytest
import torch

from kexue.train.distributed import setup_distributed

from . import train_script

SCRIPT = os.path.join(os.path.dirname(__file__), "train_script.py")


def test_single_process_without_torchrun_env_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup_distributed("auto")
    assert not info.enabled and info.is_main
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        setup_distributed(True)


def test_torchrun_two_processes_match_one_process(tmp_path):
    args = ["--dropout", "0", "--augment", "0", "--batch-size", "8", "--accum", "2", "--epochs", "2"]
    one = tmp_path / "one.pt"
    train_script.main(["--out", str(one)] + args)
    two, ck = tmp_path / "two.pt", tmp_path / "ck.pt"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           SCRIPT, "--out", str(two), "--ckpt", str(ck)] + args,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = torch.load(one), torch.load(two)
    assert a["global_step"] == b["global_step"] == 6
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], atol=1e-6, rtol=0)
    # the logged (all-reduced) losses are the global-batch losses of the single process
    assert b["history"]["loss"] == pytest.approx(a["history"]["loss"], abs=1e-9)
    state = torch.load(ck)                                  # written once, by rank 0, with both ranks' RNG
    assert len(state["per_rank"]) == 2 and state["global_step"] == 4
