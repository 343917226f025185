"""The demo's outputs: the table (rich, Markdown, JSON), the plot (matplotlib, Agg) and one self-contained HTML page.

:func:`row` turns a model's report into a row of plain JSON; everything else reads rows only, so the outputs can
be rebuilt from ``summary.json`` alone.
"""
from __future__ import annotations

import base64
import json
import math
from html import escape
from pathlib import Path
from typing import Any, Sequence

from .render.common import DASH, dig, fmt_bytes, fmt_fixed

HEADER = ("model", "method", "sparsity", "measured sparsity", "perplexity", "s_AMB", "SRS", "ΔSRS",
          "unbiased→biased", "size", "zlib size", "bits/weight", "latency p50", "verdict")
NOTES = ("measured sparsity: zeros in the pruned block linears (compression.json). bits/weight: stored bits of the "
         "weights, scales and zero points per weight (16-bit: fp16; 32: fp32). s_AMB, SRS: BBQ bias on ambiguous "
         "items of the model itself (SRS by chance: 1/3). ΔSRS and unbiased→biased (rate, count/items the dense "
         "model answered unbiased): paired with the dense model on the same items. size: bytes of the ONNX file; "
         "zlib size: compressed at level 1. latency p50: one forward pass, batch 1 x 64 tokens, ONNX Runtime. "
         "verdict: the gate's decision against the dense model under the demo policy; blocked is the gate "
         "doing its job.")
#: inserted before "verdict" when the demo ran the second lenses (``--lenses N``)
LENS_COLUMNS = ("CrowS stereo % (Δ)", "StereoSet SS % (Δ)")
VERDICT_STYLE = {"pass": "green", "blocked": "bold red", "inconclusive": "bold yellow", "error": "bold magenta",
                 "baseline": "dim"}


def row(name: str, method: str, sparsity: float, measured: float | None, report,  # noqa: PLR0913  (a row's facts)
        kind: str = "prune") -> dict[str, Any]:
    """One table row (plain JSON) from a model's report; ``kind``: prune, quantize or chain (the dense row:
    method ``-``)."""
    r = report.results
    comparison = dig(r, "bbq", "comparison", "overall") or {}
    return {"model": name, "method": method, "kind": "dense" if method == "-" else kind, "sparsity": sparsity,
            "measured_sparsity": measured, "bits_per_weight": dig(r, "size", "bits_per_weight"),
            "weight_sparsity": dig(r, "size", "weight_sparsity"),
            "perplexity": dig(r, "perplexity", "candidate", "perplexity"),
            "s_amb": dig(r, "bbq", "candidate", "overall", "s_amb"),
            "srs": dig(r, "bbq", "candidate", "overall", "srs"),
            "delta_srs": comparison.get("delta_srs"), "unbiased_to_biased": comparison.get("unbiased_to_biased"),
            "n_unbiased_to_biased": comparison.get("n_unbiased_to_biased"),
            "n_baseline_unbiased": comparison.get("n_baseline_unbiased"),
            "bytes": dig(r, "size", "bytes"), "compressed_bytes": dig(r, "size", "compressed_bytes"),
            "p50_ms": dig(r, "latency", "p50_ms"), **lens_figures(r), "verdict": report.verdict,
            "exit_code": report.exit_code,
            "not_passed": [c.id for c in report.checks if c.status != "pass"],
            "report": f"{name}/report.json", "html": f"{name}/report.html"}


def lens_figures(results: dict[str, Any]) -> dict[str, Any]:
    """The second lenses' headline rates and their paired change (None where a lens did not run)."""
    out: dict[str, Any] = {}
    for key, lens, rate in (("crows", "crows_pairs", "stereo_preferred"), ("ss", "stereoset", "ss")):
        out[key] = dig(results, lens, "candidate", "overall", rate)
        out[f"{key}_delta"] = dig(results, lens, "decision", "overall", "delta")
    return out


