"""``compression.json``: what was done to a model, step by step, and what each step measured.

One versioned document (``edgeval.compression/1``, schema ``schemas/compression.schema.json``) beside every
output of ``edgeval compress`` and ``edgeval prune``: the source artifact (path, format, sha256, bytes), the
output artifact, and one entry per step — the method and its kind (``prune``, ``export``, ``quantize``), the
requested settings, the input and output formats, the measured figures (whole model and per layer), the versions
of the tools that did the work, warnings and wall time. It replaces ``pruning.json`` (``edgeval.pruning/1``),
which :func:`read_manifest` still reads, as a one-step chain.
"""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from .._version import __version__

MANIFEST_NAME = "compression.json"
LEGACY_NAME = "pruning.json"
SCHEMA_ID = "edgeval.compression/1"
#: keys of a pruning record that describe the settings rather than what was measured
_PRUNE_SETTINGS = ("method", "pattern", "per_row", "seed")
_PRUNE_DROP = ("schema", "layers", "warnings", "environment", "edgeval_version", "source", "layers_included")


def step_entry(method: str, kind: str, settings: dict[str, Any], formats: tuple[str, str], *,  # noqa: PLR0913  (one manifest entry's fields)
               measured: dict[str, Any] | None = None, layers: dict[str, Any] | None = None,
               tools: dict[str, str] | None = None, warnings: list[str] | None = None,
               elapsed_s: float = 0.0) -> dict[str, Any]:
    """One step of the chain as the manifest records it."""
    return {"method": method, "kind": kind, "settings": settings, "input_format": formats[0],
            "output_format": formats[1], "measured": measured or {}, "layers": layers or {},
            "tools": tools or {}, "warnings": list(warnings or []), "elapsed_s": round(max(elapsed_s, 0.0), 3)}


def prune_step(record: dict[str, Any], formats: tuple[str, str] = ("hf", "hf")) -> dict[str, Any]:
    """A pruning record (what ``pruning.json`` held) as a ``prune`` step."""
    settings = {key: record[key] for key in _PRUNE_SETTINGS if key in record}
    settings["sparsity"] = record.get("requested_sparsity")
    measured = {k: v for k, v in record.items() if k not in _PRUNE_DROP and k not in _PRUNE_SETTINGS}
    return step_entry(record.get("method", "?"), "prune", settings, formats, measured=measured,
                      layers=record.get("layers") or {}, tools=record.get("environment") or {},
                      warnings=record.get("warnings") or [], elapsed_s=float(record.get("elapsed_s") or 0.0))


def build(source: dict[str, Any], output: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole manifest: source, output, steps, every step's warnings in order, versions."""
    return {"schema": SCHEMA_ID, "source": source, "output": output, "chain": [s["method"] for s in steps],
            "steps": steps, "warnings": [w for s in steps for w in s["warnings"]],
            "edgeval_version": __version__,
            "environment": {"python": platform.python_version(), "platform": platform.platform()}}


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest of an edgeval output folder, checked against its schema: ``compression.json``, else a legacy
    ``pruning.json`` turned into a one-step chain (``"legacy": true``); None when the folder has neither. A file
    that breaks its schema is a one-line :class:`~edgeval.errors.DataError` naming it."""
    from ..schemas import read_side_file

    folder = Path(folder)
    if (folder / MANIFEST_NAME).is_file():
        return read_side_file("compression", folder / MANIFEST_NAME)
    if (folder / LEGACY_NAME).is_file():
        record = read_side_file("pruning", folder / LEGACY_NAME)
        output = {"path": str(folder), "format": "hf"}
        return {**build(record.get("source") or output, output, [prune_step(record)]), "legacy": True}
    return None


def prune_record(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The first prune step of a manifest as a pruning record (``method``, ``measured_sparsity`` …), or None."""
    for step in manifest.get("steps", []):
        if step["kind"] == "prune":
            measured = step["measured"]
            return {**step["settings"], **measured, "method": step["method"], "layers": step["layers"],
                    "warnings": step["warnings"],
                    "requested_sparsity": measured.get("requested_sparsity", step["settings"].get("sparsity"))}
    return None


__all__ = ["MANIFEST_NAME", "LEGACY_NAME", "SCHEMA_ID", "step_entry", "prune_step", "build", "read_manifest",
           "prune_record"]
