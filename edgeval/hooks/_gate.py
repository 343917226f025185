"""What every framework hook does around :func:`edgeval.check`: read the policy, run the check, write the report
beside the model, write blessing markers, and hand the report to ``edgeval_report_ready`` plugins.

Private to :mod:`edgeval.hooks`; the hooks (``keras``, ``tflite``, ``onnxruntime``) are the public faces.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

from ..api import CheckOptions, announce, check
from ..errors import UsageError
from ..policy import Policy
from ..report import Report
from .blessing import bless, revoke

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
           disabled_plugins: Sequence[str] = ()) -> Path:
    """Write the report, then the blessing marker (``BLESSED`` only for a written pass), then tell plugins."""
    written = report.write(report_path)
    log.info("edgeval: verdict %s, report %s", report.verdict, written)
    if bless_dir is not None:
        bless(bless_dir, report, written)
    for problem in announce(report, written, disabled_plugins):
        warnings.warn(f"edgeval: {problem}", RuntimeWarning, stacklevel=3)
    return written


def gate_file(candidate: str | Path, baseline: str | Path | None, *, policy: PolicyLike = None,
              validators: Sequence[str] | None = None, report_path: str | Path | None = None,
              bless_dir: str | Path | None = None, hook: str = "gate") -> Report:
    """Check a model file, write its report (default: beside it) and blessing marker; return the report."""
    if bless_dir is not None:
        revoke(bless_dir)  # a run that dies half-way must not leave an old BLESSED behind
    report = with_hook_info(run_check(candidate, baseline, policy, validators), hook)
    finish(report, report_path or report_path_beside(candidate), bless_dir)
    return report
