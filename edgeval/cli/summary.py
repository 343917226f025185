"""The short human summary printed by ``edgeval check``: a rich table of checks, the messages of the checks that
did not pass, the validators' warnings (``warnings(results)``, e.g. BBQ's weak signal), and the verdict."""
from __future__ import annotations

from pathlib import Path

from ..numbers import fmt_value
from ..render.views import validator_views
from ..report import Report

_STYLE = {"pass": "green", "fail": "bold red", "error": "bold magenta", "blocked": "bold red",
          "inconclusive": "bold yellow"}


def print_summary(report: Report, written_to: Path | None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 110)
    table = Table(title=f"edgeval check: {Path(report.candidate['path']).name}", title_justify="left")
    for column in ("check", "status", "value", "baseline", "threshold"):
        table.add_column(column, no_wrap=column != "check")
    for c in report.checks:
        table.add_row(c.id, f"[{_STYLE[c.status]}]{c.status}[/]", fmt_value(c.value), fmt_value(c.baseline_value),
                      fmt_value(c.threshold))
    if report.checks:
        console.print(table)
    for c in report.checks:
        if c.status != "pass":
            console.print(f"[{_STYLE[c.status]}]{c.status}[/] {c.id}: {escape(c.message)}")
    for error in report.errors:
        console.print(f"[bold magenta]error[/] ({error.source}): {escape(error.message)}")
    for view in validator_views(report):
        for sentence in view.sentences("warnings"):
            console.print(f"[bold yellow]warning[/] {escape(view.name)}: {escape(sentence)}")
    style = _STYLE.get(report.verdict, "green")
    where = f" · report: {written_to}" if written_to else " · report NOT written"
    console.print(f"verdict: [{style}]{report.verdict.upper()}[/] (exit {report.exit_code}){where}")
