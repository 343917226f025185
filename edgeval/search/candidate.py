"""One candidate, end to end, in whatever process the executor chose: build (or reuse) the compressed artifact,
gate it against the dense baseline with the baseline's saved BBQ predictions, return a plain-JSON record.

A :class:`Job` holds only plain values (it crosses process and machine boundaries: process pool, Ray). Its
``key`` is the cache key of the evaluation; ``artifact_key`` that of the compressed model (see :func:`keys`).
An :class:`~edgeval.errors.EdgevalError` (the candidate cannot be built or read) and a report with verdict
``error`` both become a record with status ``failed``; any other exception propagates, so that the executor can
retry it (Ray) before recording it as failed.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import environment
from .._version import __version__
from ..errors import EdgevalError

MODEL_DIR = "model"


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to build and gate one candidate (plain values only)."""

    key: str
    artifact_key: str
    axis: str
    index: int
    sparsity: float | None
    methods: list[tuple[str, dict[str, Any]]]
    source: str
    target: str | None
    export: dict[str, Any]
    baseline: str
    predictions: str | None
    policy: dict[str, Any]
    out_dir: str
    seed: int = 0
    threads: int | None = None
    disabled: tuple[str, ...] = ()
    objective_keys: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.out_dir) / "candidates" / self.artifact_key[:16]

    @property
    def report_path(self) -> Path:
        return self.folder / f"report-{self.key[:12]}.json"


def digest(doc: Any) -> str:
    """sha256 of the canonical JSON of ``doc``."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def keys(source_sha256: str, methods: list[tuple[str, dict[str, Any]]], export: dict[str, Any],
         gate: dict[str, Any]) -> tuple[str, str]:
    """(evaluation key, artifact key). The artifact key covers the source, the chain with its settings, the
    exporter options, the edgeval version and the code that builds and gates (:func:`~edgeval.environment.
    build_fingerprint`: edgeval's source, package and plugin versions; a changed compressor or validator is
    never answered from the cache); the evaluation key adds ``gate`` (policy, baseline, saved predictions,
    seed): a changed policy re-gates cached artifacts, it does not rebuild them."""
    artifact = digest({"source": source_sha256, "chain": [[m, s] for m, s in methods], "export": export,
                       "edgeval": __version__, "code": environment.build_fingerprint()})
    return digest({"artifact": artifact, "gate": gate}), artifact


def run_candidate(job: Job) -> dict[str, Any]:
    """Build and gate ``job``'s candidate; the record of what happened (see the module docstring)."""
    started = time.perf_counter()
    try:
        model = build(job)
        report = gate(job, model)
    except EdgevalError as exc:
        return failed_record(job, f"{type(exc).__name__}: {exc}", started, int(exc.exit_code))
    return record(job, report, model, started)


def build(job: Job) -> Path:
    """The candidate's artifact: reused when ``model/compression.json`` names a file that is there with its
    recorded sha256 (a folder renamed into place whole, see :func:`edgeval.atomic.atomic_dir`), else compressed."""
    from ..converters.chain import ExportOptions, compress

    out = job.folder / MODEL_DIR
    kept = reusable(out)
    if kept is not None:
        return kept
    result = compress(job.source, out, job.methods, to=job.target, export=ExportOptions(**job.export),
                      overwrite=True, threads=job.threads, disabled=job.disabled)
    return result.path


def reusable(out: Path) -> Path | None:
    """The model file in ``out`` that its ``compression.json`` names, if it is there with the recorded sha256."""
    from ..artifacts import load_artifact
    from ..converters.manifest import read_manifest

    if not (out / "compression.json").is_file():
        return None
    try:
        output = (read_manifest(out) or {})["output"]
        path = out / Path(output.get("path", "")).name
        return path if path.exists() and load_artifact(path).sha256 == output.get("sha256") else None
    except (EdgevalError, KeyError, TypeError, OSError):
        return None


