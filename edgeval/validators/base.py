"""The validator protocol and the context a validator runs in.

A validator measures one aspect of a candidate model (and its baseline), and turns the measurements into checks
using its policy section. Validators raise :class:`~edgeval.errors.EdgevalError` for bad input; :func:`run_validator`
turns any exception into an ``error`` check so that the other validators still run and the verdict fails closed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from ..artifacts import Artifact
from ..errors import BadInputError, EdgevalError, MeasurementError
from ..policy import Policy
from ..report import Check, error_check


@dataclass(frozen=True)
class Outcome:
    """What a validator returns: its checks and its measurements (``results[name]`` in the report)."""

    checks: tuple[Check, ...]
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """Everything one ``edgeval check`` run shares between validators. Runtimes are opened lazily, once."""

    candidate: Artifact
    baseline: Artifact | None
    policy: Policy
    seed: int = 0
    tokenizer: str | None = None
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda message: print(message, file=sys.stderr)
    _runtimes: dict[str, Any] = field(default_factory=dict, repr=False)

    def artifact(self, role: str) -> Artifact:
        if role == "baseline" and self.baseline is None:
            raise BadInputError("this validator needs a baseline model (--baseline)")
        return self.candidate if role == "candidate" else self.baseline

    def runtime(self, role: str = "candidate"):
        """The runtime of the candidate or the baseline, opened on first use."""
        if role not in self._runtimes:
            from ..runtimes import load_runtime

            self._runtimes[role] = load_runtime(self.artifact(role), tokenizer=self.tokenizer, threads=self.threads)
        return self._runtimes[role]

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

    def run(self, ctx: RunContext, settings: dict[str, Any]) -> Outcome:
        """Measure, compare with the thresholds in ``settings`` (its policy section), return checks + results."""


def run_validator(validator: Validator, ctx: RunContext) -> Outcome:
    """Run one validator; any exception becomes an ``error`` check (fail closed), never a pass."""
    name = validator.name
    try:
        outcome = validator.run(ctx, ctx.policy.section(name))
    except EdgevalError as exc:
        return Outcome((error_check(f"{name}.run", name, exc),), {"error": str(exc)})
    except Exception as exc:  # a bug in a validator must not take the report down with it
        return Outcome((error_check(f"{name}.run", name, exc),), {"error": f"{type(exc).__name__}: {exc}"})
    if not outcome.checks:
        empty = MeasurementError(f"validator '{name}' produced no checks")
        return Outcome((error_check(f"{name}.run", name, empty),), outcome.results)
    return outcome
