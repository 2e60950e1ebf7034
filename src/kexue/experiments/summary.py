"""The summary shown by both the console table and the report's top table: article, claim, measured,
verdict, seconds — built from a results dict, so the two cannot disagree."""
from __future__ import annotations

import math
import textwrap

__all__ = ["fmt", "measured_text", "summary_rows", "console_table", "markdown_table"]


def fmt(x: float | None) -> str:
    """A measured number as shown everywhere (4 significant digits); None (no number) as '—'."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.4g}"


def measured_text(entry: dict) -> str:
    """Each checked metric's seed mean (± std when several seeds) with ✓/✗: 'test_error 0.118 ✓'."""
    parts = []
    for c in entry["checks"]:
        spread = f" ± {fmt(c['std'])}" if len(entry["seeds"]) > 1 and c.get("std") is not None else ""
        parts.append(f"{c['metric']} {fmt(c['measured'])}{spread} {'✓' if c['held'] else '✗'}")
    return "; ".join(parts) if parts else "no number"


def summary_rows(results: dict) -> list[dict[str, str]]:
    return [{"article": e["name"], "claim": e["claim"], "measured": measured_text(e), "verdict": e["verdict"],
             "seconds": f"{e['seconds']:.1f}"} for e in results["experiments"]]


def _wrap(text: str, width: int, max_lines: int | None = None) -> list[str]:
    lines = textwrap.wrap(text, width) or [""]
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines - 1] + [textwrap.shorten(" ".join(lines[max_lines - 1:]), width, placeholder=" …")]
    return lines


def console_table(results: dict, claim_width: int = 48, measured_width: int = 52, claim_lines: int = 3) -> str:
    """A plain-text table; measurements wrap inside their column, claims are cut to `claim_lines` lines (the
    report has them whole)."""
    rows = summary_rows(results)
    widths = {"article": max([len("article"), *(len(r["article"]) for r in rows)]), "claim": claim_width,
              "measured": measured_width, "verdict": len("not reproduced"), "seconds": 7}
    cols = list(widths)

    def line(cells: dict[str, list[str]]) -> list[str]:
        height = max(len(v) for v in cells.values())
        return ["  ".join((cells[c][i] if i < len(cells[c]) else "").ljust(widths[c]) if c != "seconds"
                          else (cells[c][i] if i < len(cells[c]) else "").rjust(widths[c])
                          for c in cols).rstrip() for i in range(height)]

    out = line({c: [c] for c in cols})
    out.append("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        out += line({c: _wrap(r[c], widths[c], claim_lines) if c == "claim" else _wrap(r[c], widths[c])
                     if c == "measured" else [r[c]] for c in cols})
    ok = sum(e["verdict"] == "reproduced" for e in results["experiments"])
    partly = sum(e["verdict"] == "partly" for e in results["experiments"])
    bad = sum(1 for e in results["experiments"] if e["error"])
    total = sum(e["seconds"] for e in results["experiments"])
    out.append(f"\n{len(rows)} experiments ({results['mode']}): {ok} reproduced, {partly} partly, "
               f"{len(rows) - ok - partly - bad} not reproduced, {bad} failed; {total:.1f} s")
    return "\n".join(out)


def markdown_table(results: dict) -> str:
    """The summary as a Markdown table (for the README): article (linked), measured, verdict, seconds."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")
    lines = [f"| article | measured ({results['mode']}) | verdict | seconds |", "|---|---|---|---:|"]
    for r, e in zip(summary_rows(results), results["experiments"]):
        article = f"[{cell(r['article'])}]({e['url']})" if e["url"] else cell(r["article"])
        lines.append(f"| {article} | {cell(r['measured'])} | {cell(r['verdict'])} | {r['seconds']} |")
    return "\n".join(lines)
