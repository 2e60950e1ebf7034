"""Every script in examples/ runs in its smoke form (seconds) and returns finite metrics.

The contract of an example: `main(argv=None) -> dict[str, float]`, argparse flags `--quick` (a few minutes on
CPU, the form examples/README.md quotes) and `--smoke` (seconds, for this test), and the full recipe with
neither flag."""
from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.py")
                  if not p.name.startswith("_"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 1


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_smoke_form_gives_finite_metrics(path, capsys):
    main = runpy.run_path(str(path), run_name="kexue_example")["main"]
    metrics = main(["--smoke"])
    assert isinstance(metrics, dict) and metrics, f"{path.name}: main must return a non-empty dict of metrics"
    bad = {k: v for k, v in metrics.items() if not (isinstance(v, (int, float)) and math.isfinite(v))}
    assert not bad, f"{path.name}: non-finite or non-numeric metrics {bad}"
    assert capsys.readouterr().out.strip(), f"{path.name}: an example prints what it measured"
