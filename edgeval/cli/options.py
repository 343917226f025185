"""Command-line options shared by several commands, and the option groups of ``edgeval check``.

Single options (``--policy``, ``--threads``, ``--seed``, ``--disable-plugin``, ``--bbq-data``) are decorators used
as they are. The groups collapse several options into one typed value, so that a command takes a few parameters:

- :func:`run_options` → ``options``: a :class:`~edgeval.api.CheckOptions` (tokenizer, validators, seed, threads,
  disabled plugins, declared inputs ``--input``/``--baseline-predictions``, ``--no-resume``);
- :func:`policy_settings` → ``settings``: ``(("bbq.limit", 600), ...)`` from ``--set SECTION.KEY=VALUE`` and the
  aliases ``--bbq-data``, ``--bbq-limit``, ``--orders``, ``--prior-items``, ``--bbq-mode``, ``--early-stop``
  (applied in that order, ``--set`` last), validated through the policy by :func:`apply_settings`;
- :func:`publish_options` → ``out``: a :class:`PublishOptions` (report path, bless dir, MLflow, quiet).
"""
from __future__ import annotations

import datetime
import functools
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from ..api import CheckOptions
from ..errors import PolicyError
from ..policy import Policy, validate_policy
from ..runtimes.options import DTYPES
from ..suggest import suggestion
from ..validators.base import RESIDENT

#: where --set errors are said to come from
SET_SOURCE = "--set"


def _stack(*decorators: Callable) -> Callable:
    """Apply ``decorators`` as if written top to bottom above a function."""
    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


def group(param: str, cls: type, *options: Callable) -> Callable:
    """Decorator: ``options`` whose parameters are the fields of dataclass ``cls``, handed to the command as one
    ``param=cls(...)`` value (so that a command with many options takes a few parameters)."""
    names = [f.name for f in fields(cls)]

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return f(*args, **{param: cls(**values)}, **kwargs)

        return _stack(*options)(wrapper)

    return decorate


# -- single options, shared ----------------------------------------------------------------------------------
def policy_option(help_text: str) -> Callable:
    return click.option("--policy", "policy_path", type=click.Path(path_type=Path), help=help_text)


def threads_option(help_text: str = "Intra-op threads for the runtimes.") -> Callable:
    return click.option("--threads", type=click.IntRange(min=1), help=help_text)


def seed_option(help_text: str = "Seed for inputs and sampling (>= 0).") -> Callable:
    return click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help=help_text)


def bbq_data_option(more_help: str = "") -> Callable:
    return click.option("--bbq-data", type=click.Path(path_type=Path), envvar="EDGEVAL_BBQ_DIR",
                        help="Directory of BBQ jsonl files (env EDGEVAL_BBQ_DIR). Default: checksummed "
                             "download/cache." + more_help)


disable_plugin_option = click.option("--disable-plugin", "disabled", multiple=True, metavar="NAME",
                                     help="Do not load this plugin.")


# -- --set and its aliases ------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A --set VALUE: JSON first (``1e-3``, ``null``, ``[1, 2]``), then a YAML scalar or flow (``true``, ``[Age,
    Race]``), else the text itself (a path such as ``data/bbq``)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    from ..errors import PolicyError
    from ..policy import load_yaml

    try:
        value = load_yaml(text) if text.strip() else None
    except yaml.YAMLError:
        return text
    except PolicyError as exc:
        raise PolicyError(f"--set value {text!r}: {exc}") from None
    # YAML reads 2024-01-01 as a date and yes/no/on/off as booleans; a policy holds neither dates nor YAML 1.1
    # booleans spelled that way, so such a value stays the text that was typed
    if isinstance(value, (datetime.date, datetime.datetime)) or (isinstance(value, bool) and text.strip().lower()
                                                                   not in ("true", "false")):
        return text
    return value


def dotted_sets(form: str, example: str) -> Callable[..., tuple[tuple[str, Any], ...]]:
    """A click callback reading repeated ``A.KEY=VALUE`` items into (``A.KEY``, value) pairs (values read by
    :func:`parse_value`); a malformed item names ``form`` and ``example``."""
    def parse(_ctx, _param, values: Sequence[str]) -> tuple[tuple[str, Any], ...]:
        out = []
        for item in values:
            key, eq, text = item.partition("=")
            section, dot, name = key.strip().partition(".")
            if not (eq and dot and section and name):
                raise click.BadParameter(f"{item!r}: give {form}, such as {example}")
            out.append((f"{section}.{name}", parse_value(text)))
        return tuple(out)

    return parse


_parse_set = dotted_sets("SECTION.KEY=VALUE", "bbq.limit=600")


#: alias option -> (policy key, how to turn the click value into the policy value)
ALIASES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "bbq_data": ("bbq.data_dir", str),
    "bbq_limit": ("bbq.limit", int),
    "orders": ("bbq.orders", int),
    "prior_items": ("bbq.prior_items", int),
    "bbq_mode": ("bbq.mode", str),
    "early_stop": ("bbq.early_stop_looks", int),
}


