"""A self-contained HTML page: verdict banner, the checks that did not pass, a section per validator (its own
``html`` view, e.g. BBQ's bias charts and table, else its ``describe`` sentences: see :mod:`.views`), every check,
the environment. Inline CSS and SVG only: no scripts, no fonts, no external resources; every text is escaped.
"""
from __future__ import annotations

from html import escape
from typing import Any, Mapping, Sequence

from ..report import Check, Report
from .common import STATUS_WORDS, VERDICT_WORDS, artifact_name, fmt_bytes, fmt_value, num, short_sha, verdict_sentence
from .css import CSS
from .svg import Series
from .views import ValidatorView, validator_views

BASE_COLOR, CAND_COLOR = "#94a3b8", "#4f46e5"


def e(x: Any) -> str:
    """Escaped text (quotes too, so it is safe in attributes)."""
    return escape("" if x is None else str(x), quote=True)


def to_html(report: Report) -> str:
    """The whole page as one string."""
    word = VERDICT_WORDS.get(report.verdict, report.verdict.upper())
    body = [_banner(report, word), _errors(report), _attention(report),
            *(_validator_section(view) for view in validator_views(report)), _all_checks(report), _footer(report)]
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>edgeval {e(word)}: {e(artifact_name(report.candidate))}</title>"
            f"<style>{CSS}</style></head>\n<body><main>\n" + "\n".join(b for b in body if b)
            + "\n</main></body></html>\n")


# -- page parts --------------------------------------------------------------------------------------------
def _artifact_line(role: str, artifact: Mapping[str, Any] | None) -> str:
    if not artifact:
        return f"<div><span class=\"k\">{role}</span> none</div>"
    fmt = f" · {e(artifact.get('format'))}" if artifact.get("format") else ""
    size = f" · {e(fmt_bytes(artifact.get('bytes')))}" if artifact.get("bytes") is not None else ""
    return (f"<div><span class=\"k\">{role}</span> <code title=\"{e(artifact.get('path'))}\">"
            f"{e(artifact_name(artifact))}</code>{fmt}{size} · sha256 <code>{e(short_sha(artifact))}</code></div>")


def _banner(report: Report, word: str) -> str:
    duration = report.run.get("duration_s")
    meta = f"edgeval {e(report.tool_version)} · {e(report.created_at)}" + (
        f" · run {float(duration):.1f} s" if isinstance(duration, (int, float)) else "")
    return (f"<header class=\"banner {e(report.verdict)}\"><div class=\"verdict\">{e(word)}</div>"
            f"<div class=\"summary\"><div class=\"sentence\">{e(verdict_sentence(report))} · exit "
            f"{report.exit_code}</div>{_artifact_line('candidate', report.candidate)}"
            f"{_artifact_line('baseline', report.baseline)}<div class=\"meta\">{meta}</div></div></header>")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str, row_cls: Sequence[str] = ()) -> str:
    """A table from already-escaped cells."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(f"<tr class=\"{row_cls[i] if i < len(row_cls) else ''}\">" + "".join(f"<td>{c}</td>" for c in r)
                   + "</tr>" for i, r in enumerate(rows))
    return f"<table class=\"{cls}\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _check_rows(checks: Sequence[Check]) -> str:
    rows = [[f"<span class=\"pill {e(c.status)}\">{e(STATUS_WORDS.get(c.status, c.status))}</span>",
             f"<code>{e(c.id)}</code>", e(fmt_value(c.value)), e(fmt_value(c.baseline_value)),
             e(fmt_value(c.threshold)), e(c.message)] for c in checks]
    rows_html = table(["status", "check", "value", "baseline", "threshold", "message"], rows, "checks",
                      [f"st-{c.status}" for c in checks])
    return f"<div class=\"scroll\">{rows_html}</div>"


def _attention(report: Report) -> str:
    """The checks that did not pass, first on the page (the reasons for the verdict)."""
    if not report.checks:
        return "<section><h2>Checks</h2><p class=\"warn\">No check ran: the verdict is ERROR.</p></section>"
    bad = [c for c in report.checks if c.status != "pass"]
    if not bad:
        return ""
    return f"<section><h2>Checks that did not pass ({len(bad)})</h2>{_check_rows(bad)}</section>"


def _all_checks(report: Report) -> str:
    if not report.checks:
        return ""
    return (f"<section><details open><summary><h2>All checks ({len(report.checks)})</h2></summary>"
            f"{_check_rows(report.checks)}</details></section>")


def _errors(report: Report) -> str:
    if not report.errors:
        return ""
    items = "".join(f"<li><code>{e(x.source)}</code> <span class=\"pill error\">{e(x.kind)}</span> {e(x.message)}"
                    "</li>" for x in report.errors)
    return f"<section><h2>Input errors</h2><ul class=\"errors\">{items}</ul></section>"


def card(title: str, chart: str, caption: str = "") -> str:
    """A chart (already-built SVG) in a titled card, with an optional caption."""
    cap = f"<p class=\"caption\">{e(caption)}</p>" if caption else ""
    return f"<figure class=\"card\"><figcaption>{e(title)}</figcaption>{chart}{cap}</figure>"


# -- the validators' own sections -------------------------------------------------------------------------------
def section(title: str, body: str, cards: Sequence[str] = ()) -> str:
    """A ``<section>`` with a heading, already-escaped ``body`` and a grid of chart cards."""
    grid = f"<div class=\"grid\">{''.join(cards)}</div>" if cards else ""
    return f"<section><h2>{e(title)}</h2>{body}{grid}</section>"


def pair_series(r: Mapping[str, Any], keys: Sequence[str]) -> list[Series]:
    """Baseline (``baseline_<key>``) and candidate (``<key>``) series of ``r``, those with any value."""
    series = []
    for role, prefix, color in (("baseline", "baseline_", BASE_COLOR), ("candidate", "", CAND_COLOR)):
        values = [num(r.get(f"{prefix}{k}")) for k in keys]
        if any(v is not None for v in values):
            series.append(Series(role, values, color))
    return series


def _validator_section(view: ValidatorView) -> str:
    """The validator's own ``html`` section, else its warnings and sentences under its title (else nothing)."""
    rich = view.method("html")
    if rich is not None:
        try:
            return str(rich(view.results) or "")
        except Exception as exc:  # noqa: BLE001  (a plugin's view must not break the page)
            return section(view.title, f"<p class=\"warn\">{e(f'{type(exc).__name__}: {exc}')}</p>")
    warnings = "".join(f"<p class=\"headline\"><b>{e(s)}</b></p>" for s in view.sentences("warnings"))
    text = "".join(f"<p>{e(s)}</p>" for s in view.sentences())
    return section(view.title, warnings + text) if warnings or text else ""


def _footer(report: Report) -> str:
    env, run = report.environment, report.run
    items = [("python", env.get("python")), ("platform", env.get("platform")), ("cpu", env.get("cpu")),
             ("cpu count", env.get("cpu_count")), ("threads", env.get("threads")),
             ("validators", ", ".join(map(str, run.get("validators") or []))), ("seed", run.get("seed")),
             ("policy", run.get("policy_source"))]
    cells = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items if v not in (None, ""))
    return f"<footer><h2>Environment</h2><dl>{cells}</dl></footer>"


__all__ = ["to_html", "e", "card", "table", "section", "pair_series", "BASE_COLOR", "CAND_COLOR"]
