"""A demo edgeval plugin: the validator ``demo_plugin`` and an ``edgeval_report_ready`` sink.

Registered through the ``edgeval`` entry-point group (see this package's pyproject.toml), like any third-party
plugin, and written against the public surface only (``edgeval.plugin``). The validator emits one passing check,
``demo_plugin.ok``, and a small result; its settings (:class:`DemoSettings`) are the policy's top-level
``demo_plugin:`` section. The sink writes a JSON marker file when ``EDGEVAL_DEMO_MARKER`` names one.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from edgeval.plugin import Check, Outcome, RunContext, Settings, hookimpl, setting

MARKER_ENV = "EDGEVAL_DEMO_MARKER"


@dataclass(frozen=True)
class DemoSettings(Settings):
    """The ``demo_plugin`` policy section."""

    greeting: str = setting("hi", "what the validator says", minLength=1)
    repeat: int = setting(1, "how often", minimum=1, maximum=3)


class DemoValidator:
    """Always passes; reports the candidate's format and the settings it was given."""

    name = "demo_plugin"
    summary = "demo plugin validator (tests): one passing check"
    Settings = DemoSettings

    def run(self, ctx: RunContext, settings: DemoSettings) -> Outcome:
        fmt = ctx.candidate.format
        check = Check("demo_plugin.ok", self.name, "pass", "demo", value=settings.repeat,
                      message=f"demo plugin saw a {fmt} model")
        return Outcome((check,), {"format": fmt, "settings": settings.to_json(), "answer": 42})


@hookimpl
def edgeval_validators() -> list[Any]:
    return [DemoValidator()]


@hookimpl
def edgeval_report_ready(report: Any, path: str | None) -> None:
    marker = os.environ.get(MARKER_ENV)
    if marker:
        with open(marker, "w", encoding="utf-8") as fh:
            json.dump({"verdict": report.verdict, "path": path, "checks": [c.id for c in report.checks]}, fh)
