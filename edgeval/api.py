"""The Python API: ``edgeval.check(candidate, baseline=None, policy=None, ...) -> Report``.

A few named steps: read the inputs, pick the validators, run them (each failure contained in its own check),
assemble the report, hand it to sinks. Bad input never raises out of :func:`check`; it becomes a report with
verdict ``error`` and exit code 3, so that a pipeline always gets a report to keep.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .artifacts import Artifact, load_artifact
from .environment import environment
from .errors import BadInputError, EdgevalError, UsageError
from .plugins import plugin_manager, registered_validators, select_validators
from .policy import Policy, validate_policy
from .report import Check, InputError, Report
from .runtimes.options import RuntimeOptions
from .suggest import suggestion
from .validators.base import RESIDENT, RunContext, release_memory, run_validator


@dataclass(frozen=True)
class CheckOptions:
    """Options of one check run that are not thresholds (those live in the :class:`Policy`)."""

    tokenizer: str | None = None
    validators: Sequence[str] | None = None
    seed: int = 0
    threads: int | None = None
    disabled_plugins: Sequence[str] = ()
    #: folder + stem of the report this run will be written to (``out/edgeval-report`` for
    #: ``out/edgeval-report.json``, see :func:`outputs_for`): validators write their side files beside it
    outputs: Path | None = None
    #: declared validator inputs, ``{"bbq.baseline_predictions": path}``: checked before anything runs
    inputs: Mapping[str, str | Path] = field(default_factory=dict)
    #: validators that checkpoint their work (BBQ) may resume what a killed run with the same settings left
    resume: bool = True
    #: the runtime for every format it runs (``--runtime``); None: the policy's ``runtime.name``, else plugins,
    #: then the built-in default
    runtime: str | None = None
    #: the baseline's runtime when it should differ (``--baseline-runtime``), e.g. llama.cpp vs torch on one GGUF
    baseline_runtime: str | None = None
    provider: str | None = None
    device: str | None = None
    dtype: str | None = None
    #: runtime session settings (``--session-option KEY=VALUE``)
    session: Mapping[str, str] = field(default_factory=dict)
    #: models kept loaded while BBQ, perplexity and the lenses score (``--resident``): ``one`` or ``both``; None:
    #: the policy's ``runtime.resident``, else ``one``
    resident: str | None = None

    def __post_init__(self) -> None:
        if self.resident not in (None, *RESIDENT):
            raise UsageError(f"resident must be one of {', '.join(RESIDENT)}, not {self.resident!r}")
        # one name or "a,b" given as a string would otherwise be read letter by letter ("unknown validator 's'")
        for name in ("validators", "disabled_plugins"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, [v.strip() for v in value.split(",") if v.strip()])


def outputs_for(report_path: str | Path) -> Path:
    """The ``outputs`` stem of a report path: ``out/edgeval-report.json`` → ``out/edgeval-report``."""
    path = Path(report_path)
    return path.with_name(path.stem)


def check(candidate: str | Path, baseline: str | Path | None = None, policy: Policy | str | Path | None = None,
          *, options: CheckOptions | None = None, progress: Callable[[str], None] | None = None,
          **option_kwargs: Any) -> Report:
    """Gate ``candidate`` against ``baseline`` under ``policy``; returns the :class:`Report` (never raises for
    bad input: see ``report.verdict`` / ``report.errors``). Usage errors (unknown validator) do raise."""
    options = options or CheckOptions(**option_kwargs)
    started = time.perf_counter()
    errors: list[InputError] = []
    policy_obj = _read_policy(policy, errors, options.disabled_plugins)
    validators = select_validators(options.validators or policy_obj.validators, options.disabled_plugins)
    if not validators:
        errors.append(InputError("policy", "bad_input", "no validators to run: name at least one (policy "
                                 "'validators' or --validators; see `edgeval validators`)"))
    inputs = _read_inputs(options.inputs, validators, options.disabled_plugins, errors)
    cand, cand_json = _read_artifact("candidate", candidate, errors, options.disabled_plugins)
    base, base_json = (_read_artifact("baseline", baseline, errors, options.disabled_plugins) if baseline is not None
                       else (None, None))
    checks: list[Check] = []
    results: dict[str, Any] = {}
    run_info: dict[str, Any] = {}
    if not errors and cand is not None:
        runtime_options = _runtime_options(options, policy_obj)
        ctx = RunContext(cand, base, policy_obj, seed=options.seed, tokenizer=options.tokenizer,
                         threads=runtime_options.threads,
                         outputs=None if options.outputs is None else Path(options.outputs),
                         inputs=inputs, resume=options.resume, runtime_options=runtime_options,
                         baseline_runtime=options.baseline_runtime,
                         resident=_resident(options, policy_obj, runtime_options),
                         disabled_plugins=tuple(options.disabled_plugins))
        run_info["resident"] = ctx.resident
        try:
            run_info["runtimes"] = choose_runtimes(ctx)
        except BadInputError as exc:  # a provider or device this machine lacks: nothing is measured
            errors.append(InputError.from_exception("runtime", exc))
        if progress is not None:
            ctx.progress = progress
        try:
            outcomes = {}
            for validator in _static_first(validators) if not errors else []:
                outcomes[validator.name] = run_validator(validator, ctx)
                release_memory(collect=False)  # what the validator freed goes back before the next one runs
            for validator in validators if not errors else []:  # the report keeps the policy's order
                checks.extend(outcomes[validator.name].checks)
                results[validator.name] = outcomes[validator.name].results
        finally:
            ctx.close()
    if not errors:
        if base_json is None:  # no --baseline model: name the one that made the saved BBQ predictions, if any
            from .validators.bbq.predictions import baseline_artifact
            base_json = baseline_artifact(results)
        checks.extend(nothing_gated(checks))
    report = Report(candidate=cand_json, baseline=base_json, policy=policy_obj.to_json(), checks=tuple(checks),
                    results=results, errors=tuple(errors), environment=environment(options.threads),
                    run={"validators": [v.name for v in validators], "seed": options.seed,
                         "duration_s": round(time.perf_counter() - started, 3),
                         "policy_source": policy_obj.source, "tokenizer": options.tokenizer,
                         "disabled_plugins": list(options.disabled_plugins), **run_info})
    return report


def _static_first(validators: Sequence[Any]) -> list[Any]:
    """Validators that read files only (``static = True``: size) before those that load the model: a static one
    may hold a parsed graph (the ONNX protobuf, as large as the file) and must not do so beside a loaded session."""
    return sorted(validators, key=lambda v: not getattr(v, "static", False))


def nothing_gated(checks: Sequence[Check]) -> list[Check]:
    """An ``inconclusive`` check when every check passed but none compared a measurement with a threshold (all
    report-only: no baseline, no limits set): such a run measured but claimed nothing, so it must not pass."""
    if not checks or any(c.status != "pass" or c.gated for c in checks):
        return []
    return [Check("run.gated", "edgeval", "inconclusive", "gated_checks", 0, message=(
        "nothing was gated: every check is report-only (no threshold compared), so a pass would claim nothing; "
        "give --baseline (the bias checks compare with it) or set a threshold in the policy"))]


def announce(report: Report, path: str | Path | None, disabled_plugins: Sequence[str] = ()) -> list[str]:
    """Hand a final report to ``edgeval_report_ready`` hooks. Returns their error messages (never raises)."""
    problems = []
    pm = plugin_manager(disabled_plugins)
    for impl in pm.hook.edgeval_report_ready.get_hookimpls():
        try:
            impl.function(report=report, path=None if path is None else str(path))
        except Exception as exc:  # a sink failing must not turn a written report into a crash
            problems.append(f"plugin '{impl.plugin_name}' failed on report_ready: {type(exc).__name__}: {exc}")
    return problems


#: a sink takes the final report and the path it was written to (None: not written); it raises on failure
Sink = Callable[[Report, "Path | None"], Any]


@dataclass(frozen=True)
class Publication:
    """What :func:`publish` did: the final report (with any publishing failure recorded as an error), where it
    was written, the blessing marker, the one-line problems, and the exit code (always ``report.exit_code``)."""

    report: Report
    path: Path | None
    marker: Path | None
    problems: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return self.report.exit_code


def prepare(report_path: str | Path | None, bless_dir: str | Path | None = None,  # noqa: PLR0913
            keep: Sequence[str | Path] = (), disabled_plugins: Sequence[str] = (),
            protect: Sequence[str | Path | None] = ()) -> None:
    """Call before a check runs: remove the blessing markers and the previous report at ``report_path`` (and the
    side files validators declare, ``<stem><suffix>`` for each suffix in their ``side_files``, e.g. BBQ's
    ``<stem>.bbq-candidate.jsonl.gz``; except the files in ``keep``), so that a run killed half-way never leaves the
    last run's pass behind; refuse (:class:`BadInputError`) a report path or bless dir that cannot be written,
    before any time is spent. ``protect``: files the run reads (the models, the policy): a report path or side
    file that is one of them is refused, never deleted (``--report model.onnx`` would destroy the model)."""
    from .hooks.blessing import revoke

    if report_path is not None:
        _refuse_overwrite(Path(report_path), protect, side_file_suffixes(disabled_plugins))
        _refuse_overwrite(Path(report_path), keep, ())  # an input may be a side file, never the report itself

    if bless_dir is not None:
        bless_dir = Path(bless_dir)
        _writable_dir(bless_dir, "the blessing marker (--bless-dir)")
        try:
            revoke(bless_dir)
        except OSError as exc:
            raise BadInputError(f"cannot remove the old blessing marker: {exc.strerror or exc}",
                                path=bless_dir) from None
    if report_path is not None:
        invalidate_report(Path(report_path), keep, side_file_suffixes(disabled_plugins))


def _refuse_overwrite(path: Path, protect: Sequence[str | Path | None], suffixes: Sequence[str]) -> None:
    """BadInputError when the report at ``path`` or one of its side files is a file in ``protect``."""
    guarded = {Path(p).resolve(): Path(p) for p in protect if p}
    for file in [path, *(path.with_name(f"{path.stem}{suffix}") for suffix in suffixes)]:
        if file.resolve() in guarded:
            raise BadInputError(f"the report would overwrite {guarded[file.resolve()]}, which this run reads: give "
                                "--report another file name", path=file)


def side_file_suffixes(disabled_plugins: Sequence[str] = ()) -> list[str]:
    """The suffixes of the side files every installed validator declares (``side_files``). Only these exact
    names are removed beside a report, so other files there (checkpoints, say) are left alone."""
    return [str(suffix) for v in registered_validators(disabled_plugins).values()
            for suffix in (getattr(v, "side_files", None) or ())]


def invalidate_report(path: Path, keep: Sequence[str | Path] = (), suffixes: Sequence[str] = ()) -> None:
    """Delete the report at ``path`` and its side files ``<stem><suffix>`` (not those in ``keep``);
    BadInputError if one cannot be."""
    if path.is_dir():
        raise BadInputError("cannot write the report: the path is a directory; give a file name such as "
                            "edgeval-report.json", path=path)
    _writable_dir(path.parent, "the report")
    kept = {Path(k).resolve() for k in keep if k}
    stale = [path, *(path.with_name(f"{path.stem}{suffix}") for suffix in suffixes)]
    for file in stale:
        if file.resolve() in kept or file.is_dir():
            continue
        try:
            file.unlink(missing_ok=True)
        except OSError as exc:
            raise BadInputError(f"cannot remove the previous report: {exc.strerror or exc}", path=file) from None


def _writable_dir(directory: Path, what: str) -> None:
    """``directory`` exists (created if needed) and can be written, or BadInputError ("cannot write ``what``")."""
    problem = None
    if directory.exists() and not directory.is_dir():
        problem = "the folder is a file"
    else:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"cannot create the folder: {exc.strerror or exc}"
        else:
            if not os.access(directory, os.W_OK | os.X_OK):
                problem = "the folder is not writable"
    if problem:
        raise BadInputError(f"cannot write {what}: {problem}", path=directory)


def publish(report: Report, report_path: str | Path | None, *, bless_dir: str | Path | None = None,
            sinks: Mapping[str, Sink] | None = None, disabled_plugins: Sequence[str] = (),
            progress: Callable[[str], None] | None = None) -> Publication:
    """The one publishing step of the CLI and the framework hooks, in this order: write the report (atomically)
    → ``sinks`` (``{name: callable(report, path)}``, e.g. MLflow) → ``edgeval_report_ready`` plugins → the
    blessing marker, last. Any failure is recorded in the report as an error (so the verdict, the exit code, the
    written report and what later steps see all agree), the report is rewritten, and ``BLESSED`` is written only
    when the final verdict is ``pass``. Never raises for a failing step; returns a :class:`Publication`."""
    say = progress or (lambda _m: None)
    problems: list[str] = []
    path = Path(report_path) if report_path is not None else None
    report, written = _write(report, path, problems)
    before = len(report.errors)
    for name, sink in (sinks or {}).items():
        try:
            sink(report, written)
        except Exception as exc:  # noqa: BLE001  (any sink failure must end the run non-zero, never crash it)
            report = _failed(report, problems, f"sink:{name}", exc, f"the {name} sink failed")
    for problem in announce(report, written, disabled_plugins):
        report = _failed(report, problems, "plugin", RuntimeError(problem), "")
    if len(report.errors) != before and written is not None:
        report, written = _write(report, path, problems)  # the file must say what the exit code says
    marker = None
    if bless_dir is not None:
        report, marker = _bless(report, written, Path(bless_dir), problems)
        if marker is not None:
            say(f"edgeval: wrote {marker}")
    return Publication(report, written, marker, tuple(problems))


def _write(report: Report, path: Path | None, problems: list[str]) -> tuple[Report, Path | None]:
    """Write the report; when that fails, record why in the report (verdict error) and make sure no file at
    ``path`` says otherwise."""
    if path is None:
        return report, None
    try:
        return report, report.write(path)
    except OSError as exc:
        report = _failed(report, problems, "report", BadInputError(f"cannot write the report: "
                                                                   f"{exc.strerror or exc}", path=path), "")
    except EdgevalError as exc:
        report = _failed(report, problems, "report", exc, "cannot write the report")
    with contextlib.suppress(OSError):
        if not path.is_dir():
            path.unlink(missing_ok=True)
    return report, None


def _failed(report: Report, problems: list[str], source: str, exc: BaseException, what: str) -> Report:
    """The report with ``exc`` recorded as an error of ``source``; its one line appended to ``problems``."""
    error = InputError.from_exception(source, exc)
    if isinstance(exc, OSError):
        error = InputError(source, "bad_input", f"{exc.strerror or exc}")
    message = f"{what}: {error.message}" if what else error.message
    problems.append(message)
    return report.replace(errors=(*report.errors, InputError(source, error.kind, message)))


def _bless(report: Report, written: Path | None, directory: Path, problems: list[str]) -> tuple[Report, Path | None]:
    from .hooks.blessing import bless, revoke

    try:
        return report, bless(directory, report, written)
    except OSError as exc:
        with contextlib.suppress(OSError):
            revoke(directory)
        error = BadInputError(f"cannot write the blessing marker: {exc.strerror or exc}", path=directory)
        report = _failed(report, problems, "bless", error, "")
        if written is not None:
            report, _ = _write(report, written, problems)
        return report, None


def _read_policy(policy: Policy | str | Path | None, errors: list[InputError],
                 disabled: Sequence[str] = ()) -> Policy:
    if isinstance(policy, Policy):
        try:  # a Policy built by hand (Policy(data=...)) has not been through the loader: NaN, ranges, keys
            validate_policy(policy.data, policy.source, (*policy.disabled, *disabled))
        except EdgevalError as exc:
            errors.append(InputError.from_exception("policy", exc))
        return policy
    if policy is None:
        return Policy.default(disabled)
    try:
        return Policy.load(policy, disabled)
    except EdgevalError as exc:
        errors.append(InputError.from_exception("policy", exc))
        return Policy.default(disabled)


def _read_inputs(given: Mapping[str, str | Path], validators: Sequence[Any], disabled: Sequence[str],
                 errors: list[InputError]) -> dict[str, Path]:
    """The declared validator inputs as paths; an unknown key, one for a validator this run does not include, or
    a file that is not there is an input error (one line each) before anything runs."""
    if not given:
        return {}
    declared = {f"{v.name}.{name}" for v in registered_validators(disabled).values()
                for name in (getattr(v, "inputs", None) or {})}
    running = {v.name for v in validators}
    out: dict[str, Path] = {}
    for key, path in given.items():
        problem = _input_problem(key, Path(path), declared, running)
        if problem:
            errors.append(InputError("inputs", "bad_input", problem))
        else:
            out[key] = Path(path)
    return out


def _input_problem(key: str, path: Path, declared: set[str], running: set[str]) -> str | None:
    """What is wrong with input ``key`` = ``path`` (one line naming both), or None."""
    if key not in declared:
        return f"unknown input '{key}'" + suggestion(key, sorted(declared), list_known=True)
    if key.partition(".")[0] not in running:
        return f"input '{key}' is for validator '{key.partition('.')[0]}', which this run does not include"
    if not path.is_file():
        return f"{path}: input '{key}': file not found" if not path.exists() else f"{path}: input '{key}': not a file"
    return None


def _runtime_options(options: CheckOptions, policy: Policy) -> RuntimeOptions:
    """The run's runtime options: the policy's ``runtime:`` section, the command line's values winning."""
    return RuntimeOptions.from_policy(policy.data.get("runtime"), runtime=options.runtime, threads=options.threads,
                                      provider=options.provider, device=options.device, dtype=options.dtype,
                                      session=dict(options.session) or None)


