"""Running the article experiments: seeds, aggregation, the verdict, and the report files.

`run_experiments(names, mode, seeds, out_dir)` runs each experiment for seeds 0..n-1 with torch on one thread
(the same command twice gives the same numbers), averages every metric over the seeds (mean, sample std, and
the per-seed values), computes the verdict on the means with `base.verdict`, and writes

    out_dir/results.json   everything the page shows, machine-readable
    out_dir/plots/*.png    one plot per Figure of the first seed (seed 0); tables are the first seed's too
    out_dir/index.html     the offline report (report.py)

With `jobs > 1` the experiments run in that many worker processes, each on one thread, so the numbers are
the same as a serial run; an experiment that times itself (`Experiment.exclusive`) runs alone afterwards.

A crash, a malformed Measurement, a missing check metric or a non-finite metric is a *failure* (verdict
"failed", error kept with its traceback); a claim that does not reproduce is a result, not a failure.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .._validate import check_choice, check_int
from .base import MODES, Experiment, Figure, Measurement, verdict
from .registry import ImportFailure, discover

__all__ = ["FAILED", "run_experiments", "run_one", "machine_info", "failed"]

FAILED = "failed"


def failed(results: dict) -> list[str]:
    """Names of the experiments that crashed or lack a number (what makes `kexue reproduce` exit non-zero)."""
    return [e["name"] for e in results["experiments"] if e["error"]]


def machine_info() -> dict[str, Any]:
    """CPU model, SIMD level, core count and versions: what the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "simd": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}


def _resolve(names: Sequence[str | Experiment] | None) -> list[Experiment | ImportFailure]:
    """Experiment objects (or import failures) for the requested names; None means every discovered one."""
    if names is not None and all(isinstance(n, Experiment) for n in names):
        found, broken = {}, {}            # explicit experiments only: no need to import the article modules
    else:
        found, broken = discover()
    if names is None:
        return [found.get(n) or broken[n] for n in sorted({*found, *broken})]
    out, seen = [], set()
    for n in names:
        if isinstance(n, Experiment):
            item = n
        elif isinstance(n, str):
            if n not in found and n not in broken:
                raise KeyError(f"names: unknown experiment {n!r}; known: {', '.join(sorted({*found, *broken}))}")
            item = found.get(n) or broken[n]
        else:
            raise TypeError(f"names must hold experiment names (str) or Experiment objects, got {n!r}")
        if item.name in seen:
            raise ValueError(f"names: experiment {item.name!r} given twice")
        seen.add(item.name)
        out.append(item)
    return out


def _seed_everything(seed: int) -> None:
    """The runner's safety net; experiments seed their own generators too."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _number(value: Any) -> float:
    """A metric as a Python float (ints, numpy and 0-d tensor scalars accepted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number, torch.Tensor)):
        raise TypeError(f"a metric must be a number, got {value!r} ({type(value).__name__})")
    return float(value.item() if isinstance(value, (torch.Tensor, np.number)) else value)


def _jsonable(value: Any) -> Any:
    """Table cells and figure data made JSON-safe: NaN/inf become None, scalars become Python numbers."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _validate_measurement(m: Any, exp: Experiment, seed: int) -> dict[str, float]:
    """The run's metrics as floats, or a ValueError/TypeError saying what is missing or not finite."""
    where = f"{exp.name}.run(mode, seed={seed})"
    if not isinstance(m, Measurement):
        raise TypeError(f"{where} must return a Measurement, got {type(m).__name__}")
    metrics = {}
    for k, v in m.metrics.items():
        try:
            metrics[k] = _number(v)
        except TypeError as e:
            raise TypeError(f"{where}: metric {k!r}: {e}") from None
        if not math.isfinite(metrics[k]):
            raise ValueError(f"{where}: metric {k!r} is not finite ({metrics[k]})")
    missing = sorted({c.metric for c in exp.checks} - set(metrics))
    if missing:
        raise ValueError(f"{where}: no value for the checked metric(s) {missing}; it returned {sorted(metrics)}")
    for f in m.figures:
        if not isinstance(f, Figure):
            raise TypeError(f"{where}: figures must hold Figure objects, got {type(f).__name__}")
        for label, (x, y) in f.lines.items():
            if len(x) != len(y):
                raise ValueError(f"{where}: figure {f.name!r} line {label!r} has {len(x)} x values "
                                 f"and {len(y)} y values")
    return metrics


def _aggregate(per_seed: list[dict[str, float]]) -> dict[str, dict]:
    """metric -> {mean, std (sample; 0 for one seed), per_seed}; a metric absent from some seed is left out."""
    out = {}
    for k in per_seed[0] if per_seed else []:
        values = [m[k] for m in per_seed if k in m]
        if len(values) != len(per_seed):
            continue
        out[k] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "per_seed": values}
    return out


def _first_seed_figures(figures: list[Figure]) -> list[dict]:
    """The first seed's figures as JSON-safe dicts. Not averaged: a sample path or a scatter averaged over
    seeds is no longer what any run produced; the spread over seeds is in the metrics' std."""
    return [{"name": f.name, "title": f.title, "xlabel": f.xlabel, "ylabel": f.ylabel, "logy": bool(f.logy),
             "lines": _jsonable({label: [[float(v) for v in x], [float(v) for v in y]]
                                 for label, (x, y) in f.lines.items()})} for f in figures]


