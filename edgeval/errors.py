"""The edgeval exception tree.

The library raises; only :mod:`edgeval.cli` turns exceptions into exit codes. Every error carries a one-line,
user-facing message that names the file involved (when there is one) and what is wrong with it.
"""
from __future__ import annotations

import enum
from pathlib import Path


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``edgeval`` command (also recorded in every report)."""

    PASS = 0
    BLOCKED = 1
    USAGE = 2
    BAD_INPUT = 3
    INTERNAL = 4
    INCONCLUSIVE = 5


class EdgevalError(Exception):
    """Base class of every error edgeval raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.detail = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class BadInputError(EdgevalError):
    """Something the user gave us is unusable: a model, policy, tokenizer or data file."""

    exit_code = ExitCode.BAD_INPUT


class ModelError(BadInputError):
    """A model artifact is missing, unreadable, truncated, or has the wrong signature."""


class TokenizerError(BadInputError):
    """No tokenizer could be found or loaded for a model."""


class PolicyError(BadInputError):
    """A policy file is unreadable or does not match ``schemas/policy.schema.json``."""


class DataError(BadInputError):
    """An evaluation data file (e.g. BBQ jsonl) is missing, malformed or fails its checksum."""


class MeasurementError(BadInputError):
    """A validator ran but the measurement is invalid (e.g. NaN logits). Its check errors; the verdict is error."""


class MissingExtraError(BadInputError):
    """An optional dependency is not installed; the message names the extra that provides it."""

    def __init__(self, module: str, extra: str, purpose: str):
        super().__init__(f"{purpose} needs the '{module}' package, which is not installed: "
                         f"pip install 'edgeval[{extra}]'")
        self.module, self.extra = module, extra


class DeviceError(BadInputError):
    """A requested execution provider or device is not available on this machine (or did not start)."""


class UsageError(EdgevalError):
    """Options that do not fit together, an unknown validator name, and the like."""

    exit_code = ExitCode.USAGE


class SchemaViolation(EdgevalError):
    """A report failed validation against its own schema: a bug in edgeval, never the user's fault."""

    exit_code = ExitCode.INTERNAL


class DeploymentBlocked(EdgevalError):
    """Raised by :meth:`edgeval.Report.raise_for_verdict` when the verdict is not ``pass``; carries the report."""

    def __init__(self, report):
        self.report = report
        failed = [c.id for c in report.checks if c.status != "pass"]
        super().__init__(f"deployment {report.verdict}: " + (", ".join(failed) or "no check ran"))
        self.exit_code = ExitCode(report.exit_code)


def require(module: str, extra: str, purpose: str):
    """Import ``module`` lazily, or raise :class:`MissingExtraError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the package is there but broken: a real bug, not a missing extra
        raise MissingExtraError(module, extra, purpose) from None
