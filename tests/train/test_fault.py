"""Acceptance fault test (issue 8): a training run SIGKILLed at random moments -- inside steps, inside checkpoint
writes, inside loads -- with both callback orders, EMA, trainer- and optimizer-level accumulation, Lookahead and
a schedule, always resumes to weights, EMA and optimizer state bitwise equal to the uninterrupted run, and leaves
no temporary file behind. The supervisor (fault_script.py) forks one child per attempt."""
import json
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "fault_script.py")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(tmp_path, kills, seed):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, SCRIPT, "--dir", str(tmp_path), "--kills", str(kills), "--seed", str(seed)],
                          env=env, capture_output=True, text=True, timeout=580)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, (report, proc.stderr[-3000:])
    assert report["kills"] >= kills and report["kills_inside_save"] >= 1 and report["kills_leaving_temp_files"] >= 1
    assert report["mismatches"] == [] and report["temp_files_left"] == []
    return report


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [0])
def test_sigkill_twenty_times_resumes_bitwise(tmp_path, seed):
    """The acceptance run itself, in the default suite (about 30 s of one core)."""
    _run(tmp_path, kills=20, seed=seed)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_twenty_times_more_seeds(tmp_path, seed):
    _run(tmp_path, kills=20, seed=seed)
