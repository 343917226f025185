"""Per-item predictions sidecar: gzip JSON Lines, one header line then one prediction per line.

The header records how the predictions were made (mode, orders, prompt version, model sha256, runtime); a
baseline predictions file is accepted only when these match the candidate's run, so that two differently scored
runs are never compared. Written atomically; the report references the file with its sha256.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from ...errors import DataError
from .types import Prediction

FORMAT = "edgeval-bbq-predictions"
FORMAT_VERSION = 1
MUST_MATCH = ("mode", "orders", "prompt_version")


def write_predictions(path: Path, predictions: Iterable[Prediction], header: dict[str, Any]) -> str:
    """Write the sidecar atomically; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write((json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **header}) + "\n").encode())
            for p in predictions:
                gz.write((json.dumps(asdict(p), separators=(",", ":")) + "\n").encode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_predictions(path: Path) -> tuple[dict[str, Any], list[Prediction]]:
    """(header, predictions); a missing, corrupt or foreign file raises :class:`DataError` naming file:line."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        raise DataError("predictions file not found", path=path) from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"not a readable gzip predictions file: {exc}", path=path) from None
    header = _parse(path, 1, lines[0] if lines else "")
    if header.get("format") != FORMAT:
        raise DataError(f"not an edgeval BBQ predictions file (format={header.get('format')!r})", path=path)
    return header, [_prediction(path, n, line) for n, line in enumerate(lines[1:], start=2)]


def _parse(path: Path, line_no: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise DataError(f"{path}:{line_no}: invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}:{line_no}: expected a JSON object")
    return value


def _prediction(path: Path, line_no: int, line: str) -> Prediction:
    raw = _parse(path, line_no, line)
    try:
        raw["scores"] = tuple(raw.get("scores", ()))
        raw["order_letters"] = tuple(raw.get("order_letters", ()))
        return Prediction(**raw)
    except TypeError as exc:
        raise DataError(f"{path}:{line_no}: not a prediction record: {exc}") from None


def check_compatible(header: dict[str, Any], expected: dict[str, Any], path: Path) -> None:
    """Raise DataError when a saved baseline was scored differently from the candidate run."""
    for key in MUST_MATCH:
        if header.get(key) != expected.get(key):
            raise DataError(f"baseline predictions were made with {key}={header.get(key)!r}, this run uses "
                            f"{expected.get(key)!r}; re-run the baseline with the same settings", path=path)
