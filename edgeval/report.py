"""Checks, the report, and its one serialiser.

The verdict is derived, never stored by hand: ``error`` if any check errored, any input error was recorded or no
check ran; else ``blocked`` if any check failed; else ``inconclusive`` if any check could not decide (too few
items or too weak a signal for the claim a pass makes); else ``pass``. Every report is validated against
``schemas/report.schema.json`` before it is written, and written atomically (temp file + rename).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ._version import __version__
from .atomic import atomic_write_bytes, atomic_write_text  # noqa: F401  (re-exported: the project's one writer)
from .errors import BadInputError, EdgevalError, ExitCode, SchemaViolation, UsageError
from .ids import require_check_id
from .numbers import fmt_value
from .schemas import REPORT_SCHEMA_VERSION, validator_for

Status = Literal["pass", "fail", "inconclusive", "error"]
#: statuses that decide a check; any other (a plugin's typo) reads as an error, never as a pass
_DECIDED = ("pass", "fail", "inconclusive")
Verdict = Literal["pass", "blocked", "inconclusive", "error"]
ErrorKind = Literal["bad_input", "internal"]


@dataclass(frozen=True)
class Check:
    """One gated comparison: a metric, its value (and the baseline's), the threshold, and the outcome. ``id`` must
    match the report schema's pattern (see :mod:`edgeval.ids`); a bad one raises ``ValueError`` at once."""

    id: str
    validator: str
    status: Status
    metric: str
    value: Any = None
    baseline_value: Any = None
    threshold: Any = None
    message: str = ""
    direction: str = "none"
    error_kind: ErrorKind | None = None
    #: False for a report-only check (no threshold compared): it measures, it claims nothing. A run whose checks
    #: all pass but none is gated is inconclusive (edgeval.api.nothing_gated), never a pass.
    gated: bool = True

    def __post_init__(self) -> None:
        require_check_id(self.id, self.validator)  # here, not when the report is written after the whole run

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "validator": self.validator, "status": self.status, "metric": self.metric,
               "value": _scalar(self.value), "baseline_value": _scalar(self.baseline_value),
               "threshold": _scalar(self.threshold), "message": self.message, "direction": self.direction}
        if self.status == "error":
            out["error_kind"] = self.error_kind or "internal"
        if not self.gated:
            out["gated"] = False
        return out


def error_check(check_id: str, validator: str, exc: BaseException, metric: str = "") -> Check:
    """A check that could not be measured. Bad input stays bad input; anything else is an internal error."""
    kind, message = describe_error(exc)
    return Check(check_id, validator, "error", metric or check_id, message=message, error_kind=kind)


def describe_error(exc: BaseException) -> tuple[ErrorKind, str]:
    """``(kind, message)`` of an error: bad input stays bad input, and so does a usage error found only once a
    validator runs (an option its runtime cannot honour, say: the user's to fix, not a bug); anything else is an
    internal error."""
    kind: ErrorKind = "bad_input" if isinstance(exc, (BadInputError, UsageError)) else "internal"
    return kind, str(exc) if isinstance(exc, EdgevalError) else f"internal error: {type(exc).__name__}: {exc}"


