"""A self-contained HTML page: verdict banner, checks table, BBQ bias and answer-distribution charts, latency and
size charts. Inline CSS and SVG only: no scripts, no fonts, no external resources; every text is escaped.
"""
from __future__ import annotations

from html import escape
from typing import Any, Mapping, Sequence

from ..report import Check, Report
from .common import (
    BIAS_HEADER,
    BIAS_NOTE,
    STATUS_WORDS,
    VERDICT_WORDS,
    BiasRow,
    artifact_name,
    base_to_cand,
    bias_rows,
    clean,
    dig,
    fmt_bytes,
    fmt_ci,
    fmt_fixed,
    fmt_ms,
    fmt_p,
    fmt_pct,
    fmt_value,
    latency_sentence,
    macro_sentence,
    num,
    short_sha,
    signal_sentences,
    size_sentence,
    verdict_sentence,
    yes_no,
)
from .css import CSS
from .svg import RefLine, Series, hbar_chart

BASE_COLOR, CAND_COLOR = "#94a3b8", "#4f46e5"


def e(x: Any) -> str:
    """Escaped text (quotes too, so it is safe in attributes)."""
    return escape("" if x is None else str(x), quote=True)


def to_html(report: Report) -> str:
    """The whole page as one string."""
    word = VERDICT_WORDS.get(report.verdict, report.verdict.upper())
    results = report.results
    body = [_banner(report, word), _errors(report), _attention(report), _bbq(results.get("bbq") or {}),
            _performance(results), _all_checks(report),
            _footer(report)]
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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str, row_cls: Sequence[str] = ()) -> str:
    """A table from already-escaped cells."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(f"<tr class=\"{row_cls[i] if i < len(row_cls) else ''}\">" + "".join(f"<td>{c}</td>" for c in r)
                   + "</tr>" for i, r in enumerate(rows))
    return f"<table class=\"{cls}\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _check_rows(checks: Sequence[Check]) -> str:
    rows = [[f"<span class=\"pill {e(c.status)}\">{e(STATUS_WORDS.get(c.status, c.status))}</span>",
             f"<code>{e(c.id)}</code>", e(fmt_value(c.value)), e(fmt_value(c.baseline_value)),
             e(fmt_value(c.threshold)), e(c.message)] for c in checks]
    table = _table(["status", "check", "value", "baseline", "threshold", "message"], rows, "checks",
                   [f"st-{c.status}" for c in checks])
    return f"<div class=\"scroll\">{table}</div>"


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


def _card(title: str, chart: str, caption: str = "") -> str:
    cap = f"<p class=\"caption\">{e(caption)}</p>" if caption else ""
    return f"<figure class=\"card\"><figcaption>{e(title)}</figcaption>{chart}{cap}</figure>"


# -- BBQ -------------------------------------------------------------------------------------------------
def _bias_series(rows: Sequence[BiasRow], metric: str) -> list[Series]:
    pairs = [getattr(r, metric) for r in rows]
    cis = [getattr(r, f"{metric}_ci") for r in rows]
    whiskers = [(p[0] + lo, p[0] + hi) if None not in (p[0], lo, hi) else None
                for p, (lo, hi) in zip(pairs, cis, strict=True)]
    series = [Series("candidate", [p[1] for p in pairs], CAND_COLOR, whiskers)]
    if any(p[0] is not None for p in pairs):
        series.insert(0, Series("baseline", [p[0] for p in pairs], BASE_COLOR))
    return series


def _bias_table(rows: Sequence[BiasRow]) -> str:
    body = [[e(r.scope), e(fmt_value(r.n_ambig)), e(base_to_cand(r.srs)),
             e(f"{fmt_fixed(r.delta_srs, True)} {fmt_ci(*r.srs_ci)}"), e(base_to_cand(r.s_amb)),
             e(f"{fmt_fixed(r.delta_s_amb, True)} {fmt_ci(*r.s_amb_ci)}"), e(fmt_fixed(r.cohens_h)),
             e(fmt_p(r.p_holm)), e(yes_no(r.significant))] for r in rows]
    return _table(BIAS_HEADER, body, "num", ["sig" if r.significant else "" for r in rows])


def _shares(block: Mapping[str, Any] | None, keys: Sequence[str]) -> list[float | None]:
    counts = [num(block.get(k)) if isinstance(block, Mapping) else None for k in keys]
    if any(c is None or c < 0 for c in counts) or not sum(counts):
        return [None] * len(keys)
    return [c / sum(counts) for c in counts]


def _distribution(bbq: Mapping[str, Any]) -> str:
    cards = []
    for title, keys, groups in (("Shown letter chosen (all orders)", ("n_letter_a", "n_letter_b", "n_letter_c"),
                                 ["A", "B", "C"]),
                                ("Original option chosen", ("n_opt0", "n_opt1", "n_opt2"),
                                 ["option 0", "option 1", "option 2"])):
        series = [Series(role, _shares(dig(bbq, role, "overall"), keys), color)
                  for role, color in (("baseline", BASE_COLOR), ("candidate", CAND_COLOR)) if dig(bbq, role, "overall")]
        if any(v is not None for s in series for v in s.values):
            cards.append(_card(title, hbar_chart(groups, series, fmt=lambda v: f"{100 * clean(v):.0f} %", label=title,
                                                 refs=[RefLine(1 / 3, "uniform")], domain=(0, 1))))
    if not cards:
        return ""
    return ("<h3>Answer distribution</h3><p class=\"note\">A model that prefers a position rather than an answer "
            "shows a skewed letter distribution; read the bias scores next to it.</p>"
            f"<div class=\"grid\">{''.join(cards)}</div>")


def _bbq(bbq: Mapping[str, Any]) -> str:
    rows = bias_rows(bbq)
    if not rows:
        return ""
    groups = [r.scope for r in rows]
    f3 = fmt_fixed
    has_ci = any(None not in r.srs_ci for r in rows)
    cap = "Whiskers: baseline + the 95 % paired bootstrap CI of Δ (candidate − baseline)." if has_ci else ""
    ticks = lambda v: f"{v:g}"  # noqa: E731
    charts = [_card("SRS: stereotyped share of valid ambiguous answers",
                    hbar_chart(groups, _bias_series(rows, "srs"), fmt=f3, tick_fmt=ticks, label="SRS by category",
                               refs=[RefLine(1 / 3, "chance ⅓")]), cap),
              _card("s_AMB: ambiguous-context bias score (0 = unbiased)",
                    hbar_chart(groups, _bias_series(rows, "s_amb"), fmt=f3, tick_fmt=ticks,
                               label="s_AMB by category"), cap)]
    cats = bbq.get("categories") if isinstance(bbq.get("categories"), list) else [r.scope for r in rows[1:]]
    intro = f"{len(cats)} categories evaluated: {', '.join(map(str, cats))}" + (
        f"; {bbq['n_items']} items." if num(bbq.get("n_items")) else ".")
    macro = macro_sentence(bbq)
    warnings = "".join(f"<p class=\"headline\"><b>{e(s)}</b></p>" for s in signal_sentences(bbq))
    return (f"<section><h2>BBQ bias</h2><p>{e(intro)}</p>" + warnings
            + (f"<p class=\"headline\">{e(macro)}</p>" if macro else "")
            + f"<div class=\"grid\">{''.join(charts)}</div><div class=\"scroll\">{_bias_table(rows)}</div>"
            + f"<p class=\"note\">{e(BIAS_NOTE)}</p>"
            + _distribution(bbq) + "</section>")


# -- latency and size --------------------------------------------------------------------------------------
def _pair_series(r: Mapping[str, Any], keys: Sequence[str]) -> list[Series]:
    series = []
    for role, prefix, color in (("baseline", "baseline_", BASE_COLOR), ("candidate", "", CAND_COLOR)):
        values = [num(r.get(f"{prefix}{k}")) for k in keys]
        if any(v is not None for v in values):
            series.append(Series(role, values, color))
    return series


def _latency(lat: Mapping[str, Any]) -> tuple[str, str]:
    """(sentence, chart card) for the latency results; empty strings when there are none."""
    series = _pair_series(lat, ("p50_ms", "p90_ms", "p99_ms"))
    if not series:
        return "", ""
    chart = hbar_chart(["p50", "p90", "p99"], series, fmt=fmt_ms, tick_fmt=lambda v: f"{v:g} ms",
                       label="latency percentiles")
    return (f"<p><b>Latency</b> {e(latency_sentence(lat))}</p>",
            _card("Forward latency (lower is better)", chart))


def _size(size: Mapping[str, Any]) -> tuple[str, str]:
    """(sentences, chart card) for the size results; empty strings when there are none."""
    series = _pair_series(size, ("bytes", "compressed_bytes", "sparse_encoded_bytes"))
    if not series:
        return "", ""
    chart = hbar_chart(["on disk", "zlib-compressed", "sparse-encoded"], series, fmt=fmt_bytes, label="size")
    roles = (("baseline", "baseline_weight_sparsity"), ("candidate", "weight_sparsity"))
    sparsity = [f"{role} {fmt_pct(size.get(k))}" for role, k in roles if size.get(k) is not None]
    spars = f" Measured weight sparsity: {e(', '.join(sparsity))}." if sparsity else ""
    summary = size.get("summary") if isinstance(size.get("summary"), str) else size_sentence(size)
    return f"<p><b>Size</b> {e(summary)}.{spars}</p>", _card("Bytes (lower is better)", chart)


def _performance(results: Mapping[str, Any]) -> str:
    """Latency and size side by side."""
    parts = [_latency(results.get("latency") or {}), _size(results.get("size") or {})]
    if not any(text for text, _ in parts):
        return ""
    return ("<section><h2>Latency and size</h2>" + "".join(text for text, _ in parts)
            + f"<div class=\"grid\">{''.join(card for _, card in parts)}</div></section>")


def _footer(report: Report) -> str:
    env, run = report.environment, report.run
    items = [("python", env.get("python")), ("platform", env.get("platform")), ("cpu", env.get("cpu")),
             ("cpu count", env.get("cpu_count")), ("threads", env.get("threads")),
             ("validators", ", ".join(map(str, run.get("validators") or []))), ("seed", run.get("seed")),
             ("policy", run.get("policy_source"))]
    cells = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items if v not in (None, ""))
    return f"<footer><h2>Environment</h2><dl>{cells}</dl></footer>"


__all__ = ["to_html"]
