"""``edgeval check MODEL``: run the validators, print a summary, write the JSON report, exit with the verdict."""
from __future__ import annotations

from pathlib import Path

import click

from ..api import CheckOptions, check, prepare, publish
from ..errors import PolicyError, require
from ..policy import Policy, find_project_policy
from ..report import Report
from .app import EXIT_CODES_HELP, cli
from .summary import print_summary


def _csv(_ctx, _param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter(f"{value!r} names no validator (see `edgeval validators`)")
    return names


@cli.command("check", epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--baseline", type=click.Path(path_type=Path), help="The dense/reference model to compare with.")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path),
              help="Policy file (YAML/JSON, or a pyproject.toml with [tool.edgeval]). Default: [tool.edgeval] of "
                   "./pyproject.toml if present, else the built-in defaults (`edgeval policy --default`).")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=Path("edgeval-report.json"),
              show_default=True, help="Where to write the JSON report.")
@click.option("--tokenizer", type=click.Path(path_type=Path), help="tokenizer.json or its directory "
              "(default: beside the model).")
@click.option("--validators", callback=_csv, metavar="NAMES", help="Comma-separated validators to run "
              "(default: the policy's list). See `edgeval validators`.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed for inputs and sampling (>= 0).")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads for the runtimes.")
@click.option("--bbq-data", type=click.Path(path_type=Path), envvar="EDGEVAL_BBQ_DIR",
              help="Directory of BBQ jsonl files (env EDGEVAL_BBQ_DIR). Default: checksummed download/cache.")
@click.option("--bbq-limit", type=click.IntRange(min=1), help="Stratified sample size (default: policy bbq.limit).")
@click.option("--orders", type=click.Choice(["1", "3"]), help="Option orders scored per BBQ item (default 3).")
@click.option("--bbq-mode", type=click.Choice(["letter", "loglik"]), help="BBQ scoring mode (default letter).")
@click.option("--early-stop", "early_stop", type=click.IntRange(min=2, max=20), metavar="LOOKS",
              help="Score BBQ in LOOKS slices and stop once the sequential test decides (policy bbq.early_stop_looks).")
@click.option("--baseline-predictions", type=click.Path(path_type=Path),
              help="Saved BBQ predictions of the baseline (instead of re-running it).")
@click.option("--no-resume", "no_resume", is_flag=True, help="Score BBQ from scratch: discard the checkpoint a "
              "killed run with the same model and settings left in the cache (docs/bbq.md, resume).")
@click.option("--bless-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write BLESSED (verdict pass) or NOT_BLESSED into this directory (TFX convention).")
@click.option("--mlflow", is_flag=True, help="Log metrics, params and the report to MLflow (active run or "
              "MLFLOW_TRACKING_URI / MLFLOW_RUN_ID); needs mlflow installed.")
@click.option("--disable-plugin", "disabled", multiple=True, metavar="NAME", help="Do not load this plugin.")
@click.option("-q", "--quiet", is_flag=True, help="No summary table, no progress.")
def check_cmd(model: Path, baseline: Path | None, policy_path: Path | None, report_path: Path,
              tokenizer: Path | None, validators: list[str] | None, seed: int, threads: int | None,
              bbq_data: Path | None, bbq_limit: int | None, orders: str | None, bbq_mode: str | None,
              early_stop: int | None, baseline_predictions: Path | None, no_resume: bool, bless_dir: Path | None,
              mlflow: bool, disabled: tuple[str, ...],
              quiet: bool) -> None:
    """Gate MODEL (.onnx, .tflite, HF directory or .gguf) against --baseline and write the JSON report."""
    # first: a run that dies (or is refused) must leave neither an old BLESSED nor the previous run's report
    prepare(report_path, bless_dir, keep=[baseline_predictions] if baseline_predictions else ())
    if mlflow:
        require("mlflow", "mlflow", "--mlflow")  # fail before the run, not after the report is written
    policy = _policy(policy_path, bbq_data, bbq_limit, orders, bbq_mode, early_stop, disabled)
    extra = {"baseline_predictions": str(baseline_predictions) if baseline_predictions else None,
             "report_path": str(report_path), "resume": not no_resume}
    options = CheckOptions(tokenizer=str(tokenizer) if tokenizer else None, validators=validators, seed=seed,
                           threads=threads, disabled_plugins=disabled, extra=extra)
    progress = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    report = check(model, baseline, policy, options=options, progress=progress)
    sinks = {"mlflow": _mlflow_sink} if mlflow else {}
    done = publish(report, report_path, bless_dir=bless_dir, sinks=sinks, disabled_plugins=disabled,
                   progress=progress)
    for problem in done.problems:
        click.echo(f"edgeval: error: {problem}", err=True)
    if done.report.verdict == "error" and not done.problems:
        click.echo(f"edgeval: error: {_first_error(done.report)}", err=True)  # even with -q: one line says why
    if not quiet:
        print_summary(done.report, done.path)
    raise click.exceptions.Exit(done.exit_code)  # cli.main turns it into the process's exit code


def _first_error(report: Report) -> str:
    messages = [e.message for e in report.errors] + [c.message for c in report.checks if c.status == "error"]
    more = f" (+{len(messages) - 1} more in the report)" if len(messages) > 1 else ""
    return (messages[0].splitlines()[0] if messages else "no check ran") + more


def _mlflow_sink(report: Report, path: Path | None) -> None:
    from ..hooks.mlflow import log_report

    log_report(report, path)


def _policy(path: Path | None, bbq_data: Path | None, limit: int | None, orders: str | None,
            mode: str | None, early_stop: int | None, disabled: tuple[str, ...] = ()) -> Policy | Path:
    """The policy object with command-line overrides, or the path (so a bad file becomes an error report)."""
    source = path or find_project_policy()
    try:
        policy = Policy.load(source, disabled) if source else Policy.default(disabled)
    except PolicyError:
        if any(v is not None for v in (bbq_data, limit, orders, mode, early_stop)):
            raise
        return source  # check() records the policy error in the report (exit 3)
    return policy.with_overrides("bbq", data_dir=str(bbq_data) if bbq_data else None, limit=limit,
                                 orders=int(orders) if orders else None, mode=mode, early_stop_looks=early_stop)
