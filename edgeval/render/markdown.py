"""Markdown for a CI step summary (``edgeval report r.json --format markdown >> "$GITHUB_STEP_SUMMARY"``).

Layout: verdict line, the checks that did not pass, input errors, a part per validator (its own ``markdown``
lines, e.g. BBQ's per-category table, else ``**Title:**`` and its ``describe`` sentences: see :mod:`.views`), then
every check (inside ``<details>`` when there are many, so the summary stays short; GitHub renders it).
"""
from __future__ import annotations

from typing import Any, Sequence

from ..report import Check, Report
from .common import STATUS_WORDS, VERDICT_WORDS, artifact_name, fmt_value, short_sha, verdict_sentence
from .views import ValidatorView, validator_views

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


def _validator_lines(view: ValidatorView) -> list[str]:
    """The validator's own ``markdown`` lines, else its warnings and ``**Title:** sentences`` (else nothing)."""
    rich = view.method("markdown")
    if rich is not None:
        try:
            return [str(line) for line in rich(view.results) or []]
        except Exception as exc:  # noqa: BLE001  (a plugin's view must not break the summary)
            return ["", f"**{md_cell(view.title)}:** {md_cell(f'{type(exc).__name__}: {exc}')}"]
    warnings = [line for sentence in view.sentences("warnings") for line in ("", f"> **{md_cell(sentence)}**")]
    text = " ".join(view.sentences())
    return warnings + (["", f"**{md_cell(view.title)}:** {md_cell(text)}"] if text else [])


def to_markdown(report: Report) -> str:
    """A CI step summary: verdict, failing checks, input errors, what each validator says, all checks."""
    sections = [line for view in validator_views(report) for line in _validator_lines(view)]
    lines = (_headline(report) + _problems(report) + sections + _all_checks(report.checks)
             + ["", f"<sub>edgeval {md_cell(report.tool_version)} · {md_cell(report.created_at)}</sub>"])
    return "\n".join(lines) + "\n"