def threshold_check(check_id: str, validator: str, metric: str, value: float | None, threshold: float | None, *,  # noqa: PLR0913  (a Check's fields)
                    direction: str = "lower_is_better", baseline_value: Any = None, unit: str = "") -> Check:
    """Compare ``value`` to a threshold. No threshold: reported, not gated. None/NaN value: error, never pass."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return Check(check_id, validator, "error", metric, value=None, baseline_value=baseline_value,
                     threshold=threshold, direction=direction, error_kind="bad_input",
                     message=f"{metric} could not be measured (got {value!r})")
    if threshold is None:
        return Check(check_id, validator, "pass", metric, value, baseline_value, None,
                     f"{metric} = {fmt_value(value)}{unit} (reported, no threshold set)", direction, gated=False)
    ok = value <= threshold if direction == "lower_is_better" else value >= threshold
    op = ("<=" if ok else ">") if direction == "lower_is_better" else (">=" if ok else "<")
    return Check(check_id, validator, "pass" if ok else "fail", metric, value, baseline_value, threshold,
                 f"{metric} = {fmt_value(value)}{unit} {op} {fmt_value(threshold)}{unit}", direction)


def _scalar(x: Any) -> Any:
    if x is None or isinstance(x, (bool, str)):
        return x
    if hasattr(x, "item"):  # numpy scalars
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


@dataclass(frozen=True)
class InputError:
    """An error outside any single check: the candidate could not be read, the policy is bad, …"""

    source: str
    kind: ErrorKind
    message: str

    @classmethod
    def from_exception(cls, source: str, exc: BaseException) -> "InputError":
        return cls(source, *describe_error(exc))  # a source ("sink:mlflow") is no check id: no Check built

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class Report:
    """The compliance report. Build it with :func:`edgeval.check`; read one back with :meth:`Report.load`."""

    candidate: dict[str, Any]
    baseline: dict[str, Any] | None
    policy: dict[str, Any]
    checks: tuple[Check, ...] = ()
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: tuple[InputError, ...] = ()
    environment: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    tool_version: str = __version__

    @property
    def verdict(self) -> Verdict:
        if self.errors or not self.checks or any(c.status not in _DECIDED for c in self.checks):
            return "error"
        if any(c.status == "fail" for c in self.checks):
            return "blocked"
        return "inconclusive" if any(c.status == "inconclusive" for c in self.checks) else "pass"

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def exit_code(self) -> int:
        verdict = self.verdict
        if verdict != "error":
            return int({"pass": ExitCode.PASS, "blocked": ExitCode.BLOCKED,
                        "inconclusive": ExitCode.INCONCLUSIVE}[verdict])
        kinds = [e.kind for e in self.errors] + [c.error_kind for c in self.checks if c.status == "error"]
        return int(ExitCode.INTERNAL if "internal" in kinds or not kinds else ExitCode.BAD_INPUT)

    def raise_for_verdict(self) -> "Report":
        """Return self when the verdict is pass; otherwise raise :class:`DeploymentBlocked` carrying this report."""
        from .errors import DeploymentBlocked

        if not self.passed:
            raise DeploymentBlocked(self)
        return self

    def check(self, check_id: str) -> Check:
        """The check with this id (KeyError if absent)."""
        for c in self.checks:
            if c.id == check_id:
                return c
        raise KeyError(check_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "edgeval", "version": self.tool_version},
            "created_at": self.created_at,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "policy": self.policy,
            "checks": [c.to_json() for c in self.checks],
            "results": _clean(self.results),
            "errors": [e.to_json() for e in self.errors],
            "environment": self.environment,
            "run": self.run,
        }

    def dumps(self) -> str:
        """The report as JSON text, validated against the schema."""
        doc = self.to_json()
        validate_report(doc)
        return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False) + "\n"

    def write(self, path: str | Path) -> Path:
        """Validate, then write atomically. Returns the path written."""
        return atomic_write_text(Path(path), self.dumps())

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Report":
        validate_report(doc)
        checks = tuple(Check(**{k: v for k, v in c.items()}) for c in doc["checks"])
        report = cls(candidate=doc["candidate"], baseline=doc["baseline"], policy=doc["policy"], checks=checks,
                     results=doc["results"], errors=tuple(InputError(**e) for e in doc["errors"]),
                     environment=doc["environment"], run=doc["run"], created_at=doc["created_at"],
                     tool_version=doc["tool"]["version"])
        if report.verdict != doc["verdict"] or report.exit_code != doc["exit_code"]:
            raise SchemaViolation(f"report says verdict={doc['verdict']} exit_code={doc['exit_code']}, "
                                  f"but its checks give {report.verdict}/{report.exit_code}")
        return report

    @classmethod
    def load(cls, path: str | Path) -> "Report":
        """Read a report and validate it against the schema (raises :class:`BadInputError` when it does not)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInputError("report file not found", path=path) from None
        except (OSError, ValueError) as exc:
            raise BadInputError(f"not a readable JSON report: {exc}", path=path) from None
        try:
            return cls.from_json(doc)
        except SchemaViolation as exc:
            raise BadInputError(f"not a valid edgeval report: {exc.detail}", path=path) from None

    def replace(self, **changes: Any) -> "Report":
        return replace(self, **changes)


def validate_report(doc: dict[str, Any]) -> None:
    """Raise :class:`SchemaViolation` naming the first place where ``doc`` breaks the report schema."""
    error = next(iter(sorted(validator_for("report").iter_errors(doc), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise SchemaViolation(f"report does not match its schema at {where}: {error.message}")


def check_problem(check: Any) -> str | None:
    """Why ``check`` cannot go into a report (one phrase), or None: a :class:`Check` that the report schema's
    ``check`` definition accepts (status one of pass/fail/inconclusive/error, numbers or text as values, …)."""
    if not isinstance(check, Check):
        return f"a check of type {type(check).__name__}, not a Check"
    schema = validator_for("report").schema
    checker = validator_for("report").evolve(schema={"$defs": schema["$defs"], "$ref": "#/$defs/check"})
    error = next(iter(checker.iter_errors(check.to_json())), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(check)"
    return f"a check '{check.id}' that does not match the report schema at {where}: {error.message}"


def results_problem(results: Any) -> str | None:
    """Why ``results`` cannot be a validator's entry in ``report.results`` (one phrase), or None."""
    if not isinstance(results, dict):
        return f"results of type {type(results).__name__}, not a dict"
    try:
        json.dumps(_clean(results), allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"results that cannot be written as JSON: {exc}"
    return None


def _clean(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, non-finite floats to None, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    return _scalar(obj)
