"""Render a :class:`~edgeval.report.Report` for people and CI systems: Markdown, JUnit XML or an HTML page.

``render(report, fmt)`` is the one entry point (``edgeval report REPORT.json --format ...`` on the command line).
Renderers read ``report.results`` defensively: a validator that did not run, or a key an older report lacks, is
skipped, never an error. The JSON report stays the source of truth; these are views of it.

- ``markdown``: for a CI step summary (``$GITHUB_STEP_SUMMARY``): verdict, checks table, and what each validator
  says of its results (BBQ's per-category table, size and latency one-liners: the validators' own views, see
  :mod:`.views`). Plain status words (PASS / FAIL / ERROR), no emoji.
- ``junit``: one ``<testsuite name="edgeval">`` with one ``<testcase>`` per check (and per report-level error);
  a report without checks gets an erroring testcase, so that a CI that reads JUnit fails closed too.
- ``html``: one page, inline CSS and SVG charts, no scripts and no external resources (see :mod:`.html`).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..report import Report

FORMATS = ("markdown", "junit", "html")


def render(report: Report | Mapping[str, Any], fmt: str) -> str:
    """The report as ``fmt`` (one of :data:`FORMATS`). A mapping is read with :meth:`Report.from_json` first."""
    if not isinstance(report, Report):
        report = Report.from_json(dict(report))
    if fmt == "markdown":
        from .markdown import to_markdown

        return to_markdown(report)
    if fmt == "junit":
        from .junit import to_junit

        return to_junit(report)
    if fmt == "html":
        from .html import to_html

        return to_html(report)
    raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")


__all__ = ["render", "FORMATS"]
