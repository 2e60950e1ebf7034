"""The runner: discovery, seeds and aggregation, failures, determinism, and the files it writes."""
from __future__ import annotations

import json
import math
import statistics
import sys
import textwrap

import pytest
import torch

from kexue.experiments import PARTLY, REPRODUCED, Check, Experiment, Figure, Measurement
from kexue.experiments.registry import discover
from kexue.experiments.runner import FAILED, failed, run_experiments

from .fakes import from_metrics, gaussian

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(experiments, tmp_path, **kw):
    return run_experiments(experiments, kw.pop("mode", "quick"), kw.pop("seeds", None), tmp_path,
                           progress=False, **kw)


def _by_name(results):
    return {e["name"]: e for e in results["experiments"]}


# ---- discovery ------------------------------------------------------------------------------------------------

@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    pkg = tmp_path / "fake_articles_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    good = textwrap.dedent("""
        from kexue.experiments import Check, Experiment, Measurement
        EXPERIMENT = Experiment("{name}", "t", "u", "c", "s", [Check("m", "<", 1.0)],
                                lambda mode, seed: Measurement({{"m": 0.5}}))
        """)
    (pkg / "good_article.py").write_text(good.format(name="good_article"))
    (pkg / "renamed.py").write_text(good.format(name="other_name"))
    (pkg / "broken.py").write_text("raise RuntimeError('this article module is broken')\n")
    (pkg / "helper.py").write_text("VALUE = 1\n")            # no EXPERIMENT: not an article
    (pkg / "_private.py").write_text("raise RuntimeError('never imported')\n")
    (pkg / "wrong_type.py").write_text("EXPERIMENT = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fake_articles_pkg"
    for m in [m for m in sys.modules if m.startswith("fake_articles_pkg")]:
        del sys.modules[m]


def test_discover_registers_modules_with_experiment_and_reports_broken_ones(fake_package):
    found, broken = discover(fake_package)
    assert list(found) == ["good_article"] and found["good_article"].name == "good_article"
    assert sorted(broken) == ["broken", "renamed", "wrong_type"]
    assert "RuntimeError: this article module is broken" in broken["broken"].error   # the traceback is kept
    assert "'other_name'" in broken["renamed"].error and "'renamed'" in broken["renamed"].error
    assert "int" in broken["wrong_type"].error


def test_real_article_modules_are_registered_under_their_module_names():
    import pkgutil

    import kexue.experiments as pkg
    found, broken = discover()
    assert broken == {}, {k: v.error[-400:] for k, v in broken.items()}
    modules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    assert set(found) <= modules
    assert all(name == exp.name and isinstance(exp, Experiment) for name, exp in found.items())


def test_a_broken_module_is_a_failed_experiment_not_a_crash(fake_package, monkeypatch, tmp_path):
    import kexue.experiments.runner as runner
    monkeypatch.setattr(runner, "discover", lambda: discover(fake_package))
    results = _run(None, tmp_path)
    entries = _by_name(results)
    assert sorted(entries) == ["broken", "good_article", "renamed", "wrong_type"]
    assert entries["good_article"]["verdict"] == REPRODUCED and entries["good_article"]["error"] is None
    assert entries["broken"]["verdict"] == FAILED and "this article module is broken" in entries["broken"]["error"]
    assert failed(results) == ["broken", "renamed", "wrong_type"]
    with pytest.raises(KeyError, match="unknown experiment 'nope'.*known: broken, good_article"):
        _run(["nope"], tmp_path)
    assert _by_name(_run(["broken"], tmp_path))["broken"]["verdict"] == FAILED


# ---- seeds, aggregation, verdict --------------------------------------------------------------------------------

def test_metrics_are_averaged_over_seeds_with_sample_std(tmp_path):
    exp = from_metrics("lin", lambda s: {"x": float(s), "y": 10.0 - s}, [Check("x", "<=", 2.0)])
    e = _by_name(_run([exp], tmp_path, seeds=4))["lin"]
    assert e["seeds"] == [0, 1, 2, 3]
    assert e["metrics"]["x"] == {"mean": 1.5, "std": pytest.approx(math.sqrt(5 / 3)), "per_seed": [0, 1, 2, 3]}
    assert e["metrics"]["y"]["mean"] == 8.5
    one = _by_name(_run([exp], tmp_path, seeds=1))["lin"]
    assert one["metrics"]["x"]["std"] == 0.0


def test_seed_count_defaults_to_the_experiments_own_per_mode(tmp_path):
    exp = from_metrics("counted", lambda s: {"x": 0.0}, [Check("x", "<", 1.0)], seeds={"quick": 2, "full": 5})
    assert _by_name(_run([exp], tmp_path))["counted"]["seeds"] == [0, 1]
    assert _by_name(_run([exp], tmp_path, mode="full"))["counted"]["seeds"] == [0, 1, 2, 3, 4]


def test_the_verdict_is_computed_on_the_seed_means(tmp_path):
    # seed 0 alone fails (0.3 > 0.2), seed 1 alone holds; the mean 0.15 holds -> reproduced
    exp = from_metrics("mean_verdict", lambda s: {"err": [0.3, 0.0][s], "gap": [5.0, 7.0][s]},
                       [Check("err", "<=", 0.2), Check("gap", ">", 6.5)])
    e = _by_name(_run([exp], tmp_path, seeds=2))["mean_verdict"]
    assert [c["held"] for c in e["checks"]] == [True, False]              # gap mean 6.0 is not > 6.5
    assert [c["measured"] for c in e["checks"]] == [0.15, 6.0]
    assert e["verdict"] == PARTLY and e["error"] is None


def test_runs_on_one_thread_and_restores_the_thread_count(tmp_path):
    before = torch.get_num_threads()
    exp = from_metrics("threads", lambda s: {"threads": float(torch.get_num_threads())},
                       [Check("threads", "~", 1.0, tol=0.0)])
    assert _by_name(_run([exp], tmp_path))["threads"]["verdict"] == REPRODUCED
    assert torch.get_num_threads() == before


# ---- failures ---------------------------------------------------------------------------------------------------

def _crash(mode, seed):
    raise ZeroDivisionError("boom in run()")


@pytest.mark.parametrize("run, message", [
    (_crash, "ZeroDivisionError: boom in run()"),
    (lambda mode, seed: Measurement({"other": 1.0}), "no value for the checked metric(s) ['m']"),
    (lambda mode, seed: Measurement({"m": float("nan")}), "metric 'm' is not finite"),
    (lambda mode, seed: Measurement({"m": 0.5, "aux": float("inf")}), "metric 'aux' is not finite"),
    (lambda mode, seed: Measurement({"m": "0.5"}), "metric 'm': a metric must be a number"),
    (lambda mode, seed: {"m": 0.5}, "must return a Measurement, got dict"),
    (lambda mode, seed: Measurement({"m": 0.5}, figures=[Figure("f", "t", "x", "y", {"l": ([1, 2], [1])})]),
     "has 2 x values and 1 y values"),
])
def test_a_crash_or_a_missing_number_is_a_failure_and_the_others_still_run(tmp_path, run, message):
    bad = Experiment("bad", "t", "", "c", "s", [Check("m", "<", 1.0)], run)
    results = _run([bad, gaussian()], tmp_path)
    entries = _by_name(results)
    assert entries["bad"]["verdict"] == FAILED and message in entries["bad"]["error"]
    assert entries["fake_gauss"]["error"] is None and entries["fake_gauss"]["verdict"] == REPRODUCED
    assert failed(results) == ["bad"]
    json.loads((tmp_path / "results.json").read_text())                 # still valid JSON (no NaN)
    assert "bad" in (tmp_path / "index.html").read_text()


@pytest.mark.parametrize("seeds, message", [
    ({"quick": 0}, "fake_gauss: seeds for mode 'quick' must be an int >= 1, got 0"),
    ({"full": 2}, "fake_gauss: seeds for mode 'quick' must be an int, got None"),
    ({"quick": 1.0}, "must be an int, got 1.0"),
])
def test_a_bad_seed_count_is_that_experiments_failure(tmp_path, seeds, message):
    e = _by_name(_run([gaussian(seeds=seeds)], tmp_path))["fake_gauss"]
    assert e["verdict"] == FAILED and message in e["error"] and e["seeds"] == []


def test_a_figure_with_non_numbers_is_a_failure(tmp_path):
    run = lambda mode, seed: Measurement({"m": 0.5}, figures=[Figure("f", "t", "x", "y", {"l": (["a"], [1.0])})])
    e = _by_name(_run([Experiment("badfig", "t", "", "c", "s", [Check("m", "<", 1.0)], run)], tmp_path))["badfig"]
    assert e["verdict"] == FAILED and "could not convert string to float: 'a'" in e["error"]


def test_a_claim_that_does_not_reproduce_is_a_result_not_a_failure(tmp_path):
    exp = from_metrics("miss", lambda s: {"m": 2.0}, [Check("m", "<", 1.0)])
    results = _run([exp], tmp_path)
    assert results["experiments"][0]["verdict"] == "not reproduced" and failed(results) == []


@pytest.mark.parametrize("kwargs, error, match", [
    ({"mode": "fast"}, ValueError, "mode must be one of \\['quick', 'full'\\], got 'fast'"),
    ({"seeds": 0}, ValueError, "seeds must be an int >= 1, got 0"),
    ({"seeds": 1.5}, TypeError, "seeds must be an int"),
])
def test_bad_arguments_are_refused_before_running(tmp_path, kwargs, error, match):
    ran = []
    exp = from_metrics("never", lambda s: ran.append(s) or {"m": 0.0}, [Check("m", "<", 1.0)])
    with pytest.raises(error, match=match):
        _run([exp], tmp_path, **kwargs)
    assert ran == []


def test_names_are_checked(tmp_path):
    with pytest.raises(ValueError, match="'fake_gauss' given twice"):
        _run([gaussian(), gaussian()], tmp_path)
    with pytest.raises(TypeError, match="names must hold experiment names"):
        _run([3], tmp_path)


# ---- determinism and files ----------------------------------------------------------------------------------------

def _without_timing(entry):
    return {k: v for k, v in entry.items() if k != "seconds"}


def test_the_same_run_twice_gives_identical_results_json_entries(tmp_path):
    a = _run([gaussian()], tmp_path / "a", seeds=1)
    b = _run([gaussian()], tmp_path / "b", seeds=1)
    ja = json.loads((tmp_path / "a" / "results.json").read_text())
    jb = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [_without_timing(e) for e in ja["experiments"]] == [_without_timing(e) for e in jb["experiments"]]
    assert a["experiments"][0]["metrics"]["mean"]["per_seed"] == b["experiments"][0]["metrics"]["mean"]["per_seed"]


def test_results_json_holds_what_the_page_shows(tmp_path):
    results = _run([gaussian(deviations={"quick": "fewer samples"})], tmp_path, seeds=2)
    j = json.loads((tmp_path / "results.json").read_text())
    assert j == json.loads(json.dumps(results))
    assert j["mode"] == "quick" and j["seeds"] == 2 and j["date"]
    assert j["machine"]["simd"] == torch.backends.cpu.get_cpu_capability()
    assert j["machine"]["torch"] == torch.__version__
    e = j["experiments"][0]
    assert e["deviations"] == "fewer samples" and e["url"] == "https://kexue.fm/archives/0"
    # the checks are the seed means of the per-seed runs, recomputed here from the fake's closed recipe
    means = [statistics.fmean(gaussian().run("quick", s).metrics[k] for s in (0, 1)) for k in ("mean", "var")]
    assert [c["measured"] for c in e["checks"]] == pytest.approx(means, rel=1e-12)
    assert e["tables"]["moments"][0]["value"] == pytest.approx(gaussian().run("quick", 0).metrics["mean"])


def test_one_png_per_figure_of_the_first_seed(tmp_path):
    def run(mode, seed):
        lines = {"a": ([1, 2, 3], [seed + 1.0] * 3), "b": ([seed, seed + 1], [5.0, 6.0 + seed])}
        return Measurement({"m": 0.0}, figures=[Figure("curves", "t", "x", "y", lines),
                                                Figure("log curves", "t", "x", "y", lines, logy=True)])
    exp = Experiment("figs", "t", "", "c", "s", [Check("m", "<", 1.0)], run)
    e = _by_name(_run([exp], tmp_path, seeds=2))["figs"]
    assert e["figures"][0]["lines"] == {"a": [[1, 2, 3], [1, 1, 1]], "b": [[0, 1], [5.0, 6.0]]}   # seed 0's data
    assert [f["file"] for f in e["figures"]] == ["plots/figs-curves.png", "plots/figs-log_curves.png"]
    for f in e["figures"]:
        data = (tmp_path / f["file"]).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_the_page_is_offline_and_escapes_every_text(tmp_path):
    evil = gaussian(title="<script>alert(1)</script> 标题", claim='x < 1 & "y" > 2')
    _run([evil], tmp_path)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; 标题" in page
    assert "x &lt; 1 &amp; &quot;y&quot; &gt; 2" in page
    assert "http://" not in page and "//cdn" not in page and "@import" not in page and "<link" not in page
    srcs = [part.split('"')[0] for part in page.split('src="')[1:]]
    assert srcs == ["plots/fake_gauss-cumulative_mean.png"] and (tmp_path / srcs[0]).is_file()


def test_the_console_table_has_a_row_per_experiment_with_its_verdict(tmp_path):
    from kexue.experiments.summary import console_table
    long_claim = "a claim " * 40
    exps = [gaussian(claim=long_claim), from_metrics("miss", lambda s: {"m": 2.0}, [Check("m", "<", 1.0)])]
    table = console_table(_run(exps, tmp_path))
    rows = {line.split()[0]: line for line in table.splitlines() if line[:1].strip()}
    assert " reproduced " in rows["fake_gauss"] and "not reproduced" not in rows["fake_gauss"]
    assert "not reproduced" in rows["miss"]
    assert "m 2 ✗" in rows["miss"]
    assert "…" in table and len(table.splitlines()) < 12              # a long claim is cut to 3 lines
    assert "2 experiments (quick): 1 reproduced, 0 partly, 1 not reproduced, 0 failed" in table


def test_the_markdown_table_has_a_row_per_experiment(tmp_path):
    from kexue.experiments.summary import markdown_table
    exps = [gaussian(), from_metrics("mi|ss", lambda s: {"m": 2.0}, [Check("m", "<", 1.0)])]
    md = markdown_table(_run(exps, tmp_path)).splitlines()
    assert md[0].startswith("| article | measured (quick) |") and len(md) == 4
    assert md[2].startswith("| [fake_gauss](https://kexue.fm/archives/0) | mean ")
    assert md[3].startswith("| mi\\|ss | m 2 ✗ | not reproduced |")       # a | in a cell is escaped
