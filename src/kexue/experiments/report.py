"""The offline HTML report: one page, a summary table linking to a section per article (claim, set-up,
deviations from the spec's recipe, the checks measured vs target, metrics over seeds, tables, plots).

Self-contained: inline CSS, no script, no external font or CDN; plots by relative path; every text escaped."""
from __future__ import annotations

from html import escape
from pathlib import Path

from .summary import fmt, summary_rows

__all__ = ["render_html", "write_html"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;
margin:2rem auto;max-width:1100px;padding:0 1rem;color:#1d1d1f;background:#fff;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.5rem;border-top:1px solid #ddd;padding-top:1rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .5rem;
text-align:left;vertical-align:top}th{background:#f2f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.reproduced{background:#d9f2dc}.partly{background:#fff1c7}.not-reproduced{background:#f9d6d5}
.failed{background:#e33;color:#fff;font-weight:bold}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto;
font-size:.8rem}td.held{white-space:nowrap}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0}.meta{color:#555;font-size:.9rem}
"""


def _cls(verdict: str) -> str:
    return verdict.replace(" ", "-")


def _table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(r.get(c)) for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v) -> str:
    if isinstance(v, float) or v is None:
        return f'<td class="num">{escape(fmt(v))}</td>'
    if isinstance(v, int) and not isinstance(v, bool):
        return f'<td class="num">{v}</td>'
    return f"<td>{escape(str(v))}</td>"


def _section(e: dict, mode: str) -> str:
    name = escape(e["name"])
    url = escape(e["url"])
    parts = [f'<h2 id="{name}">{escape(e["title"])} <small>({name})</small></h2>']
    if e["url"]:
        parts.append(f'<p class="meta">article: <a href="{url}">{url}</a></p>')
    parts.append(f'<p><b>Claim.</b> {escape(e["claim"])}</p>')
    parts.append(f'<p><b>Set-up.</b> {escape(e["setup"])}</p>')
    parts.append(f'<p><b>Deviations from the recipe ({escape(mode)}).</b> {escape(e["deviations"] or "none")}</p>')
    parts.append(f'<p><b>Verdict:</b> <span class="{_cls(e["verdict"])}">{escape(e["verdict"])}</span> '
                 f'— seeds {escape(", ".join(map(str, e["seeds"])) or "none")}, {e["seconds"]:.1f} s</p>')
    if e["checks"]:
        rows = "".join(
            f'<tr><td>{escape(c["label"] or c["metric"])}</td><td>{escape(c["condition"])}</td>'
            f'<td class="num">{escape(fmt(c["measured"]))}</td>'
            f'<td class="num">{escape(fmt(c["std"]) if len(e["seeds"]) > 1 else "")}</td>'
            f'<td class="held">{"✓ holds" if c["held"] else "✗ does not hold"}</td></tr>' for c in e["checks"])
        parts.append("<h3>Checks (seed means vs the article's target)</h3><table><tr><th>check</th>"
                     f"<th>target</th><th>measured</th><th>std</th><th>held</th></tr>{rows}</table>")
    if e["metrics"]:
        rows = "".join(f'<tr><td>{escape(k)}</td><td class="num">{escape(fmt(m["mean"]))}</td>'
                       f'<td class="num">{escape(fmt(m["std"]))}</td>'
                       f'<td>{escape(", ".join(fmt(v) for v in m["per_seed"]))}</td></tr>'
                       for k, m in e["metrics"].items())
        parts.append("<h3>Metrics</h3><table><tr><th>metric</th><th>mean</th><th>std</th><th>per seed</th></tr>"
                     f"{rows}</table>")
    for tname, rows in e["tables"].items():
        if rows:
            parts.append(f"<h3>{escape(tname)} <small>(seed 0)</small></h3>{_table(rows)}")
    for f in e["figures"]:
        if f.get("file"):
            parts.append(f'<figure><img src="{escape(f["file"])}" alt="{escape(f["title"])}">'
                         f'<figcaption class="meta">{escape(f["title"])} (seed 0)</figcaption></figure>')
        else:
            parts.append(f'<p class="meta">plot {escape(f["name"])} not drawn: {escape(f.get("plot_error", ""))}</p>')
    if e["error"]:
        parts.append(f'<h3 class="failed">Failure</h3><pre>{escape(e["error"])}</pre>')
    return f'<section id="section-{name}">' + "\n".join(parts) + "</section>"


def render_html(results: dict) -> str:
    """The report page as one HTML string."""
    m = results["machine"]
    rows = "".join(
        f'<tr id="row-{escape(r["article"])}" class="{_cls(r["verdict"])}">'
        f'<td><a href="#{escape(r["article"])}">{escape(r["article"])}</a></td><td>{escape(r["claim"])}</td>'
        f'<td>{escape(r["measured"])}</td><td>{escape(r["verdict"])}</td><td class="num">{escape(r["seconds"])}</td>'
        "</tr>" for r in summary_rows(results))
    seeds = "each experiment's default" if results["seeds"] is None else str(results["seeds"])
    head = (f"<h1>kexue reproductions ({escape(results['mode'])})</h1>"
            f'<p class="meta">{escape(results["date"])} · seeds: {escape(seeds)} · {escape(m["cpu"])} '
            f'({escape(str(m["cores"]))} cores, SIMD {escape(m["simd"])}) · torch {escape(m["torch"])}, '
            "one thread</p><p>Each verdict is computed from the measured numbers: <i>reproduced</i> when every "
            "check holds, <i>partly</i> when some do, <i>not reproduced</i> when none does; <i>failed</i> means "
            "the run crashed or lacks a number.</p>")
    summary = ('<table id="summary"><tr><th>article</th><th>claim</th><th>measured</th><th>verdict</th>'
               f"<th>seconds</th></tr>{rows}</table>")
    sections = "\n".join(_section(e, results["mode"]) for e in results["experiments"])
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>kexue reproductions ({escape(results['mode'])})</title><style>{CSS}</style></head>"
            f"<body>{head}{summary}\n{sections}</body></html>\n")


def write_html(results: dict, out_dir: str | Path) -> Path:
    path = Path(out_dir) / "index.html"
    path.write_text(render_html(results), encoding="utf-8")
    return path
