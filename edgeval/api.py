"""The Python API: ``edgeval.check(candidate, baseline=None, policy=None, ...) -> Report``.

A few named steps: read the inputs, pick the validators, run them (each failure contained in its own check),
assemble the report, hand it to sinks. Bad input never raises out of :func:`check`; it becomes a report with
verdict ``error`` and exit code 3, so that a pipeline always gets a report to keep.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .artifacts import Artifact, load_artifact
from .environment import environment
from .errors import EdgevalError, UsageError
from .plugins import plugin_manager, select_validators
from .policy import Policy
from .report import Check, InputError, Report
from .validators.base import RunContext, run_validator


@dataclass(frozen=True)
class CheckOptions:
    """Options of one check run that are not thresholds (those live in the :class:`Policy`)."""

    tokenizer: str | None = None
    validators: Sequence[str] | None = None
    seed: int = 0
    threads: int | None = None
    disabled_plugins: Sequence[str] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def check(candidate: str | Path, baseline: str | Path | None = None, policy: Policy | str | Path | None = None,
          *, options: CheckOptions | None = None, progress: Callable[[str], None] | None = None,
          **option_kwargs: Any) -> Report:
    """Gate ``candidate`` against ``baseline`` under ``policy``; returns the :class:`Report` (never raises for
    bad input: see ``report.verdict`` / ``report.errors``). Usage errors (unknown validator) do raise."""
    options = options or CheckOptions(**option_kwargs)
    started = time.perf_counter()
    errors: list[InputError] = []
    policy_obj = _read_policy(policy, errors)
    validators = select_validators(options.validators or policy_obj.validators, options.disabled_plugins)
    cand, cand_json = _read_artifact("candidate", candidate, errors)
    base, base_json = _read_artifact("baseline", baseline, errors) if baseline is not None else (None, None)
    checks: list[Check] = []
    results: dict[str, Any] = {}
    if not errors:
        ctx = RunContext(cand, base, policy_obj, seed=options.seed, tokenizer=options.tokenizer,
                         threads=options.threads, options=dict(options.extra),
                         **({"progress": progress} if progress else {}))
        try:
            for validator in validators:
                outcome = run_validator(validator, ctx)
                checks.extend(outcome.checks)
                results[validator.name] = outcome.results
        finally:
            ctx.close()
        if base_json is None:  # no --baseline model: name the one that made the saved BBQ predictions, if any
            from .validators.bbq.predictions import baseline_artifact
            base_json = baseline_artifact(results)
    report = Report(candidate=cand_json, baseline=base_json, policy=policy_obj.to_json(), checks=tuple(checks),
                    results=results, errors=tuple(errors), environment=environment(options.threads),
                    run={"validators": [v.name for v in validators], "seed": options.seed,
                         "duration_s": round(time.perf_counter() - started, 3),
                         "policy_source": policy_obj.source, "tokenizer": options.tokenizer,
                         "disabled_plugins": list(options.disabled_plugins)})
    return report


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


def _read_policy(policy: Policy | str | Path | None, errors: list[InputError]) -> Policy:
    if isinstance(policy, Policy):
        return policy
    if policy is None:
        return Policy.default()
    try:
        return Policy.load(policy)
    except EdgevalError as exc:
        errors.append(InputError.from_exception("policy", exc))
        return Policy.default()


def _read_artifact(role: str, path: str | Path, errors: list[InputError]) -> tuple[Artifact | None, dict]:
    try:
        artifact = load_artifact(path)
    except EdgevalError as exc:
        errors.append(InputError.from_exception(role, exc))
        return None, {"path": str(path), "format": None, "sha256": None, "bytes": None}
    return artifact, artifact.to_json()


__all__ = ["check", "announce", "CheckOptions", "UsageError"]
