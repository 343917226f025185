"""The ``edgeval`` command. Thin click commands over the public API; :func:`main` is the only place that exits
(commands return their exit code, or None for 0, or raise an :class:`~edgeval.errors.EdgevalError`).

Exit codes (also in every report's ``exit_code``):

\b
  0  pass      every check passed
  1  blocked   a check failed: do not deploy
  2  usage     bad command line (unknown option or validator)
  3  bad input unreadable / wrong-signature model, bad policy, missing tokenizer, bad data, NaN logits
  4  internal  a bug in edgeval, a plugin or a sink (the report is still written)
  5  inconclusive  too few items to claim pass or block (see policy bbq.on_inconclusive)
"""
from __future__ import annotations

import os
import sys

import click

from ..errors import EdgevalError, ExitCode
from .app import cli

DEBUG_ENV = "EDGEVAL_DEBUG"


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the click group, map exceptions to one line and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="edgeval", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("edgeval: aborted", err=True)
        code = int(ExitCode.INTERNAL)
    except click.UsageError as exc:  # one line, like every other error (click's own format takes four)
        where = exc.ctx.command_path if exc.ctx else "edgeval"
        click.echo(f"edgeval: usage error: {exc.format_message()} (see '{where} -h')", err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(f"edgeval: error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except EdgevalError as exc:
        click.echo(f"edgeval: error: {exc}", err=True)
        code = int(exc.exit_code)
    except Exception as exc:  # the one place where a bug becomes a line and exit 4, not a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        click.echo(f"edgeval: internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)",
                   err=True)
        code = int(ExitCode.INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["main", "cli"]
