"""A demo edgeval plugin: the validator ``demo_plugin`` and an ``edgeval_report_ready`` sink.

Registered through the ``edgeval`` entry-point group (see this package's pyproject.toml), like any third-party
plugin. The validator emits one passing check, ``demo_plugin.ok``, and a small result; its settings come from the
policy's ``plugins.demo_plugin`` table. The sink writes a JSON marker file when ``EDGEVAL_DEMO_MARKER`` names one.
"""
from __future__ import annotations

import json
import os
from typing import Any

from edgeval.plugins import hookimpl
from edgeval.report import Check
from edgeval.validators.base import Outcome, RunContext

MARKER_ENV = "EDGEVAL_DEMO_MARKER"


class DemoValidator:
    """Always passes; reports the candidate's format and the settings it was given."""

    name = "demo_plugin"
    summary = "demo plugin validator (tests): one passing check"

    def run(self, ctx: RunContext, settings: dict[str, Any]) -> Outcome:
        fmt = ctx.candidate.format
        check = Check("demo_plugin.ok", self.name, "pass", "demo", value=1, message=f"demo plugin saw a {fmt} model")
        return Outcome((check,), {"format": fmt, "settings": settings, "answer": 42})


@hookimpl
def edgeval_validators() -> list[Any]:
    return [DemoValidator()]


@hookimpl
def edgeval_report_ready(report: Any, path: str | None) -> None:
    marker = os.environ.get(MARKER_ENV)
    if marker:
        with open(marker, "w", encoding="utf-8") as fh:
            json.dump({"verdict": report.verdict, "path": path, "checks": [c.id for c in report.checks]}, fh)
