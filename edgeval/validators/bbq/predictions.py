"""Per-item predictions sidecar: gzip JSON Lines, one header line then one prediction per line.

Format (``schemas/bbq-predictions.schema.json``, version 2): the header says who made the predictions (role,
``model_sha256`` of the model artifact, its runtime, path, format and bytes), on what data (``sample_fingerprint``
of the sampled keys and seed, ``data_fingerprint`` of the BBQ files read) and with which scoring settings (every
key of the run's ``scoring`` dict: mode, orders, prompt version, ...). Written atomically; the report references
the file with its sha256.

A saved baseline (``--baseline-predictions``) is trusted only after :func:`read_predictions` (schema-checked
header and records; one ``file:line: what`` error for the first bad one) and :func:`check_baseline` (role,
model identity, data and every scoring setting equal the run's; every sampled item present with the same item
facts, and each answer follows from its scores by the tie rule). Each refusal is a
:class:`~edgeval.errors.DataError` naming the file and the field (exit 3).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ...errors import DataError
from . import prior
from .records import parse_line, record_from_json, schema_check
from .scoring import decide_scores
from .types import BBQItem, Key, Prediction

FORMAT = "edgeval-bbq-predictions"
FORMAT_VERSION = 2
#: header keys that say who made the predictions; every other header key is a scoring setting
IDENTITY_KEYS = ("format", "version", "role", "model_sha256", "model_path", "model_format", "model_bytes", "runtime")
#: record fields that restate the data; a saved record must agree with the loaded item on each
ITEM_FACTS = ("question_index", "context_condition", "question_polarity", "label", "unknown_idx", "biased_idx")
_ZERO_SHA = "0" * 64


# -- writing ----------------------------------------------------------------------------------------------------
def prediction_json(p: Prediction) -> str:
    """One record line (no newline); the same text in a sidecar and in a checkpoint."""
    return json.dumps(asdict(p), separators=(",", ":"), allow_nan=False)


def sidecar_bytes(predictions: Iterable[Prediction], header: dict[str, Any], check: bool = True) -> bytes:
    """The gzip bytes of a sidecar: deterministic (mtime 0, no file name), so equal inputs give equal files."""
    head = {"format": FORMAT, "version": FORMAT_VERSION, **header}
    if check:
        check_header(head, "<header being written>")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write((json.dumps(head, allow_nan=False) + "\n").encode())
        for p in predictions:
            gz.write((prediction_json(p) + "\n").encode())
    return buf.getvalue()


def write_predictions(path: Path, predictions: Iterable[Prediction], header: dict[str, Any], *,
                      check_header: bool = True) -> str:
    """Write the sidecar atomically; returns its sha256. ``check_header=False`` only for a tool's own cache
    (a benchmark's): a file without the identity fields is refused wherever the gate reads one."""
    from ...report import atomic_write_bytes

    data = sidecar_bytes(predictions, header, check=check_header)
    atomic_write_bytes(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def data_fingerprint(file_sha256: dict[str, str], metadata: Path | None = None) -> str:
    """sha256 over the BBQ files read (name and sha256 of each, sorted) and the target_loc metadata file."""
    digest = hashlib.sha256()
    for name, sha in sorted(file_sha256.items()):
        digest.update(f"{name}\t{sha}\n".encode())
    if metadata is not None:
        digest.update(f"metadata\t{hashlib.sha256(Path(metadata).read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


# -- reading ----------------------------------------------------------------------------------------------------
def read_predictions(path: Path) -> tuple[dict[str, Any], list[Prediction]]:
    """(header, predictions) of a sidecar. A missing, torn, foreign or malformed file raises :class:`DataError`
    with one line naming ``file:line`` and what is wrong; records are schema-checked and their keys unique."""
    header, preds, _ = read_sidecar(path)
    return header, preds


def read_sidecar(path: Path) -> tuple[dict[str, Any], list[Prediction], str]:
    """:func:`read_predictions` plus the sha256 of the very bytes that were read."""
    path = Path(path)
    lines, sha = _lines(path)
    if not lines:
        raise DataError("empty predictions file (no header line)", path=path)
    header = parse_line(lines[0], f"{path}:1")
    check_header(header, f"{path}:1")
    preds: list[Prediction] = []
    seen: dict[Key, int] = {}
    for n, line in enumerate(lines[1:], start=2):
        where = f"{path}:{n}"
        pred = record_from_json(parse_line(line, where), where)
        if pred.key in seen:
            raise DataError(f"{where}: duplicate record for {pred.key} (first on line {seen[pred.key]})")
        seen[pred.key] = n
        preds.append(pred)
    return header, preds, sha


def read_cache(path: Path) -> tuple[dict[str, Any], list[Prediction]]:
    """A tool's own cache of predictions (benchmarks): format versions 1 and 2, records schema-checked, the
    header not (version 1 had no identity fields). Never for a file the gate trusts: that is
    :func:`read_predictions` plus :func:`check_baseline`."""
    path = Path(path)
    lines, _ = _lines(path)
    header = parse_line(lines[0], f"{path}:1") if lines else {}
    if header.get("format") != FORMAT or header.get("version") not in (1, FORMAT_VERSION):
        raise DataError(f"{path}:1: not an edgeval BBQ predictions file of version 1 or {FORMAT_VERSION}")
    old = header.get("version") == 1              # version 1 records have no question_index: "" (filled later)
    return header, [record_from_json({"question_index": "", **raw} if old else raw, f"{path}:{n}")
                    for n, raw, in ((n, parse_line(line, f"{path}:{n}")) for n, line in enumerate(lines[1:], 2))]


def check_header(header: dict[str, Any], where: str) -> None:
    """Format, version, then the header schema; DataError ``where: field: what`` on the first problem."""
    if header.get("format") != FORMAT:
        raise DataError(f"{where}: not an edgeval BBQ predictions file (format={header.get('format')!r})")
    if header.get("version") != FORMAT_VERSION:
        raise DataError(f"{where}: predictions format version {header.get('version')!r}, this edgeval reads "
                        f"version {FORMAT_VERSION}; re-run the baseline to write a new file")
    schema_check("header", header, where)


def _lines(path: Path) -> tuple[list[str], str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("predictions file not found", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the predictions file: {exc.strerror or exc}", path=path) from None
    try:
        text = gzip.decompress(raw).decode("utf-8")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"not a complete gzip file (truncated or not gzip): {exc}", path=path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text inside the gzip: {exc.reason} at byte {exc.start}", path=path) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines, hashlib.sha256(raw).hexdigest()


# -- trusting a saved baseline ----------------------------------------------------------------------------------
def check_baseline(path: Path, header: dict[str, Any], preds: Sequence[Prediction], *, scoring: dict[str, Any],
                   items: Sequence[BBQItem], baseline_sha256: str | None,
                   candidate_sha256: str) -> dict[Key, Prediction]:
    """Refuse a saved baseline that is not this baseline's, on this data, scored this way; else key -> prediction."""
    _check_identity(path, header, baseline_sha256, candidate_sha256)
    _check_scoring(path, header, scoring)
    return _check_items(path, header, preds, items)


def _check_identity(path: Path, header: dict[str, Any], baseline_sha: str | None, candidate_sha: str) -> None:
    """Role and model: a baseline's file, of a real model, the --baseline model's when one is given, never the
    candidate's own. A candidate-role file is accepted only when --baseline names the model that made it (the
    dense model checked on its own first, as the demo does): the model identity then vouches for it."""
    model = header["model_sha256"]
    if model == _ZERO_SHA:
        raise DataError("model_sha256 is all zeros: the predictions are not tied to any model", path=path)
    if baseline_sha is not None and model != baseline_sha:
        raise DataError(f"model_sha256 {model[:12]}… is not the --baseline model's ({baseline_sha[:12]}…): "
                        "these predictions were made by another model", path=path)
    if header["role"] != "baseline" and baseline_sha is None:
        raise DataError(f"role is {header['role']!r}: these are a {header['role']}'s predictions, not a "
                        "baseline's; give the .bbq-baseline.jsonl.gz sidecar of a run with --baseline, or "
                        "--baseline MODEL for the model that made them", path=path)
    if model == candidate_sha and baseline_sha != candidate_sha:
        raise DataError(f"model_sha256 {model[:12]}… is the candidate's own: a model cannot be its own baseline",
                        path=path)


def _check_scoring(path: Path, header: dict[str, Any], scoring: dict[str, Any]) -> None:
    saved = {k: v for k, v in header.items() if k not in IDENTITY_KEYS}
    for key in sorted(set(saved) | set(scoring)):
        if key not in saved:
            raise DataError(f"{key} is missing from the header (this run uses {key}={scoring[key]!r}); re-run "
                            "the baseline with this edgeval", path=path)
        if key not in scoring:
            raise DataError(f"unknown header field {key}={saved[key]!r}: made by another edgeval version or "
                            "edited", path=path)
        if type(saved[key]) is not type(scoring[key]) or saved[key] != scoring[key]:
            raise DataError(f"baseline predictions were made with {key}={_short(saved[key])}, this run uses "
                            f"{_short(scoring[key])}; re-run the baseline with the same settings", path=path)


def _short(value: Any) -> str:
    """repr, with a long digest cut to 12 characters."""
    text = repr(value)
    return text[:13] + "…'" if isinstance(value, str) and len(value) > 20 else text


def _check_items(path: Path, header: dict[str, Any], preds: Sequence[Prediction],
                 items: Sequence[BBQItem]) -> dict[Key, Prediction]:
    by_key = {p.key: p for p in preds}
    wanted = {it.key for it in items}
    missing = [it.key for it in items if it.key not in by_key]
    if missing:
        raise DataError(f"baseline predictions lack {len(missing)} of the {len(items)} sampled items (e.g. "
                        f"{missing[0]}); were they made with the same data, limit and seed?", path=path)
    extra = [p.key for p in preds if p.key not in wanted]
    if extra:
        raise DataError(f"{len(extra)} record(s) for items not in this run's sample (e.g. {extra[0]})", path=path)
    letter = header["mode"] == "letter"
    subset, log_prior = _saved_prior(path, header, items, by_key)
    for line, item in _lines_of(preds, items):
        n_orders, shown = header["orders"] if letter else 0, None
        if subset is not None:
            n_orders = 3 if item.key in subset else 1
            shown = None if item.key in subset else prior.shown_order(item.key)
        where = f"{path}:{line}"
        _check_record(where, by_key[item.key], item, header, n_orders)
        if letter:
            _check_rows(where, by_key[item.key], item, n_orders, shown, log_prior)
    return by_key


def _saved_prior(path: Path, header: dict[str, Any], items: Sequence[BBQItem], by_key: dict[Key, Prediction]):
    """(the prior subset's keys, the letter prior re-derived from its saved rows) of a prior-mode file, else
    (None, None)."""
    if not prior.active(header):
        return None, None
    subset = prior.prior_subset(items, header["prior_items"])
    try:
        return subset, prior.estimate_prior([by_key[k] for k in subset])
    except DataError as exc:
        raise DataError(str(exc), path=path) from None


def _check_record(where: str, pred: Prediction, item: BBQItem, header: dict[str, Any], n_orders: int) -> None:
    """The record's item facts are the data's, its shape is the mode's, and its answer follows from its scores."""
    for name in ITEM_FACTS:
        if getattr(pred, name) != getattr(item, name):
            raise DataError(f"{where}: {name}={getattr(pred, name)!r} but the data says "
                            f"{getattr(item, name)!r} for {item.key}")
    if len(pred.scores) != 3 or len(pred.order_letters) != n_orders:
        raise DataError(f"{where}: expected 3 scores and {n_orders} order letters ({header['mode']} mode, "
                        f"orders={header['orders']}), got {len(pred.scores)} and {len(pred.order_letters)}")
    answer, _ = decide_scores(pred.scores)
    if pred.pred != answer or bool(pred.extra.get("tie")) != (answer is None):
        raise DataError(f"{where}: pred={pred.pred!r} (tie={bool(pred.extra.get('tie'))}) does not follow from "
                        f"its scores, which give {answer!r}")


#: tolerance (nats) when a saved record's scores and margin are re-derived from its rows (stored rounded to 1e-6)
ROW_TOLERANCE = 1e-5
#: how far a saved row's letter probabilities may sum from 1 (its values are rounded to 6 decimals)
LOGPROB_TOLERANCE = 1e-4


def _check_rows(where: str, pred: Prediction, item: BBQItem, n_rows: int, shown: int | None,
                log_prior) -> None:
    """A letter-mode record's scores, margin and letters follow from its rows of letter log-probabilities: summed
    over the cyclic orders, or (``shown``: one order of the prior mode) debiased by the saved subset's prior."""
    from ...logprobs import cyclic_orders
    from .scoring import _letter_prediction

    rows = pred.extra.get("order_logprobs")
    if rows is None or len(rows) != n_rows:
        raise DataError(f"{where}: expected {n_rows} row(s) of letter log-probabilities (extra.order_logprobs), "
                        f"got {0 if rows is None else len(rows)}")
    if pred.extra.get("shown_order") != shown:
        raise DataError(f"{where}: shown_order {pred.extra.get('shown_order')!r} where "
                        f"{'none belongs' if shown is None else f'this item is shown in order {shown}'}")
    array = np.asarray(rows, dtype=float)
    if array.ndim != 2 or array.shape[1] != 3 or not np.isfinite(array).all():
        raise DataError(f"{where}: a row of letter log-probabilities is not 3 finite numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        mass = np.exp(array).sum(axis=1)  # log-softmaxed over the 3 letters: each row's probabilities sum to 1
    if (array > ROW_TOLERANCE).any() or not np.allclose(mass, 1.0, rtol=0, atol=LOGPROB_TOLERANCE):
        raise DataError(f"{where}: rows {[[round(float(x), 6) for x in r] for r in array]} are not letter "
                        "log-probabilities (each row's probabilities must sum to 1)")
    with np.errstate(over="ignore", invalid="ignore"):   # huge finite rows: refused below, without numpy's noise
        want = (prior.debiased(item, shown, rows[0], log_prior) if shown is not None
                else _letter_prediction(item, cyclic_orders(n_rows), [np.asarray(r, dtype=float) for r in rows]))
    # a shown letter is the argmax of the unrounded row: any letter within the rounding of the best one is it
    letters_ok = len(pred.order_letters) == len(rows) and all(
        row[letter] >= max(row) - ROW_TOLERANCE for letter, row in zip(pred.order_letters, rows, strict=True))
    same = (np.allclose(want.scores, pred.scores, rtol=0, atol=ROW_TOLERANCE)
            and pred.margin is not None and want.margin is not None
            and abs(want.margin - pred.margin) <= ROW_TOLERANCE and letters_ok)
    if not same:
        raise DataError(f"{where}: scores {list(pred.scores)}, margin {pred.margin} and letters "
                        f"{list(pred.order_letters)} do not follow from its rows of letter log-probabilities "
                        f"({[round(x, 6) for x in want.scores]}, {want.margin:.6g}, {list(want.order_letters)})")


def _lines_of(preds: Sequence[Prediction], items: Sequence[BBQItem]):
    line_of = {p.key: n for n, p in enumerate(preds, start=2)}
    return sorted((line_of[it.key], it) for it in items)


def baseline_identity(header: dict[str, Any], path: Path, sha256: str) -> dict[str, Any]:
    """What the report records about a saved baseline: the file (path, sha256) and the model it came from."""
    return {"path": str(path), "sha256": sha256, "source": "saved", "role": header["role"],
            "model_sha256": header["model_sha256"], "model_path": header.get("model_path"),
            "model_format": header.get("model_format"), "model_bytes": header.get("model_bytes"),
            "runtime": header["runtime"]}


def baseline_artifact(results: dict[str, Any]) -> dict[str, Any] | None:
    """The report's ``baseline`` when no baseline model was given but saved BBQ predictions were: the model
    named by the sidecar, marked with where that identity came from. None otherwise."""
    saved = (results.get("bbq") or {}).get("baseline_predictions") or {}
    if saved.get("source") != "saved":
        return None
    return {"path": saved.get("model_path") or f"(unknown: see {saved['path']})",
            "format": saved.get("model_format"), "sha256": saved["model_sha256"], "bytes": saved.get("model_bytes"),
            "source": f"bbq baseline predictions {saved['path']} (sha256 {saved['sha256']})"}
