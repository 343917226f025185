"""``edgeval report REPORT.json --format {markdown,junit,html} [--out FILE]``: render a saved report."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import BadInputError
from ..render import FORMATS, render
from ..report import Report, atomic_write_text
from .app import cli


@cli.command("report")
@click.argument("report_path", metavar="REPORT.json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="markdown", show_default=True,
              help="markdown (CI step summary), junit (JUnit XML for CI test views) or html (self-contained page).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (atomically) instead of to stdout.")
def report_cmd(report_path: Path, fmt: str, out: Path | None) -> None:
    """Render a JSON report written by `edgeval check`. An unreadable or invalid report (or an --out that cannot
    be written) exits 3.

    \b
    Examples:
      edgeval report edgeval-report.json --format markdown >> "$GITHUB_STEP_SUMMARY"
      edgeval report edgeval-report.json --format junit --out edgeval-junit.xml
      edgeval report edgeval-report.json --format html --out edgeval-report.html
    """
    text = render(Report.load(report_path), fmt)  # BadInputError -> one line, exit 3 (cli.main)
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        atomic_write_text(out, text)
    except OSError as exc:
        raise BadInputError(f"cannot write: {exc.strerror or exc}", path=out) from None
    click.echo(f"edgeval: wrote {out}", err=True)
