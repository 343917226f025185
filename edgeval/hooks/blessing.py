"""Blessing files for orchestrators (the TFX convention): ``BLESSED`` or ``NOT_BLESSED`` in a directory.

The stale marker is removed *before* the check runs (:func:`revoke`), so a run that dies half-way leaves no
``BLESSED`` behind: only a finished run with verdict ``pass`` writes ``BLESSED``. Each marker holds a small JSON
document (verdict, exit code, report path and sha256, candidate sha256) so that it can be traced to its report.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..report import Report, atomic_write_text

BLESSED = "BLESSED"
NOT_BLESSED = "NOT_BLESSED"


def revoke(directory: str | Path) -> None:
    """Remove both markers (call before a check starts)."""
    directory = Path(directory)
    for name in (BLESSED, NOT_BLESSED):
        (directory / name).unlink(missing_ok=True)


def bless(directory: str | Path, report: Report, report_path: str | Path | None) -> Path:
    """Write ``BLESSED`` (verdict pass and the report on disk) or ``NOT_BLESSED``; return the marker's path."""
    directory = Path(directory)
    revoke(directory)
    written = Path(report_path) if report_path is not None and Path(report_path).is_file() else None
    name = BLESSED if report.passed and written is not None else NOT_BLESSED
    body = {"verdict": report.verdict, "exit_code": report.exit_code,
            "report": None if written is None else str(written),
            "report_sha256": None if written is None else hashlib.sha256(written.read_bytes()).hexdigest(),
            "candidate_sha256": report.candidate.get("sha256"), "created_at": report.created_at}
    return atomic_write_text(directory / name, json.dumps(body, indent=2) + "\n")