def _resident(options: CheckOptions, policy: Policy, runtime: RuntimeOptions) -> str:
    """``--resident``, else the policy's ``runtime.resident``, else ``one`` on the CPU and ``both`` on an
    accelerator (a reload there rebuilds the provider's engine, TensorRT's in minutes, and host-memory trimming
    does not free device memory)."""
    chosen = options.resident or (policy.data.get("runtime") or {}).get("resident")
    if chosen:
        return chosen
    on_cpu = (runtime.provider or "cpu").lower() in ("cpu", "cpuexecutionprovider") and runtime.device in (None, "cpu")
    return "one" if on_cpu else "both"


def choose_runtimes(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """Which runtime opens each model, decided before anything runs: a ``--runtime`` that runs neither model's
    format, a ``--baseline-runtime`` without a baseline, two plugins competing for a format, or an option the
    candidate's runtime cannot honour is a UsageError (exit 2); a provider or device the candidate's runtime says
    this machine lacks (its optional ``check_options(options)`` classmethod) is a DeviceError, even when no
    validator of the run would open a runtime. Returns ``{role: {name, plugin, options}}`` for
    the report."""
    from .runtimes.options import refuse_unsupported
    from .runtimes.registry import resolve, runs

    roles = ["candidate"] + (["baseline"] if ctx.baseline is not None else [])
    choice = ctx.runtime_options.runtime
    if choice is not None and not any(runs(choice, ctx.artifact(r).format, ctx.disabled_plugins) for r in roles):
        resolve(ctx.artifact("candidate").format, choice, ctx.disabled_plugins)  # raises, naming the runtimes
    if ctx.baseline_runtime is not None and ctx.baseline is None:
        raise UsageError("--baseline-runtime needs a baseline model (--baseline)")
    chosen = {}
    for role in roles:
        spec = ctx.runtime_spec(role)
        if role == "candidate":
            cls = spec.load()
            refuse_unsupported(ctx.runtime_options, cls)
            check = getattr(cls, "check_options", None)  # optional: e.g. is the provider installed here?
            if callable(check):
                check(ctx.runtime_options)
        chosen[role] = {"runtime": spec.name, "plugin": spec.plugin, "options": ctx.options_for(role).to_json()}
    return chosen


def _read_artifact(role: str, path: str | Path, errors: list[InputError],
                   disabled: Sequence[str] = ()) -> tuple[Artifact | None, dict]:
    try:
        artifact = load_artifact(path, disabled)
    except EdgevalError as exc:
        errors.append(InputError.from_exception(role, exc))
        return None, {"path": str(path), "format": None, "sha256": None, "bytes": None}
    return artifact, artifact.to_json()


__all__ = ["check", "announce", "prepare", "publish", "Publication", "CheckOptions", "outputs_for", "UsageError"]
