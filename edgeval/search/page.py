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
        note = ("errors inside the bracket: a lower bound" if m["unresolved"] else
                f"{m['settled_by']} alone failed: no sparsity can pass (none gated)" if m.get("settled_by") else "")
        lines.append(f"| {m['axis']} | {DASH if best is None else f'{100 * best:g} %'} | {note} |")
    lines += ["", "| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(p, doc)) + " |" for p in doc["points"]]
    counts = doc["counts"]
    lines += ["", f"{counts['evaluated']} candidates evaluated ({counts['failed']} failed), "
              f"{counts['bbq_items_scored']} BBQ items scored, objective {doc['settings']['objective']}, "
              f"{doc['settings']['strategy']} over {sum(len(g) for g in doc['settings']['grid'].values())} grid "
              f"points, {doc['elapsed_s']:.0f} s.", ""]
    return "\n".join(lines)


def plot_png(doc: Mapping[str, Any]) -> bytes | None:
    """Objective × ΔSRS (with intervals) and objective × perplexity ratio, one colour per method, filled markers
    for passing points, the front joined by a line, the recommendation ringed; None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    panels = fig.subplots(1, 2)
    objective = doc["settings"]["objective"]
    measured = [p for p in doc["points"] if (p.get("metrics") or {}).get(objective) is not None]
    for n, axis in enumerate(doc["settings"]["methods"]):
        _scatter(panels, [p for p in measured if p["axis"] == axis], objective, axis, f"C{n}")
    for ax, key, label in zip(panels, ("delta_srs", "perplexity_ratio"),
                              ("ΔSRS vs dense (95 % CI)", "perplexity ratio to dense"), strict=True):
        _front_and_pick(ax, measured, doc, objective, key)
        ax.set_xlabel(f"{objective} ({'ms' if objective == 'latency' else 'MB'})")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if not any((p["metrics"] or {}).get(key) is not None for p in measured):
            ax.text(0.5, 0.5, "not measured by this policy", ha="center", transform=ax.transAxes)
    panels[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _x(m: Mapping[str, Any], objective: str) -> float:
    return float(m[objective]) if objective == "latency" else float(m[objective]) / 1e6


def _scatter(panels: Any, pts: list[dict[str, Any]], objective: str, axis: str, colour: str) -> None:
    """One method's points: ΔSRS with its interval (left), perplexity ratio (right); hollow: did not pass."""
    for p in pts:
        m, face = p["metrics"], colour if p["verdict"] == "pass" else "none"
        x, y = _x(m, objective), m.get("delta_srs")
        if y is not None:
            lo, hi = (m.get("delta_srs_ci") or [None, None])
            err = [[y - lo if lo is not None else 0], [hi - y if hi is not None else 0]]
            panels[0].errorbar([x], [y], yerr=err, fmt="o", color=colour, mfc=face, capsize=3)
        if m.get("perplexity_ratio") is not None:
            panels[1].plot([x], [m["perplexity_ratio"]], "o", color=colour, mfc=face)
        for ax, value in zip(panels, (y, m.get("perplexity_ratio")), strict=True):
            if value is not None and p.get("sparsity") is not None:
                ax.annotate(f"{100 * p['sparsity']:g}%", (x, value), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
    panels[0].plot([], [], "o", color=colour, label=f"{axis} (filled: pass)")


def _front_and_pick(ax: Any, measured: list[dict[str, Any]], doc: Mapping[str, Any], objective: str,
                    key: str) -> None:
    front = sorted((p for p in measured if p.get("on_front") and p["metrics"].get(key) is not None),
                   key=lambda p: p["metrics"][objective])
    if front:
        ax.plot([_x(p["metrics"], objective) for p in front], [p["metrics"][key] for p in front], "--",
                color="grey", lw=1, label="Pareto front")
    for p in measured:
        if p["key"] == doc.get("recommended") and p["metrics"].get(key) is not None:
            ax.scatter([_x(p["metrics"], objective)], [p["metrics"][key]], s=260, facecolors="none",
                       edgecolors="green", linewidths=2, label="recommended")


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
