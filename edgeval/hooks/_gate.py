"""What every framework hook does around :func:`edgeval.check`: read the policy, run the check, then publish with
:func:`edgeval.api.publish` (the CLI's one publishing step): the report beside the model, ``edgeval_report_ready``
plugins, and the blessing marker last.

Private to :mod:`edgeval.hooks`; the hooks (``keras``, ``tflite``, ``onnxruntime``) are the public faces.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

from ..api import CheckOptions, check, prepare, publish
from ..errors import UsageError
from ..policy import Policy
from ..report import Report

PolicyLike = Union[Policy, str, Path, Mapping[str, Any], None]
OnBlock = Literal["raise", "record"]
REPORT_SUFFIX = ".edgeval-report.json"
log = logging.getLogger("edgeval.hooks")


def as_policy(policy: PolicyLike) -> Policy | str | Path:
    """A :class:`Policy` from a mapping (validated, merged over the defaults); paths are left to ``check``, which
    turns an unreadable policy file into an ``error`` report instead of raising."""
    if policy is None:
        return Policy.default()
    if isinstance(policy, Mapping):
        return Policy.from_dict(dict(policy), source="<hook>")
    return policy


def report_path_beside(model_path: str | Path) -> Path:
    """``dir/model.tflite`` → ``dir/model.edgeval-report.json``."""
    path = Path(model_path)
    return path.with_name(path.stem + REPORT_SUFFIX)


def check_on_block(on_block: str, allowed: Sequence[str] = ("raise", "record")) -> str:
    """Reject an ``on_block`` value early, naming the allowed ones."""
    if on_block not in allowed:
        raise UsageError(f"on_block must be one of {', '.join(map(repr, allowed))}, not {on_block!r}")
    return on_block


def run_check(candidate: str | Path, baseline: str | Path | None, policy: PolicyLike,
              validators: Sequence[str] | None, options: CheckOptions | None = None) -> Report:
    """:func:`edgeval.check` with hook defaults: progress goes to the ``edgeval.hooks`` logger."""
    base = options or CheckOptions()
    if validators is not None:
        base = replace(base, validators=list(validators))
    return check(candidate, baseline, as_policy(policy), options=base, progress=log.info)


def with_hook_info(report: Report, hook: str, **info: Any) -> Report:
    """The report with ``run.hook`` saying which hook produced it (and what it did with the artifact)."""
    return report.replace(run={**report.run, "hook": {"name": hook, **info}})


def finish(report: Report, report_path: str | Path, bless_dir: str | Path | None = None,
           disabled_plugins: Sequence[str] = ()) -> Report:
    """:func:`edgeval.api.publish`: write the report, tell plugins, then (last) the blessing marker. Returns the
    final report: a step that failed is recorded in it as an error (verdict error), and is logged."""
    done = publish(report, report_path, bless_dir=bless_dir, disabled_plugins=disabled_plugins, progress=log.info)
    for problem in done.problems:
        log.error("edgeval: %s", problem)
        warnings.warn(f"edgeval: {problem}", RuntimeWarning, stacklevel=3)
    log.info("edgeval: verdict %s (exit %d), report %s", done.report.verdict, done.exit_code,
             done.path or "NOT written")
    return done.report


def gate_file(candidate: str | Path, baseline: str | Path | None, *, policy: PolicyLike = None,
              validators: Sequence[str] | None = None, report_path: str | Path | None = None,
              bless_dir: str | Path | None = None, hook: str = "gate") -> Report:
    """Check a model file, write its report (default: beside it) and blessing marker; return the final report."""
    report_path = report_path or report_path_beside(candidate)
    # a run that dies half-way must not leave an old pass behind; a report path that is a model is refused
    prepare(report_path, bless_dir, protect=[candidate, baseline])
    report = with_hook_info(run_check(candidate, baseline, policy, validators), hook)
    return finish(report, report_path, bless_dir)
