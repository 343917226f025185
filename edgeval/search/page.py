"""The human outputs of a search, read from the search document alone: a Markdown summary and one HTML page with
the front plotted (matplotlib, imported here only; without it the page says so and keeps the table)."""
from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path
from typing import Any, Mapping

from ..numbers import DASH, fmt_bytes, fmt_ci, fmt_fixed

HEADER = ("method", "sparsity", "objective", "ΔSRS [95 % CI]", "perplexity ratio", "BBQ items", "verdict",
          "front", "report")
UNITS = {"bytes": fmt_bytes, "zlib": fmt_bytes, "latency": lambda v: DASH if v is None else f"{v:.2f} ms"}


def cells(point: Mapping[str, Any], doc: Mapping[str, Any]) -> list[str]:
    """One point as display strings, in :data:`HEADER` order."""
    m, objective = point.get("metrics") or {}, doc["settings"]["objective"]
    ci = m.get("delta_srs_ci") or [None, None]
    sparsity = point.get("sparsity")
    verdict = point["verdict"] + (f": {point['error']}" if point.get("error") else "")
    mark = "recommended" if point["key"] == doc.get("recommended") else "yes" if point.get("on_front") else ""
    return [point["axis"], DASH if sparsity is None else f"{100 * sparsity:g} %", UNITS[objective](m.get(objective)),
            f"{fmt_fixed(m.get('delta_srs'), signed=True)} {fmt_ci(*ci)}".strip(), fmt_fixed(m.get("perplexity_ratio")),
            str(m.get("bbq_items_scored") or DASH), verdict, mark, (point.get("report") or {}).get("path") or DASH]


def headline(doc: Mapping[str, Any]) -> str:
    best = next((p for p in doc["points"] if p["key"] == doc.get("recommended")), None)
    if best is None:
        return "No candidate passed the gate: nothing is recommended."
    sparsity = "" if best.get("sparsity") is None else f" at {100 * best['sparsity']:g} % sparsity"
    return (f"Recommended: **{best['axis']}**{sparsity} (the most compressed candidate that passed; its own gate "
            f"report: `{(best.get('report') or {}).get('path')}`).")


def markdown(doc: Mapping[str, Any]) -> str:
    """The summary: the recommendation, each method's highest passing sparsity, every point."""
    lines = ["# edgeval search", "", headline(doc), "", "| method | highest passing sparsity | bracket note |",
             "| --- | --- | --- |"]
    for m in doc["methods"]:
        best = m["highest_passing_sparsity"]
        lines.append(f"| {m['axis']} | {DASH if best is None else f'{100 * best:g} %'} | "
                     f"{'errors inside the bracket: a lower bound' if m['unresolved'] else ''} |")
    lines += ["", "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(p, doc)) + " |" for p in doc["points"]]
    counts = doc["counts"]
    lines += ["", f"{counts['evaluated']} candidates evaluated ({counts['failed']} failed), "
              f"{counts['bbq_items_scored']} BBQ items scored, objective {doc['settings']['objective']}, "
              f"{doc['settings']['strategy']} over {sum(len(g) for g in doc['settings']['grid'].values())} grid "
              f"points, {doc['elapsed_s']:.0f} s.", ""]
    return "\n".join(lines)


def plot_png(doc: Mapping[str, Any]) -> bytes | None:
    """Objective × ΔSRS (with intervals) and objective × perplexity ratio; None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    bias, ppl = fig.subplots(1, 2)
    objective = doc["settings"]["objective"]
    for axis in doc["settings"]["methods"]:
        pts = [p for p in doc["points"] if p["axis"] == axis and (p.get("metrics") or {}).get(objective) is not None]
        _scatter(bias, ppl, pts, objective, axis)
    best = [p for p in doc["points"] if p["key"] == doc.get("recommended")]
    for p in best:
        bias.scatter([p["metrics"][objective]], [p["metrics"].get("delta_srs") or 0], s=220, facecolors="none",
                     edgecolors="green", linewidths=2, label="recommended")
    for ax, label in ((bias, "ΔSRS vs dense (95 % CI)"), (ppl, "perplexity ratio to dense")):
        ax.set_xlabel(objective)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    bias.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _scatter(bias: Any, ppl: Any, pts: list[dict[str, Any]], objective: str, axis: str) -> None:
    """One method's points: ΔSRS with its interval (left), perplexity ratio (right), against the objective."""
    shown = [p["metrics"] for p in pts if p["metrics"].get("delta_srs") is not None]
    if shown:
        y = [m["delta_srs"] for m in shown]
        ci = [m.get("delta_srs_ci") or [None, None] for m in shown]
        err = [[v - (c[0] if c[0] is not None else v) for v, c in zip(y, ci, strict=True)],
               [(c[1] if c[1] is not None else v) - v for v, c in zip(y, ci, strict=True)]]
        bias.errorbar([m[objective] for m in shown], y, yerr=err, fmt="o", capsize=3, label=axis)
    ppl.plot([p["metrics"][objective] for p in pts],
             [p["metrics"].get("perplexity_ratio") or float("nan") for p in pts], "o", label=axis)


def html(doc: Mapping[str, Any], out_dir: Path) -> str:
    """One self-contained page: headline, plot (inline PNG), the points table with links to each report."""
    from ..render.css import CSS

    png = plot_png(doc)
    image = (f"<img alt=\"search front\" style=\"max-width:100%\" src=\"data:image/png;base64,"
             f"{base64.b64encode(png).decode('ascii')}\">" if png else "<p>(install matplotlib for the plot)</p>")
    rows = "".join("<tr>" + "".join(f"<td>{_link(c) if i == len(HEADER) - 1 else escape(c)}</td>"
                                    for i, c in enumerate(cells(p, doc))) + "</tr>" for p in doc["points"])
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
    best = headline(doc).replace("**", "")
    extra = ("<p><a href=\"recommended-report.html\">The recommended candidate's full report (per-category bias "
             "drift)</a></p>" if (out_dir / "recommended-report.html").is_file() else "")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>edgeval search</title><style>{CSS}"
            f"</style></head><body><h1>edgeval search</h1><p>{escape(best)}</p>{extra}<section>{image}</section>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></body></html>\n")


def _link(path: str) -> str:
    return escape(path) if path == DASH else f"<a href=\"{escape(path)}\">{escape(path)}</a>"


__all__ = ["markdown", "html", "plot_png", "cells", "HEADER"]
