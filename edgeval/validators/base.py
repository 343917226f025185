"""The validator protocol and the context a validator runs in.

A validator measures one aspect of a candidate model (and its baseline), and turns the measurements into checks
using its policy section. Validators raise :class:`~edgeval.errors.EdgevalError` for bad input; :func:`run_validator`
turns any exception into an ``error`` check so that the other validators still run and the verdict fails closed.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ..artifacts import Artifact
from ..errors import BadInputError, EdgevalError, MeasurementError, UsageError
from ..policy import Policy
from ..report import Check, check_problem, error_check, results_problem
from ..runtimes.options import RuntimeOptions


@dataclass(frozen=True)
class Outcome:
    """What a validator returns: its checks and its measurements (``results[name]`` in the report)."""

    checks: tuple[Check, ...]
    results: dict[str, Any] = field(default_factory=dict)


#: values of ``RunContext.resident`` (``--resident``, policy ``runtime.resident``)
RESIDENT = ("one", "both")


@dataclass
class RunContext:
    """Everything one ``edgeval check`` run shares between validators. Runtimes are opened lazily and shared;
    with ``resident="one"`` a scoring validator's ``runtime(role, alone=True)`` closes the other model first.

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
    #: how many models the scoring validators keep loaded: ``one`` (a model is closed before the other is opened,
    #: so that memory is one model's, not two) or ``both`` (no reloads); see :meth:`runtime`
    resident: str = "one"
    progress: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
    _runtimes: dict[str, Any] = field(default_factory=dict, repr=False)
    _retired: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _state: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.resident not in RESIDENT:
            raise UsageError(f"resident must be one of {', '.join(RESIDENT)}, not {self.resident!r}")

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
        artifact = self.candidate if role == "candidate" else self.baseline
        if artifact is None:
            raise BadInputError("this validator needs a baseline model (--baseline)")
        return artifact

    def runtime(self, role: str = "candidate", *, alone: bool = False):
        """The runtime of the candidate or the baseline, opened on first use and shared by the validators.

        ``alone=True`` (validators that score one model at a time: BBQ, perplexity, the lenses): with
        :attr:`resident` ``one``, the other model's shared runtime is closed first and its memory given back, so
        that the two models are never loaded together (a later call reopens it). Without ``alone`` nothing is
        closed: a validator that holds both runtimes at once (latency's interleaved pairs, parity) asks for each
        plainly and both stay open."""
        self.artifact(role)  # a baseline asked for without one: BadInputError before anything is closed
        if alone and self.resident == "one":
            for other in [r for r in self._runtimes if r != role]:
                self._retire(other)
        if role not in self._runtimes:
            runtime = self._runtimes[role] = self.open_runtime(role)
            width = self._retired.get(role, {}).get("logits_width")
            if width and hasattr(runtime, "learn_logits_width"):  # batches sized as before the reload
                runtime.learn_logits_width(width)
        return self._runtimes[role]

    def loaded(self, role: str) -> bool:
        """Whether ``role``'s shared runtime is open now."""
        return role in self._runtimes

    def resident_first(self, roles: Sequence[str]) -> list[str]:
        """``roles`` with the ones whose runtime is open now first (stable otherwise): scoring in this order
        reloads a model only when it must."""
        return sorted(roles, key=lambda role: role not in self._runtimes)

    def usage(self, role: str) -> dict[str, Any]:
        """What ``role``'s runtime did in this run, summed over every time it was opened, without opening it:
        ``runtime`` (name), ``kv_cache``, ``batch_invariant``, ``tokens_requested``, ``tokens_computed``,
        ``opened`` (times). Empty when it was never opened."""
        out = dict(self._retired.get(role, {}))
        if role in self._runtimes:
            out = _add_usage(out, runtime_usage(self._runtimes[role]))
        return out

    def _retire(self, role: str) -> None:
        runtime = self._runtimes.pop(role)
        try:
            self._retired[role] = _add_usage(self._retired.get(role, {}), runtime_usage(runtime))
        finally:
            runtime.close()
            del runtime
            release_memory()

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
        baseline's lose what its runtime cannot honour (:func:`~edgeval.runtimes.options.for_reference`), and the
        session settings when it runs on another runtime than the candidate."""
        from ..runtimes.options import for_reference

        options = self.runtime_options.with_(threads=threads or self.threads)
        if role != "baseline":
            return options
        spec = self.runtime_spec(role)  # its own runtime (--baseline-runtime), not the candidate's name
        # session settings are one runtime's vocabulary (ORT config entries, llama.cpp's n_ctx …): a baseline on
        # another runtime than the candidate's does not get them
        same = spec.name == self.runtime_spec("candidate").name
        return replace(for_reference(options, spec.load()), runtime=spec.name,
                       session=options.session if same else {})

    def open_runtime(self, role: str, threads: int | None = None):
        """A new runtime for ``role`` (not shared: the caller closes it), e.g. latency's own thread count."""
        from ..runtimes import construct

        cls = self.runtime_spec(role).load()
        return construct(cls, self.artifact(role), self.tokenizer, self.options_for(role, threads))

    def unload(self) -> None:
        """Close every shared runtime now (their figures kept for :meth:`usage`); later calls reopen them."""
        for role in list(self._runtimes):
            self._retire(role)

    def close(self) -> None:
        """Close every open runtime (each on its own: one that fails to close does not keep the others open)."""
        runtimes, self._runtimes = list(self._runtimes.values()), {}
        for runtime in runtimes:
            with contextlib.suppress(Exception):  # the run is over: nothing it measured depends on this
                runtime.close()
        del runtimes
        release_memory(collect=False)  # the run is over: the next automatic collection frees what cycles hold


def runtime_usage(runtime: Any) -> dict[str, Any]:
    """One opening's figures (a runtime missing a protocol member, such as a plugin's, reads as the defaults)."""
    seq_axes = getattr(runtime, "kv_seq_axes", lambda: None)
    width = getattr(runtime, "logits_width", lambda: None)
    return {"runtime": getattr(runtime, "name", type(runtime).__name__), "kv_cache": seq_axes() is not None,
            "batch_invariant": bool(getattr(runtime, "batch_invariant", True)),
            "tokens_requested": int(getattr(runtime, "tokens_requested", 0)),
            "tokens_computed": int(getattr(runtime, "tokens_computed", 0)), "opened": 1,
            "logits_width": width() if callable(width) else None}


def _add_usage(total: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    counts = ("tokens_requested", "tokens_computed", "opened")
    return {**more, **{k: total.get(k, 0) + more[k] for k in counts},
            "logits_width": more.get("logits_width") or total.get("logits_width")}


def release_memory(collect: bool = True) -> None:
    """Give freed memory back to the system: a collection (``collect``: a closed torch model sits in reference
    cycles until one runs; it costs ~0.2 s with torch imported), then glibc's ``malloc_trim`` (a closed model's
    and a finished validator's buffers otherwise stay in the process's heap and count in its RSS; without glibc
    only the collection runs)."""
    import ctypes
    import gc

    if collect:
        gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


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
