"""The click group and the small commands (schema, policy, validators). ``check`` lives in check.py."""
from __future__ import annotations

import json

import click

from .._version import __version__
from .options import disable_plugin_option

EXIT_CODES_HELP = """\b
Exit codes:
  0  pass       every check passed
  1  blocked    a check failed: do not deploy
  2  usage      bad command line
  3  bad input  unreadable model, outputs that are not logits, bad policy, missing tokenizer,
                bad data, NaN logits, unwritable report, a sink that cannot write
  4  internal   a bug in edgeval, a plugin or a sink (report still written)
  5  inconclusive  too few items or too weak a signal to claim pass or block
                   (policy bbq.on_inconclusive; the report says how many items would decide)
BLESSED and exit 0 only when every step succeeded (report -> sinks -> plugins -> marker).
"""


@click.group(help="edgeval: a deployment gate for compressed LLMs (ONNX Runtime, TFLite).\n\n" + EXIT_CODES_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="edgeval")
def cli() -> None:
    pass


@cli.command("schema")
@click.argument("name", type=click.Choice(["report", "policy"]))
def schema_cmd(name: str) -> None:
    """Print the JSON Schema of the report or of the policy (with every registered validator's section)."""
    from ..policy import policy_schema
    from ..schemas import load_schema

    click.echo(json.dumps(policy_schema() if name == "policy" else load_schema(name), indent=2))


@cli.command("policy")
@click.option("--default", "show_default", is_flag=True, help="Print the default policy (YAML).")
@click.option("--check", "check_file", type=click.Path(dir_okay=False), help="Validate a policy file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def policy_cmd(show_default: bool, check_file: str | None, as_json: bool) -> None:
    """Print the default policy, or validate a policy file and print it with defaults filled in."""
    import yaml

    from ..policy import Policy

    if not show_default and not check_file:
        raise click.UsageError("give --default or --check FILE")
    policy = Policy.load(check_file) if check_file else Policy.default()
    data = policy.to_json()
    click.echo(json.dumps(data, indent=2) if as_json else yaml.safe_dump(data, sort_keys=False).rstrip())
    if check_file:
        click.echo(f"# {check_file}: valid", err=True)


@cli.command("validators")
@disable_plugin_option
def validators_cmd(disabled: tuple[str, ...]) -> None:
    """List the validators that `edgeval check` can run (built-ins and plugins)."""
    from ..plugins import registered_validators

    for name, validator in sorted(registered_validators(disabled).items()):
        click.echo(f"{name:<12} {getattr(validator, 'summary', '')}")


@cli.command("runtimes")
@disable_plugin_option
def runtimes_cmd(disabled: tuple[str, ...]) -> None:
    """List the runtimes by format: which one `edgeval check` uses by default (*) and which others `--runtime
    NAME` can choose, who registers each, and the options each honours (--provider, --device, --dtype)."""
    from ..runtimes.registry import all_runtimes, resolve

    specs = all_runtimes(disabled)
    for fmt in dict.fromkeys(spec.format for spec in specs):
        default = resolve(fmt, None, disabled)
        for spec in (s for s in specs if s.format == fmt):
            click.echo(f"{fmt:<8} {'*' if spec == default else ' '} {spec.name:<18} {spec.plugin:<10} "
                       f"{_honours(spec)}")


def _honours(spec) -> str:
    """The options a runtime class honours, or why it cannot be described (its module does not import)."""
    try:
        cls = spec.load()
    except Exception as exc:  # noqa: BLE001  (a plugin's import error: shown, never a traceback)
        return f"(cannot import: {type(exc).__name__}: {exc})"
    honours = ["--threads"] + (["--provider"] if getattr(cls, "has_providers", False) else [])
    honours += ["--device"] if getattr(cls, "has_devices", False) else []
    dtypes = tuple(getattr(cls, "dtypes", ("float32",)))
    return " ".join(honours + ([f"--dtype {'|'.join(dtypes)}"] if dtypes != ("float32",) else []))


def _register_subcommands() -> None:
    from . import check, compress_cmd, convert, demo_cmd, report_cmd, search_cmd  # noqa: F401  (they register their commands)


_register_subcommands()
__all__ = ["cli"]
