"""``edgeval check MODEL``: run the validators, print a summary, write the JSON report, exit with the verdict."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import click

from ..api import CheckOptions, check, outputs_for, prepare, publish
from ..errors import PolicyError, require
from ..policy import Policy, find_project_policy
from ..report import Report
from .app import EXIT_CODES_HELP, cli
from .options import PublishOptions, apply_settings, policy_option, policy_settings, publish_options, run_options
from .summary import print_summary


@cli.command("check", epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path), help="The dense/reference model to compare with.")
@policy_option("Policy file (YAML/JSON, or a pyproject.toml with [tool.edgeval]). Default: [tool.edgeval] of "
               "./pyproject.toml if present, else the built-in defaults (`edgeval policy --default`).")
@policy_settings
@run_options
@publish_options
def check_cmd(model: Path, baseline: Path | None, policy_path: Path | None, settings: tuple[tuple[str, Any], ...],
              options: CheckOptions, out: PublishOptions) -> int:
    """Gate MODEL (.onnx, .tflite, HF directory or .gguf) against --baseline and write the JSON report."""
    # first: a run that dies (or is refused) must leave neither an old BLESSED nor the previous run's report
    prepare(out.report, out.bless_dir, keep=list(options.inputs.values()), disabled_plugins=options.disabled_plugins,
            protect=[model, baseline, policy_path, options.tokenizer])
    if out.mlflow:
        require("mlflow", "mlflow", "--mlflow")  # fail before the run, not after the report is written
    policy = _policy(policy_path, settings, options.disabled_plugins)
    options = replace(options, outputs=outputs_for(out.report))
    progress = (lambda _m: None) if out.quiet else (lambda m: click.echo(m, err=True))
    report = check(model, baseline, policy, options=options, progress=progress)
    sinks = {"mlflow": _mlflow_sink} if out.mlflow else {}
    done = publish(report, out.report, bless_dir=out.bless_dir, sinks=sinks,
                   disabled_plugins=options.disabled_plugins, progress=progress)
    for problem in done.problems:
        click.echo(f"edgeval: error: {problem}", err=True)
    if done.report.verdict == "error" and not done.problems:
        click.echo(f"edgeval: error: {_first_error(done.report)}", err=True)  # even with -q: one line says why
    if not out.quiet:
        print_summary(done.report, done.path)
    return done.exit_code  # cli.main turns it into the process's exit code


def _first_error(report: Report) -> str:
    messages = [e.message for e in report.errors] + [c.message for c in report.checks if c.status == "error"]
    more = f" (+{len(messages) - 1} more in the report)" if len(messages) > 1 else ""
    return (messages[0].splitlines()[0] if messages else "no check ran") + more


def _mlflow_sink(report: Report, path: Path | None) -> None:
    from ..hooks.mlflow import log_report

    log_report(report, path)


def _policy(path: Path | None, settings: tuple[tuple[str, Any], ...],
            disabled: Sequence[str] = ()) -> Policy | Path:
    """The policy object with command-line settings, or the path (so a bad file becomes an error report)."""
    source = path or find_project_policy()
    try:
        policy = Policy.load(source, disabled) if source else Policy.default(disabled)
    except PolicyError:
        if settings or source is None:
            raise
        return source  # check() records the policy error in the report (exit 3)
    return apply_settings(policy, settings)
