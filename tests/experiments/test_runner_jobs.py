"""`run_experiments(jobs=N)`: worker processes give the same numbers as a serial run, and an experiment that
times itself (`exclusive=True`) is never run beside another."""
from __future__ import annotations

import dataclasses

import pytest

from kexue.experiments import runner
from kexue.experiments.registry import discover


def _numbers(results):
    return {e["name"]: ({k: v["per_seed"] for k, v in e["metrics"].items()}, e["verdict"], e["error"])
            for e in results["experiments"]}


def test_workers_give_the_numbers_of_a_serial_run(tmp_path):
    names = ["gillespie", "nce"]           # two cheap registered experiments
    serial = runner.run_experiments(names, "quick", 1, tmp_path / "serial", progress=False)
    pooled = runner.run_experiments(names, "quick", 1, tmp_path / "pooled", progress=False, jobs=2)
    assert [e["name"] for e in pooled["experiments"]] == names            # the order asked for
    assert _numbers(pooled) == _numbers(serial)
    assert all(e["error"] is None for e in pooled["experiments"])


def test_only_registered_experiments_that_do_not_time_themselves_go_to_workers():
    found, _ = discover()
    exclusive = [e for e in found.values() if e.exclusive]
    assert {"parallel_apply", "lipschitz", "sparse_attention", "mlm_reading_comprehension"} <= \
        {e.name for e in exclusive}                                           # they time themselves
    assert not any(runner._importable(e) and not e.exclusive for e in exclusive)
    plain = found["nce"]
    assert runner._importable(plain)
    assert not runner._importable(dataclasses.replace(plain))                 # a copy no worker could find


def test_jobs_must_be_a_positive_int(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        runner.run_experiments(["nce"], "quick", 1, tmp_path, progress=False, jobs=0)