def _entry(exp: Experiment | ImportFailure, mode: str) -> dict[str, Any]:
    if isinstance(exp, ImportFailure):
        return {"name": exp.name, "title": exp.name, "url": "", "claim": "", "setup": "", "deviations": "",
                "seeds": [], "checks": [], "verdict": FAILED, "metrics": {}, "tables": {}, "figures": [],
                "seconds": 0.0, "error": f"the module kexue.experiments.{exp.name} failed to import:\n{exp.error}"}
    return {"name": exp.name, "title": exp.title, "url": exp.url, "claim": exp.claim, "setup": exp.setup,
            "deviations": exp.deviations.get(mode, ""), "seeds": [], "checks": [], "verdict": FAILED,
            "metrics": {}, "tables": {}, "figures": [], "seconds": 0.0, "error": None}


def run_one(exp: Experiment | ImportFailure, mode: str, seeds: int | None = None, progress: bool = True) -> dict:
    """One experiment over seeds 0..n-1 (n = `seeds` or exp.seeds[mode]) -> its results.json entry."""
    entry = _entry(exp, mode)
    if isinstance(exp, ImportFailure):
        return entry
    per_seed, figures, tables = [], [], {}
    t0 = time.perf_counter()
    bar = None
    try:
        n = check_int(f"{exp.name}: seeds for mode {mode!r}", seeds if seeds is not None else exp.seeds.get(mode), 1)
        bar = tqdm(range(n), desc=f"{exp.name:<28}", unit="seed", disable=not progress, file=sys.stderr,
                   leave=True, dynamic_ncols=True)
        for seed in bar:
            _seed_everything(seed)
            m = exp.run(mode, seed)
            per_seed.append(_validate_measurement(m, exp, seed))
            if seed == 0:
                tables, figures = _jsonable(m.tables), _first_seed_figures(m.figures)
            entry["seeds"].append(seed)
    except Exception:                     # noqa: BLE001 -- a crash is this experiment's failure, not the run's
        entry["error"] = traceback.format_exc()
    finally:
        if bar is not None:
            bar.close()
    entry["seconds"] = time.perf_counter() - t0
    entry["metrics"] = _aggregate(per_seed)
    means = {k: v["mean"] for k, v in entry["metrics"].items()}
    entry["checks"] = _jsonable([
        {"metric": c.metric, "op": c.op, "target": c.target, "tol": c.tol, "label": c.label,
         "condition": dataclasses.replace(c, label="").describe(), "measured": means.get(c.metric),
         "std": entry["metrics"].get(c.metric, {}).get("std"), "held": c.holds(means)} for c in exp.checks])
    entry["tables"] = tables
    entry["figures"] = figures if not entry["error"] else []
    entry["verdict"] = FAILED if entry["error"] else verdict(exp.checks, means)
    return entry


def _importable(item: Experiment | ImportFailure) -> bool:
    """True for an article module's own EXPERIMENT, which a fresh worker process finds again by name."""
    module = sys.modules.get(f"{__package__}.{getattr(item, 'name', '')}")
    return isinstance(item, Experiment) and getattr(module, "EXPERIMENT", None) is item


def _run_by_name(name: str, mode: str, seeds: int | None) -> dict:
    """A worker process's job: one registered experiment on one thread, found again by its name."""
    torch.set_num_threads(1)
    found, broken = discover()
    return run_one(found.get(name) or broken[name], mode, seeds, progress=False)


def _run_in_workers(items: list, mode: str, seeds: int | None, jobs: int, progress: bool) -> dict[str, dict]:
    """name -> entry for `items` (registered experiments), run `jobs` at a time in spawned processes."""
    done = {}
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_by_name, it.name, mode, seeds): it.name for it in items}
        bar = tqdm(total=len(futures), desc=f"{jobs} workers", unit="experiment", disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)
        for future in as_completed(futures):
            entry = future.result()
            done[entry["name"]] = entry
            bar.set_postfix_str(f"{entry['name']}: {entry['verdict']} ({entry['seconds']:.0f} s)")
            bar.update()
        bar.close()
    return done


def run_experiments(names: Sequence[str | Experiment] | None = None, mode: str = "quick",
                    seeds: int | None = None, out_dir: str | os.PathLike = "runs/reproduce",
                    progress: bool = True, jobs: int = 1) -> dict[str, Any]:
    """Run the named experiments (None: all discovered) and write results.json, plots and index.html to
    `out_dir`; returns the results dict (what results.json holds). `jobs`: worker processes for the
    registered experiments that do not time themselves (same numbers as jobs=1)."""
    check_choice("mode", mode, MODES)
    if seeds is not None:
        check_int("seeds", seeds, 1)
    jobs = check_int("jobs", jobs, 1)
    items = _resolve(names)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"mode": mode, "seeds": seeds, "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "machine": machine_info(), "experiments": []}
    pooled = [it for it in items if _importable(it) and not it.exclusive] if jobs > 1 else []
    entries = _run_in_workers(pooled, mode, seeds, jobs, progress) if len(pooled) > 1 else {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for item in items:
            results["experiments"].append(entries.get(item.name) or run_one(item, mode, seeds, progress))
    finally:
        torch.set_num_threads(threads)
    from .plots import draw_all      # matplotlib is imported only when a report is written
    from .report import write_html
    draw_all(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False))
    write_html(results, out)
    return results