def gate(job: Job, model: Path) -> Any:
    """``edgeval.check`` of ``model`` against the baseline, published to ``job.report_path``."""
    from ..api import CheckOptions, check, outputs_for, prepare, publish
    from ..policy import Policy

    policy = Policy.from_dict(job.policy, source="edgeval search", disabled=job.disabled)
    keep = [job.predictions] if job.predictions else []
    prepare(job.report_path, None, keep=keep, disabled_plugins=job.disabled, protect=[model, job.baseline])
    inputs = {"bbq.baseline_predictions": job.predictions} if job.predictions and "bbq" in policy.validators else {}
    options = CheckOptions(validators=policy.validators, seed=job.seed, threads=job.threads,
                           disabled_plugins=job.disabled, outputs=outputs_for(job.report_path), inputs=inputs)
    report = check(model, job.baseline, policy, options=options)
    return publish(report, job.report_path, disabled_plugins=job.disabled).report


def _rel(path: Path | str, job: Job) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(job.out_dir).resolve()))
    except ValueError:
        return str(path)


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def base_record(job: Job, started: float) -> dict[str, Any]:
    return {"key": job.key, "artifact_key": job.artifact_key, "axis": job.axis, "index": job.index,
            "sparsity": job.sparsity, "methods": [[m, s] for m, s in job.methods],
            "elapsed_s": round(time.perf_counter() - started, 3)}


def failed_record(job: Job, error: str, started: float, exit_code: int = 4) -> dict[str, Any]:
    """A candidate that could not be built or gated (``exit_code``: 3 bad input, 4 a bug): recorded with its
    error, never a pass."""
    return {**base_record(job, started), "status": "failed", "outcome": "error", "verdict": "error",
            "exit_code": exit_code, "error": error.splitlines()[0] if error else "unknown error", "metrics": {},
            "report": None, "artifact": None}


def record(job: Job, report: Any, model: Path, started: float) -> dict[str, Any]:
    """The record of a gated candidate (status ``failed`` when the report's verdict is ``error``)."""
    from .metrics import metrics, outcome

    written = job.report_path.is_file()
    doc = {**base_record(job, started), "status": "done", "outcome": outcome(report.verdict),
           "verdict": report.verdict, "exit_code": report.exit_code, "error": None,
           "metrics": metrics(report.results, job.objective_keys),
           "report": {"path": _rel(job.report_path, job), "sha256": _sha(job.report_path)} if written else None,
           "artifact": {"path": _rel(model, job), "sha256": report.candidate.get("sha256")}}
    if report.verdict == "error":
        messages = [e.message for e in report.errors] + [c.message for c in report.checks if c.status == "error"]
        doc.update(status="failed", error=(messages or ["verdict error"])[0].splitlines()[0])
    return doc


def trusted(job: Job, rec: Any) -> bool:
    """Whether a journal record of ``job`` (read back from disk: it may have been edited or come from elsewhere)
    can be believed. A failed record is (it never counts as a pass). A gated one only when its report sits at
    ``job``'s own report path and says what the record says: verdict, candidate sha256 and metrics."""
    from ..report import Report
    from .metrics import metrics, outcome

    if not isinstance(rec, dict) or rec.get("key") != job.key:
        return False
    if rec.get("status") == "failed":
        return rec.get("outcome") == "error" and rec.get("verdict") == "error"
    where = rec.get("report")
    if rec.get("status") != "done" or not isinstance(where, dict) or not isinstance(where.get("path"), str):
        return False
    path = Path(job.out_dir) / where["path"]
    try:
        if path.resolve() != job.report_path.resolve():
            return False
        report = Report.load(path)
    except (EdgevalError, OSError, ValueError):
        return False
    artifact = rec.get("artifact")
    artifact = artifact if isinstance(artifact, dict) else {}
    return (report.verdict == rec.get("verdict") and outcome(report.verdict) == rec.get("outcome")
            and report.candidate.get("sha256") == artifact.get("sha256")
            and metrics(report.results, job.objective_keys) == rec.get("metrics"))


__all__ = ["Job", "keys", "digest", "run_candidate", "build", "gate", "record", "failed_record", "trusted"]
