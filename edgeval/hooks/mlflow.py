"""MLflow sink: log an edgeval report's numbers, settings and JSON to an MLflow run.

    from edgeval.hooks.mlflow import log_report
    run_id = log_report(report, "report.json")       # or `edgeval check … --mlflow`

What is logged (``prefix`` defaults to ``edgeval``):

- metrics: every numeric check value as ``edgeval.<check id>`` (``edgeval.size.ratio_to_baseline``), what each
  validator's ``metrics(results)`` gives as ``edgeval.<validator>.<key>`` (``edgeval.size.weight_sparsity``,
  ``edgeval.latency.p50_ms``, ``edgeval.bbq.srs`` / ``.delta_srs`` …, ``edgeval.perplexity.perplexity``; a
  validator without that method: every number of its results, flattened), ``edgeval.passed`` (1/0),
  ``edgeval.exit_code`` and ``edgeval.checks_failed``;
- params: ``edgeval.verdict``, candidate and baseline sha256/format, the validators run, the policy sections of
  those validators flattened (``edgeval.policy.size.max_ratio_to_baseline``);
- tag ``edgeval.verdict`` (searchable: ``tags."edgeval.verdict" = 'blocked'``);
- the report JSON as an artifact under ``edgeval/``.

The run: ``run_id`` when given, else the active run (``mlflow.start_run()`` around the call), else
``MLFLOW_RUN_ID``, else a new run (named after the candidate, in the experiment MLflow picks from
``MLFLOW_EXPERIMENT_NAME`` / ``MLFLOW_EXPERIMENT_ID``), finished afterwards. ``MLFLOW_TRACKING_URI`` is respected
as MLflow always does. Params cannot change once logged: log two reports into one run with different prefixes.

As a plugin (not registered automatically): ``plugin_manager().register(MlflowSink())``, or advertise it from
a package of yours so that every finished report (CLI and Python hooks alike) is logged::

    [project.entry-points.edgeval]
    mlflow = "edgeval.hooks.mlflow:sink"

Needs the ``mlflow`` extra (``pip install 'edgeval[mlflow]'``, which installs ``mlflow-skinny``).
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import require
from ..plugins import hookimpl
from ..report import Report

_PARAM_MAX = 500
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /:]")


def log_report(report: Report, report_path: str | Path | None = None, *, run_id: str | None = None,
               prefix: str = "edgeval") -> str:
    """Log ``report`` to MLflow (see the module for what and where); return the run id.

    ``report_path``: the written report to attach (None: the report is serialised to a temporary file)."""
    mlflow = require("mlflow", "mlflow", "logging edgeval reports to MLflow")
    client = mlflow.MlflowClient()
    target = run_id or _active_run_id(mlflow) or os.environ.get("MLFLOW_RUN_ID")
    if target:
        _log_all(mlflow, client, target, report, report_path, prefix)
        return target
    with mlflow.start_run(run_name=f"edgeval {Path(str(report.candidate.get('path'))).name}") as run:
        _log_all(mlflow, client, run.info.run_id, report, report_path, prefix)
        return run.info.run_id


def _active_run_id(mlflow: Any) -> str | None:
    active = mlflow.active_run()
    return active.info.run_id if active else None


def _log_all(mlflow: Any, client: Any, run_id: str, report: Report, report_path: str | Path | None,
             prefix: str) -> None:
    """Metrics, params and the verdict tag in batches, then the report artifact."""
    entities = mlflow.entities
    metrics = [entities.Metric(k, v, _now_ms(), 0) for k, v in report_metrics(report, prefix).items()]
    params = [entities.Param(k, v) for k, v in report_params(report, prefix).items()]
    for chunk in _chunks(metrics, 1000):
        client.log_batch(run_id, metrics=chunk)
    for chunk in _chunks(params, 100):
        client.log_batch(run_id, params=chunk)
    client.set_tag(run_id, f"{prefix}.verdict", report.verdict)
    _log_artifact(client, run_id, report, report_path, prefix)


def _log_artifact(client: Any, run_id: str, report: Report, report_path: str | Path | None, prefix: str) -> None:
    if report_path is not None and Path(report_path).is_file():
        client.log_artifact(run_id, str(report_path), artifact_path=prefix)
        return
    with tempfile.TemporaryDirectory(prefix="edgeval-mlflow-") as tmp:
        path = report.write(Path(tmp) / "edgeval-report.json")
        client.log_artifact(run_id, str(path), artifact_path=prefix)


# -- flattening ------------------------------------------------------------------------------------------------
def report_metrics(report: Report, prefix: str = "edgeval") -> dict[str, float]:
    """``{metric name: value}``: each validator's metrics, then numeric check values (which win on a shared
    name)."""
    out: dict[str, float] = {}
    for name, value in _result_numbers(report):
        _put_number(out, f"{prefix}.{name}", value)
    for check in report.checks:
        _put_number(out, f"{prefix}.{check.id}", check.value)
    failed = sum(c.status == "fail" for c in report.checks)
    out.update({f"{prefix}.passed": float(report.passed), f"{prefix}.exit_code": float(report.exit_code),
                f"{prefix}.checks_failed": float(failed)})
    return out


def _result_numbers(report: Report) -> Iterator[tuple[str, Any]]:
    """``(validator.key, value)``: what each validator's ``metrics(results)`` gives, or its results' numbers
    flattened when it has no such method (see :mod:`edgeval.render.views`)."""
    from ..render.views import validator_views

    for view in validator_views(report):
        yield from ((f"{view.name}.{key}", value) for key, value in view.metrics().items())


def _put_number(out: dict[str, float], key: str, value: Any) -> None:
    """Store finite real numbers (not bools) under a key MLflow accepts."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return
    out[_BAD_KEY_CHARS.sub("_", key)] = float(value)


def report_params(report: Report, prefix: str = "edgeval") -> dict[str, str]:
    """``{param name: text}``: verdict, artifacts' identity, validators, applied policy."""
    validators = list(report.run.get("validators") or [])
    raw: dict[str, Any] = {"verdict": report.verdict, "version": report.tool_version,
                           "validators": ",".join(validators)}
    for role, artifact in (("candidate", report.candidate), ("baseline", report.baseline or {})):
        raw.update({f"{role}.{k}": artifact.get(k) for k in ("path", "format", "sha256", "bytes") if artifact})
    for section in validators:
        if isinstance(report.policy.get(section), dict):
            raw.update(_flatten(report.policy[section], f"policy.{section}"))
    return {_BAD_KEY_CHARS.sub("_", f"{prefix}.{k}"): _text(v) for k, v in raw.items()}


def _flatten(mapping: dict[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{path}.{key}"))
        else:
            out[f"{path}.{key}"] = value
    return out


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _PARAM_MAX else text[:_PARAM_MAX - 1] + "…"


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- plugin ----------------------------------------------------------------------------------------------------
class MlflowSink:
    """An ``edgeval_report_ready`` plugin that logs every finished report with :func:`log_report`."""

    def __init__(self, run_id: str | None = None, prefix: str = "edgeval") -> None:
        self.run_id, self.prefix = run_id, prefix

    @hookimpl
    def edgeval_report_ready(self, report: Report, path: str | None) -> None:
        log_report(report, path, run_id=self.run_id, prefix=self.prefix)


#: the object an entry point can name: ``mlflow = "edgeval.hooks.mlflow:sink"``
sink = MlflowSink()

__all__ = ["log_report", "report_metrics", "report_params", "MlflowSink", "sink"]