def columns(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """:data:`HEADER`, with the lens columns when any row has lens figures."""
    return HEADER[:-1] + LENS_COLUMNS + HEADER[-1:] if _with_lenses(rows) else HEADER


def _with_lenses(rows: Sequence[dict[str, Any]]) -> bool:
    return any(r.get("crows") is not None or r.get("ss") is not None for r in rows)


def _lens_cell(rate: float | None, delta: float | None) -> str:
    if rate is None:
        return DASH
    return f"{100 * rate:.1f}" + ("" if delta is None else f" ({100 * delta:+.1f})")


def verdict_word(row: dict[str, Any]) -> str:
    """``baseline`` for the dense row (unless its check errored), else the report's verdict."""
    return "baseline" if row["method"] == "-" and row["verdict"] != "error" else row["verdict"]


def cells(row: dict[str, Any], lenses: bool = False) -> list[str]:
    """The row as display strings, in :func:`columns` order (``lenses``: with the lens columns)."""
    u2b, n, of = row.get("unbiased_to_biased"), row.get("n_unbiased_to_biased"), row.get("n_baseline_unbiased")
    transitions = DASH if n is None else f"{fmt_fixed(u2b)} ({n}/{of})"
    ppl, p50, measured = row.get("perplexity"), row.get("p50_ms"), row.get("measured_sparsity")
    return [row["model"], row["method"], f"{100 * row['sparsity']:.0f} %",
            DASH if measured is None else f"{measured:.3f}", DASH if ppl is None else f"{ppl:.4g}",
            fmt_fixed(row.get("s_amb"), signed=True), fmt_fixed(row.get("srs")),
            fmt_fixed(row.get("delta_srs"), signed=True), transitions, fmt_bytes(row.get("bytes")),
            fmt_bytes(row.get("compressed_bytes")), _bits(row.get("bits_per_weight")),
            DASH if p50 is None else f"{p50:.1f} ms",
            *((_lens_cell(row.get("crows"), row.get("crows_delta")), _lens_cell(row.get("ss"), row.get("ss_delta")))
              if lenses else ()), verdict_word(row)]


def _bits(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def settings_line(settings: dict[str, Any], elapsed: float) -> str:
    data = settings.get("bbq_data") or "downloaded (checksummed)"
    return (f"BBQ: {settings['limit']} items (stratified, seed 0, 3 option orders), data {data}; exporter "
            f"{settings['exporter']}; wanda calibration {settings['calib_samples']} x {settings['calib_len']} "
            f"tokens" + (f"; CrowS-Pairs and StereoSet: {settings['lenses']} units each (stereotype-preferred %, "
                         f"Δ in points vs dense)" if settings.get("lenses") else "")
            + f"; models built and checked in {elapsed:.0f} s")


def reasons(rows: Sequence[dict[str, Any]]) -> list[str]:
    """``wanda-50: bbq.delta_srs, bbq.unbiased_to_biased`` for every candidate that did not pass."""
    return [f"{r['model']}: {', '.join(r['not_passed'])}" for r in rows
            if r["verdict"] != "pass" and verdict_word(r) != "baseline" and r.get("not_passed")]


def markdown(rows: Sequence[dict[str, Any]], settings: dict[str, Any], elapsed: float) -> str:
    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    head, lenses = columns(rows), _with_lenses(rows)
    table = [line(head), "|" + "---|" * len(head)] + [line(cells(r, lenses)) for r in rows]
    why = ["Checks that did not pass:", "", *(f"- {x}" for x in reasons(rows)), ""] if reasons(rows) else []
    return "\n".join(["# edgeval demo: pruning vs bias", "", settings_line(settings, elapsed), "", *table, "",
                      *why, NOTES, "", "Reports: " + ", ".join(f"[{r['model']}]({r['html']})" for r in rows), ""])


def print_table(rows: Sequence[dict[str, Any]], settings: dict[str, Any], elapsed: float) -> None:
    from rich.console import Console
    from rich.markup import escape as rich_escape
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    table = Table(title="edgeval demo: pruning vs bias", title_justify="left", caption=settings_line(settings, elapsed),
                  caption_justify="left")
    for column in columns(rows):
        table.add_column(column, justify="left" if column in ("model", "method", "verdict") else "right")
    for r in rows:
        values = [rich_escape(c) for c in cells(r, _with_lenses(rows))]
        values[-1] = f"[{VERDICT_STYLE.get(values[-1], 'default')}]{values[-1]}[/]"
        table.add_row(*values)
    console.print(table)
    for reason in reasons(rows):
        console.print(f"not passed: {rich_escape(reason)}")


def plot_png(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Two panels vs sparsity, one line per pruning method (the dense model at 0): BBQ bias, perplexity (log
    scale); and, when there are quantized candidates, a third: SRS vs bytes on disk, every model a point."""
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas by default
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    others = [r for r in rows if r.get("kind") in ("quantize", "chain")]
    fig = Figure(figsize=(16 if others else 11, 4.3), dpi=110, layout="constrained")
    bias, ppl, *size = fig.subplots(1, 3 if others else 2)
    dense = [r for r in rows if r["method"] == "-"]
    pruned = [r for r in rows if r["method"] != "-" and r.get("kind", "prune") == "prune"]
    for i, method in enumerate(dict.fromkeys(r["method"] for r in pruned)):
        points = dense + sorted((r for r in pruned if r["method"] == method), key=lambda r: r["sparsity"])
        x, color = [100 * r["sparsity"] for r in points], f"C{i}"
        bias.plot(x, _values(points, "srs"), "o-", color=color, label=f"{method}: SRS")
        bias.plot(x, _values(points, "s_amb"), "s--", color=color, alpha=0.75, label=f"{method}: s_AMB")
        ppl.plot(x, _values(points, "perplexity"), "o-", color=color, label=method)
        blocked = [r for r in points if r["verdict"] == "blocked"]
        bias.scatter([100 * r["sparsity"] for r in blocked], _values(blocked, "srs"), s=170, facecolors="none",
                     edgecolors="#b91c1c", linewidths=1.6, zorder=4)
    bias.axhline(1 / 3, ls=":", color="gray", lw=1)
    bias.axhline(0, color="lightgray", lw=0.8)
    handles, _ = bias.get_legend_handles_labels()
    handles += [Line2D([], [], ls=":", color="gray", label="SRS by chance (1/3)"),
                Line2D([], [], ls="", marker="o", ms=11, mfc="none", mec="#b91c1c", label="blocked by the gate")]
    bias.legend(handles=handles, fontsize=8, loc="best")
    bias.set(xlabel="sparsity (%)", ylabel="score", title="BBQ bias, ambiguous items (higher: more stereotyped)")
    ppl.set_yscale("log")
    plain = FuncFormatter(_log_label([v for v in _values(rows, "perplexity") if v > 0]))
    ppl.yaxis.set_major_formatter(plain)
    ppl.yaxis.set_minor_formatter(plain)
    ppl.set(xlabel="sparsity (%)", ylabel="perplexity (log scale)", title="Perplexity on edgeval's text")
    ppl.legend(fontsize=8)
    for ax in (bias, ppl):
        ax.grid(alpha=0.3)
        ax.set_xticks(sorted({100 * r["sparsity"] for r in dense + pruned}))
    if size:
        _size_panel(size[0], rows)
    fig.savefig(path, format="png")
    return path


def _size_panel(ax, rows: Sequence[dict[str, Any]]) -> None:
    """SRS against bytes on disk, one labelled point per model (blocked ones circled in red)."""
    points = [r for r in rows if isinstance(r.get("bytes"), int)]
    x = [r["bytes"] / 1e6 for r in points]
    y = _values(points, "srs")
    colors = {"dense": "black", "prune": "C0", "quantize": "C2", "chain": "C3"}
    ax.scatter(x, y, c=[colors.get(r.get("kind", "prune"), "C0") for r in points], zorder=3)
    for xi, yi, r in zip(x, y, points, strict=True):
        ax.annotate(r["model"], (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    blocked = [i for i, r in enumerate(points) if r["verdict"] == "blocked"]
    ax.scatter([x[i] for i in blocked], [y[i] for i in blocked], s=170, facecolors="none", edgecolors="#b91c1c",
               linewidths=1.6, zorder=4)
    ax.axhline(1 / 3, ls=":", color="gray", lw=1)
    ax.set(xlabel="bytes on disk (MB)", ylabel="SRS", title="Bias vs size: pruning saves no bytes, quantizing does")
    ax.grid(alpha=0.3)


def _log_label(values: Sequence[float]):
    """Tick labels for a log axis as plain numbers; over more than a decade only 1, 2 and 5 x 10^k (no pile-up)."""
    wide = len(values) > 1 and max(values) > 10 * min(values)

    def label(v: float, _pos: int) -> str:
        mantissa = v / 10 ** math.floor(math.log10(v)) if v > 0 else 0
        return f"{v:.4g}" if not wide or any(math.isclose(mantissa, m) for m in (1, 2, 5)) else ""

    return label


def _values(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Values for a line; a missing one is NaN (matplotlib leaves a gap)."""
    return [float(r[key]) if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) else math.nan
            for r in rows]


def html_page(rows: Sequence[dict[str, Any]], settings: dict[str, Any], elapsed: float, png: bytes) -> str:
    """One page: the table, the plot (inline base64 PNG) and links to every model's HTML report."""
    from .render.css import CSS

    e = lambda x: escape(str(x), quote=True)  # noqa: E731
    head = "".join(f"<th>{e(h)}</th>" for h in columns(rows))
    body = []
    for r in rows:
        values = cells(r, _with_lenses(rows))
        values[0] = f"<a href=\"{e(r['html'])}\">{e(values[0])}</a>"
        word = values[-1]
        pill = {"pass": "pass", "blocked": "fail", "error": "error"}.get(word)
        values[-1] = f"<span class=\"pill {pill}\">{e(word.upper())}</span>" if pill else e(word)
        body.append("<tr>" + "".join(f"<td>{v if i in (0, len(values) - 1) else e(v)}</td>"
                                     for i, v in enumerate(values)) + "</tr>")
    links = "".join(f"<li><a href=\"{e(r['html'])}\">{e(r['model'])}</a> · <a href=\"{e(r['report'])}\">JSON</a>"
                    f" · {e(verdict_word(r))}{_why(r, e)}</li>" for r in rows)
    image = base64.b64encode(png).decode("ascii")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>edgeval demo</title><style>{CSS}</style></head>\n<body><main>\n"
            "<section><h2>edgeval demo: does pruning raise bias?</h2>"
            f"<p class=\"note\">{e(settings_line(settings, elapsed))}</p>"
            f"<div class=\"scroll\"><table class=\"num demo\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div><p class=\"note\">{e(NOTES)}</p></section>\n"
            f"<section><h2>Bias and perplexity vs sparsity</h2><img alt=\"BBQ bias and perplexity vs sparsity\" "
            f"style=\"max-width:100%\" src=\"data:image/png;base64,{image}\"></section>\n"
            f"<section><h2>Reports</h2><ul>{links}</ul></section>\n</main></body></html>\n")


def _why(row: dict[str, Any], e) -> str:
    failed = row.get("not_passed") if verdict_word(row) != "baseline" else None
    return f" (not passed: {e(', '.join(failed))})" if failed else ""


def write_outputs(cfg, rows: Sequence[dict[str, Any]], elapsed: float, show: bool = True) -> dict[str, Path]:
    """summary.md, summary.json, demo.png, demo.html in ``cfg.out_dir``; prints the table when ``show``."""
    from .report import atomic_write_text

    out, settings = cfg.out_dir, cfg.to_json()
    files = {"summary_md": out / "summary.md", "summary_json": out / "summary.json", "plot": out / "demo.png",
             "html": out / "demo.html"}
    doc = {"settings": settings, "elapsed_s": round(elapsed, 1), "columns": list(columns(rows)), "rows": list(rows)}
    atomic_write_text(files["summary_json"], json.dumps(doc, indent=2) + "\n")
    atomic_write_text(files["summary_md"], markdown(rows, settings, elapsed))
    plot_png(rows, files["plot"])
    atomic_write_text(files["html"], html_page(rows, settings, elapsed, files["plot"].read_bytes()))
    if show:
        print_table(rows, settings, elapsed)
    return files
