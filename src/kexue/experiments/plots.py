"""Drawing the experiments' figures as PNG files with matplotlib's Agg canvas (no display, no global backend
switch): one file per Figure, `plots/<experiment>-<figure>.png`, named in the entry's `file` field."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

__all__ = ["draw_all", "draw"]


def _safe(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "figure"


def draw(fig: dict, path: Path) -> None:
    """One figure dict (from the runner: title, xlabel, ylabel, logy, lines label -> [x, y]) to a PNG."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.0, 3.8), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for label, (x, y) in fig["lines"].items():
        ax.plot(np.asarray(x, dtype=float), np.asarray(y, dtype=float), label=str(label))
    if fig.get("logy"):
        ax.set_yscale("log")
    ax.set_title(fig["title"])
    ax.set_xlabel(fig["xlabel"])
    ax.set_ylabel(fig["ylabel"])
    ax.grid(alpha=0.3)
    if len(fig["lines"]) > 1:
        ax.legend(fontsize=8)
    with warnings.catch_warnings():    # a glyph missing from the default font (CJK) is not worth a warning per plot
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        figure.tight_layout()
        figure.savefig(path, format="png", metadata={"Software": None})


def draw_all(results: dict, out_dir: Path) -> None:
    """Draw every experiment's figures under out_dir/plots/ (stale PNGs there are removed first) and record
    each file's relative path in the figure's `file` field."""
    plots = Path(out_dir) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for old in plots.glob("*.png"):
        old.unlink()
    for entry in results["experiments"]:
        for fig in entry["figures"]:
            name = f"{_safe(entry['name'])}-{_safe(fig['name'])}.png"
            try:
                draw(fig, plots / name)
                fig["file"] = f"plots/{name}"
            except Exception as e:        # noqa: BLE001 -- a broken plot must not hide the numbers
                fig["file"] = None
                fig["plot_error"] = f"{type(e).__name__}: {e}"