def policy_settings(f: Callable) -> Callable:
    """Options that change policy settings; the command receives them as ``settings`` (key, value) pairs."""
    @functools.wraps(f)
    def wrapper(*args: Any, sets: tuple[tuple[str, Any], ...], **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in ALIASES}
        aliased = [(key, convert(given[name])) for name, (key, convert) in ALIASES.items() if given[name] is not None]
        return f(*args, settings=(*aliased, *sets), **kwargs)

    return _stack(
        click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", callback=_parse_set,
                     help="Set one policy setting for this run (repeatable), e.g. --set bbq.limit=600; VALUE is "
                          "read as JSON or a YAML scalar. Applied after the policy file and the aliases below."),
        bbq_data_option(" Alias of --set bbq.data_dir=DIR."),
        click.option("--bbq-limit", type=click.IntRange(min=1), help="Alias of --set bbq.limit=N (stratified "
                     "sample size)."),
        click.option("--orders", type=click.Choice(["1", "3"]), help="Alias of --set bbq.orders=N (option orders "
                     "scored per BBQ item)."),
        click.option("--prior-items", type=click.IntRange(min=1), metavar="N",
                     help="Alias of --set bbq.prior_items=N (opt-in screen): N items in 3 orders give the model's "
                          "letter prior, every other item is scored in one order, debiased by it; it can block but "
                          "never passes (docs/bbq.md)."),
        click.option("--bbq-mode", type=click.Choice(["letter", "loglik"]), help="Alias of --set bbq.mode=MODE."),
        click.option("--early-stop", "early_stop", type=click.IntRange(min=2, max=20), metavar="LOOKS",
                     help="Alias of --set bbq.early_stop_looks=LOOKS: score BBQ in LOOKS slices and stop once the "
                          "sequential test decides."),
    )(wrapper)


def apply_settings(policy: Policy, settings: Sequence[tuple[str, Any]]) -> Policy:
    """``policy`` with each ``("section.key", value)`` set, validated like a policy file: an unknown section or
    key, or a bad value, is a :class:`PolicyError` naming the key (exit 3)."""
    if not settings:
        return policy
    raw = policy.to_json()
    for key, value in settings:
        section, _, name = key.partition(".")
        _section_table(raw, section, key)[name] = value
    validate_policy(raw, SET_SOURCE, policy.disabled)  # a disabled plugin's section stays unchecked, not refused
    return Policy(data=raw, source=policy.source, disabled=policy.disabled)


def _section_table(raw: dict[str, Any], section: str, key: str) -> dict[str, Any]:
    """The policy table that ``section`` names: top level (built-ins), else ``plugins.<section>``."""
    if section != "plugins" and isinstance(raw.get(section), dict):
        return raw[section]
    plugins = raw.get("plugins")
    if isinstance(plugins, dict) and isinstance(plugins.get(section), dict):
        return plugins[section]
    known = sorted([k for k, v in raw.items() if isinstance(v, dict) and k != "plugins"]
                   + list(plugins if isinstance(plugins, dict) else {}))
    raise PolicyError(f"unknown policy section '{section}' in '{key}'" + suggestion(section, known, list_known=True),
                      path=SET_SOURCE)


# -- the run ----------------------------------------------------------------------------------------------------
def _parse_inputs(_ctx, _param, values: Sequence[str]) -> tuple[tuple[str, Path], ...]:
    out: dict[str, Path] = {}
    for item in values:
        key, eq, path = item.partition("=")
        if not (eq and "." in key and path):
            raise click.BadParameter(f"{item!r}: give VALIDATOR.INPUT=PATH, such as bbq.baseline_predictions=F")
        key = key.strip()
        if key in out and out[key] != Path(path):  # the last one silently won
            raise click.BadParameter(f"{key} is given twice ({out[key]} and {path}): give one file")
        out[key] = Path(path)
    return tuple(out.items())


#: the run_options flags that go into CheckOptions as they are
RUNTIME_FLAGS = ("runtime", "baseline_runtime", "provider", "device", "dtype", "session", "resident")


