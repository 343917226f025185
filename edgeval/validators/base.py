"""The validator protocol and the context a validator runs in.

A validator measures one aspect of a candidate model (and its baseline), and turns the measurements into checks
using its policy section. Validators raise :class:`~edgeval.errors.EdgevalError` for bad input; :func:`run_validator`
turns any exception into an ``error`` check so that the other validators still run and the verdict fails closed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from ..artifacts import Artifact
from ..errors import BadInputError, EdgevalError, MeasurementError
from ..policy import Policy
from ..report import Check, check_problem, error_check, results_problem
from ..runtimes.options import RuntimeOptions


@dataclass(frozen=True)
class Outcome:
    """What a validator returns: its checks and its measurements (``results[name]`` in the report)."""

    checks: tuple[Check, ...]
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything one ``edgeval check`` run shares between validators. Runtimes are opened lazily, once.

    ``outputs``: folder and stem of the report this run will be written to (``out/edgeval-report``), given up front
    so that validators can write side files beside it (:meth:`side_file`); None: no side files. ``inputs``: the
    declared validator inputs given to this run, ``{"<validator>.<input>": path}``, already checked to exist
    (:meth:`input`). ``resume``: validators that checkpoint their work may resume a killed run's."""

    candidate: Artifact
    baseline: Artifact | None
    policy: Policy
    seed: int = 0
    tokenizer: str | None = None
    threads: int | None = None
    outputs: Path | None = None
    inputs: Mapping[str, Path] = field(default_factory=dict)
    resume: bool = True
    #: how runtimes are opened (runtime choice, provider, device, dtype; threads come from ``threads``)
    runtime_options: RuntimeOptions = field(default_factory=RuntimeOptions)
    #: the baseline's runtime, when it differs from ``runtime_options.runtime`` (``--baseline-runtime``)
    baseline_runtime: str | None = None
    disabled_plugins: tuple[str, ...] = ()
    progress: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
    _runtimes: dict[str, Any] = field(default_factory=dict, repr=False)
    _state: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def side_file(self, suffix: str) -> Path | None:
        """Where a side file ending in ``suffix`` goes: ``<outputs>{suffix}`` beside the report, or None when this
        run writes no files (``suffix`` such as ``.bbq-candidate.jsonl.gz``)."""
        if self.outputs is None:
            return None
        return self.outputs.with_name(self.outputs.name + suffix)

    def input(self, validator: str, name: str) -> Path | None:
        """The file given for the declared input ``name`` of ``validator`` (``--input bbq.baseline_predictions=F``),
        or None when none was given."""
        path = self.inputs.get(f"{validator}.{name}")
        return None if path is None else Path(path)

    def state(self, validator: str) -> dict[str, Any]:
        """A dict private to ``validator`` for this run (open checkpoints and the like); empty at first."""
        return self._state.setdefault(validator, {})

    def artifact(self, role: str) -> Artifact:
        if role == "baseline" and self.baseline is None:
            raise BadInputError("this validator needs a baseline model (--baseline)")
        return self.candidate if role == "candidate" else self.baseline

    def runtime(self, role: str = "candidate"):
        """The runtime of the candidate or the baseline, opened on first use and shared by the validators."""
        if role not in self._runtimes:
            self._runtimes[role] = self.open_runtime(role)
        return self._runtimes[role]

    def runtime_spec(self, role: str) -> Any:
        """The registry entry that runs ``role``'s artifact: ``--baseline-runtime`` for the baseline, else
        ``--runtime`` where that runtime runs the artifact's format, else the registry's default for it. UsageError
        when the choice cannot be made (see :func:`edgeval.runtimes.registry.resolve`)."""
        from ..runtimes.registry import resolve, runs

        fmt = self.artifact(role).format
        choice = self.runtime_options.runtime
        if role == "baseline" and self.baseline_runtime is not None:
            choice = self.baseline_runtime
        elif choice is not None and not runs(choice, fmt, self.disabled_plugins):
            choice = None  # --runtime names the other model's runtime (checked up front by api.check)
        return resolve(fmt, choice, self.disabled_plugins)

    def options_for(self, role: str, threads: int | None = None) -> RuntimeOptions:
        """The options ``role``'s runtime is opened with: the run's (``threads`` overriding its threads); the
        baseline's lose what its runtime cannot honour (:func:`~edgeval.runtimes.options.for_reference`)."""
        from ..runtimes.options import for_reference

        options = self.runtime_options.with_(threads=threads or self.threads)
        return for_reference(options, self.runtime_spec(role).load()) if role == "baseline" else options

    def open_runtime(self, role: str, threads: int | None = None):
        """A new runtime for ``role`` (not shared: the caller closes it), e.g. latency's own thread count."""
        from ..runtimes import construct

        cls = self.runtime_spec(role).load()
        return construct(cls, self.artifact(role), self.tokenizer, self.options_for(role, threads))

    def close(self) -> None:
        for runtime in self._runtimes.values():
            runtime.close()
        self._runtimes.clear()


