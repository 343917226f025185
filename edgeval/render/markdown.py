"""Markdown for a CI step summary (``edgeval report r.json --format markdown >> "$GITHUB_STEP_SUMMARY"``).

Layout: verdict line, the checks that did not pass, input errors, the BBQ per-category table, size and latency
lines, then every check (inside ``<details>`` when there are many, so the summary stays short; GitHub renders it).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..report import Check, Report
from .common import (
    BIAS_HEADER,
    BIAS_NOTE,
    STATUS_WORDS,
    VERDICT_WORDS,
    artifact_name,
    base_to_cand,
    bias_rows,
    fmt_ci,
    fmt_fixed,
    fmt_p,
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

#: above this many checks, the full table is folded into <details>
FOLD_AFTER = 12


def md_cell(text: Any) -> str:
    """Safe inside a Markdown table cell: no pipes, no newlines, no raw HTML tags."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;")
    return s.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]


def checks_table(checks: Sequence[Check]) -> list[str]:
    rows = [[f"`{c.id}`", STATUS_WORDS.get(c.status, c.status.upper()), fmt_value(c.value),
             fmt_value(c.baseline_value), fmt_value(c.threshold), c.message] for c in checks]
    return md_table(["check", "status", "value", "baseline", "threshold", "message"], rows)


def _headline(report: Report) -> list[str]:
    word = VERDICT_WORDS.get(report.verdict, report.verdict.upper())
    cand, base = report.candidate, report.baseline
    models = f"Candidate `{md_cell(artifact_name(cand))}` (sha256 `{short_sha(cand)}`)" + (
        f" vs baseline `{md_cell(artifact_name(base))}` (sha256 `{short_sha(base)}`)." if base else ", no baseline.")
    return [f"### edgeval: {word}", "", f"**Verdict: {word}** (exit {report.exit_code}): "
            f"{md_cell(verdict_sentence(report))}.", "", models]


def _problems(report: Report) -> list[str]:
    bad = [c for c in report.checks if c.status != "pass"]
    out = (["", f"**Checks that did not pass ({len(bad)})**", ""] + checks_table(bad)) if bad else []
    if report.errors:
        out += ["", "**Input errors**", ""]
        out += [f"- `{md_cell(e.source)}` ({e.kind}): {md_cell(e.message)}" for e in report.errors]
    return out


def _all_checks(checks: Sequence[Check]) -> list[str]:
    if not checks:
        return ["", "No check ran: the verdict is ERROR."]
    if len(checks) <= FOLD_AFTER:
        return ["", f"**All checks ({len(checks)})**", ""] + checks_table(checks)
    return (["", f"<details><summary>All checks ({len(checks)})</summary>", ""] + checks_table(checks)
            + ["", "</details>"])


def _bbq(bbq: Mapping[str, Any]) -> list[str]:
    rows = bias_rows(bbq)
    if not rows:
        return []
    cats = bbq.get("categories") if isinstance(bbq.get("categories"), list) else [r.scope for r in rows[1:]]
    items = f", {bbq['n_items']} items" if num(bbq.get("n_items")) else ""
    head = f"**BBQ bias** ({len(cats)} categories{items})"
    table = [[r.scope, fmt_value(r.n_ambig), base_to_cand(r.srs), f"{fmt_fixed(r.delta_srs, True)} "
              f"{fmt_ci(*r.srs_ci)}".strip(), base_to_cand(r.s_amb),
              f"{fmt_fixed(r.delta_s_amb, True)} {fmt_ci(*r.s_amb_ci)}".strip(), fmt_fixed(r.cohens_h),
              fmt_p(r.p_holm), yes_no(r.significant)] for r in rows]
    macro = macro_sentence(bbq)
    warnings = [line for sentence in signal_sentences(bbq) for line in (f"> **{md_cell(sentence)}**", "")]
    return (["", head, ""] + warnings + md_table(BIAS_HEADER, table)
            + ["", f"<sub>{md_cell(BIAS_NOTE)}</sub>"] + (["", md_cell(macro) + "."] if macro else []))


def _one_liners(results: Mapping[str, Any]) -> list[str]:
    out = []
    for key, label, sentence in (("size", "Size", size_sentence), ("latency", "Latency", latency_sentence)):
        text = sentence(results.get(key) or {})
        if text:
            out += ["", f"**{label}:** {md_cell(text)}"]
    return out


def to_markdown(report: Report) -> str:
    """A CI step summary: verdict, failing checks, input errors, BBQ table, size and latency, all checks."""
    lines = (_headline(report) + _problems(report) + _bbq(report.results.get("bbq") or {})
             + _one_liners(report.results) + _all_checks(report.checks)
             + ["", f"<sub>edgeval {md_cell(report.tool_version)} · {md_cell(report.created_at)}</sub>"])
    return "\n".join(lines) + "\n"