def _session_items(_ctx, _param, values: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not (eq and key.strip()):
            raise click.BadParameter(f"{item!r}: give KEY=VALUE, such as session.intra_op.allow_spinning=0")
        out[key.strip()] = value
    return out


def runtime_options() -> list[Callable]:
    """``--runtime``, ``--baseline-runtime``, ``--provider``, ``--device``, ``--dtype``, ``--session-option``,
    ``--resident``."""
    return [
        click.option("--runtime", metavar="NAME", help="Run models with this runtime wherever it runs their format "
                     "(default: the policy's runtime.name, else a plugin's, else the built-in; see `edgeval "
                     "runtimes`). E.g. --runtime torch scores a .gguf with transformers instead of llama.cpp."),
        click.option("--baseline-runtime", metavar="NAME", help="The baseline's runtime, when it should differ "
                     "(e.g. the same GGUF on llama.cpp and on torch)."),
        click.option("--provider", metavar="EP", help="ONNX Runtime execution provider for the candidate (cuda, "
                     "CUDAExecutionProvider, openvino, …); one this onnxruntime lacks: exit 3. Default: the CPU."),
        click.option("--device", metavar="DEVICE", help="torch device (cpu, cuda, cuda:1, mps); one this machine "
                     "lacks: exit 3. Default: the CPU."),
        click.option("--dtype", type=click.Choice(DTYPES), help="Compute dtype (torch). Default: float32."),
        click.option("--session-option", "session", multiple=True, metavar="KEY=VALUE", callback=_session_items,
                     help="A runtime session setting (ONNX Runtime session config entry); repeatable."),
        click.option("--resident", type=click.Choice(RESIDENT), help="Models kept loaded while BBQ, perplexity "
                     "and the lenses score: one (memory of one model; the other is reloaded when needed) or both "
                     "(no reloads). Default: the policy's runtime.resident, else one."),
    ]


def run_options(f: Callable) -> Callable:
    """Options of the run itself; the command receives them as ``options``: a :class:`CheckOptions`."""
    @functools.wraps(f)
    def wrapper(*args: Any, tokenizer: Path | None, baseline_predictions: Path | None,
                inputs: tuple[tuple[str, Path], ...], no_resume: bool, **kwargs: Any) -> Any:
        given = dict((("bbq.baseline_predictions", baseline_predictions),) if baseline_predictions else ())
        for key, path in inputs:
            if key in given and given[key] != path:  # --input used to win silently over --baseline-predictions
                raise click.UsageError(f"--input {key}={path} and --baseline-predictions {given[key]} name two "
                                       "files: give one")
            given[key] = path
        runtime = {name: kwargs.pop(name) for name in RUNTIME_FLAGS}
        options = CheckOptions(tokenizer=str(tokenizer) if tokenizer else None, validators=kwargs.pop("validators"),
                               seed=kwargs.pop("seed"), threads=kwargs.pop("threads"),
                               disabled_plugins=kwargs.pop("disabled"), inputs=given, resume=not no_resume,
                               **runtime)
        return f(*args, options=options, **kwargs)

    return _stack(
        click.option("--tokenizer", type=click.Path(path_type=Path), help="tokenizer.json or its directory "
                     "(default: beside the model)."),
        click.option("--validators", callback=_csv, metavar="NAMES", help="Comma-separated validators to run "
                     "(default: the policy's list). See `edgeval validators`."),
        seed_option(), threads_option(), *runtime_options(),
        click.option("--input", "inputs", multiple=True, metavar="VALIDATOR.INPUT=PATH", callback=_parse_inputs,
                     help="A file a validator declares as input (repeatable), e.g. bbq.baseline_predictions=F; "
                          "checked before the run (unknown input or missing file: exit 3)."),
        click.option("--baseline-predictions", type=click.Path(path_type=Path),
                     help="Saved BBQ predictions of the baseline (instead of re-running it). Alias of --input "
                          "bbq.baseline_predictions=FILE."),
        click.option("--no-resume", "no_resume", is_flag=True, help="Score BBQ from scratch: discard the checkpoint "
                     "a killed run with the same model and settings left in the cache (docs/bbq.md, resume)."),
        disable_plugin_option,
    )(wrapper)


def _csv(_ctx, _param, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise click.BadParameter(f"{value!r} names no validator (see `edgeval validators`)")
    return names


# -- publishing ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PublishOptions:
    """Where and how ``edgeval check`` publishes its report."""

    report: Path
    bless_dir: Path | None
    mlflow: bool
    quiet: bool


def publish_options(f: Callable) -> Callable:
    """Options of the publishing step; the command receives them as ``out``: a :class:`PublishOptions`."""
    @functools.wraps(f)
    def wrapper(*args: Any, report_path: Path, bless_dir: Path | None, mlflow: bool, quiet: bool,
                **kwargs: Any) -> Any:
        return f(*args, out=PublishOptions(report_path, bless_dir, mlflow, quiet), **kwargs)

    return _stack(
        click.option("--report", "report_path", type=click.Path(path_type=Path),
                     default=Path("edgeval-report.json"), show_default=True,
                     help="Where to write the JSON report (side files go beside it, named after its stem)."),
        click.option("--bless-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="Write BLESSED (verdict pass) or NOT_BLESSED into this directory (TFX convention)."),
        click.option("--mlflow", is_flag=True, help="Log metrics, params and the report to MLflow (active run or "
                     "MLFLOW_TRACKING_URI / MLFLOW_RUN_ID); needs mlflow installed."),
        click.option("-q", "--quiet", is_flag=True, help="No summary table, no progress."),
    )(wrapper)


__all__ = ["runtime_options", "RUNTIME_FLAGS",
           "policy_option", "threads_option", "seed_option", "disable_plugin_option", "bbq_data_option",
           "policy_settings", "apply_settings", "parse_value", "run_options", "publish_options", "PublishOptions"]