@runtime_checkable
class Validator(Protocol):
    """A measurement that gates deployment. ``name`` is its key in the policy and in ``report.results``."""

    name: str
    #: one line for ``edgeval validators`` and the docs
    summary: str
    #: its policy section as a frozen dataclass (:class:`edgeval.settings.Settings`): keys, defaults, schema
    Settings: type

    # Optional members, looked up with getattr (a validator without them gets generic views):
    #   inputs: Mapping[str, str]                 declared input files (name -> help), given as ``--input NAME=PATH``
    #   side_files: Sequence[str]                 suffixes of the side files it writes (``ctx.side_file``)
    #   describe(results) -> list[str]            short sentences for the summaries (markdown, HTML)
    #   metrics(results) -> dict[str, float]      flat numbers for sinks such as MLflow (keys without a prefix)
    #   warnings(results) -> list[str]            sentences that must be seen (the CLI summary prints them)
    #   markdown(results) -> list[str]            a richer Markdown section (lines) instead of describe()
    #   html(results) -> str                      a richer HTML ``<section>`` instead of describe()
    #   static: bool                              True when it reads the artifact's files only (no runtime): such
    #                                             validators run first, before any model is loaded, so that their
    #                                             memory and a loaded model's do not add up (report order is kept)

    def run(self, ctx: RunContext, settings: Any) -> Outcome:
        """Measure, compare with the thresholds in ``settings`` (its policy section, an instance of ``Settings``),
        return checks + results."""


def run_validator(validator: Validator, ctx: RunContext) -> Outcome:
    """Run one validator; any exception becomes an ``error`` check (fail closed), never a pass."""
    name = validator.name
    try:
        outcome = validator.run(ctx, ctx.policy.settings_for(validator))
    except EdgevalError as exc:
        return Outcome((error_check(f"{name}.run", name, exc),), {"error": str(exc)})
    except Exception as exc:  # a bug in a validator must not take the report down with it
        return Outcome((error_check(f"{name}.run", name, exc),), {"error": f"{type(exc).__name__}: {exc}"})
    problem = outcome_problem(outcome)
    if problem:  # a malformed outcome is a bug of the validator: an error check, never a pass or a lost report
        bad = RuntimeError(f"validator '{name}' returned {problem}")
        return Outcome((error_check(f"{name}.run", name, bad),), {"error": str(bad)})
    outcome = Outcome(tuple(outcome.checks), outcome.results)
    if not outcome.checks:
        empty = MeasurementError(f"validator '{name}' produced no checks")
        return Outcome((error_check(f"{name}.run", name, empty),), outcome.results)
    return outcome


def outcome_problem(outcome: Any) -> str | None:
    """What makes ``outcome`` unfit for a report (one phrase), or None: it must be an :class:`Outcome` whose checks
    are :class:`Check` objects the report schema accepts and whose results are a JSON-writable dict."""
    if not isinstance(outcome, Outcome):
        return f"{type(outcome).__name__}, not an Outcome"
    if not isinstance(outcome.checks, (tuple, list)):
        return f"checks as {type(outcome.checks).__name__}, not a tuple of Check"
    for check in outcome.checks:
        problem = check_problem(check)
        if problem:
            return problem
    return results_problem(outcome.results)
