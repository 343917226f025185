"""Crash-safe BBQ scoring: predictions are checkpointed chunk by chunk as they are scored, and a rerun resumes.

Every scoring call's items are split into fixed chunks of whole context groups (:data:`CHUNK_GROUPS` groups,
in the order given), and each chunk is scored on its own. The split depends only on the items, never on where a
run stopped, so a resumed run scores the remaining chunks exactly as an uninterrupted run would (same batches,
same float bits) and writes a byte-identical predictions sidecar.

A checkpoint file holds one run key (model sha256, runtime and package versions, threads, the prompt format and
tokenizer fingerprint, the BBQ policy section, edgeval version and scoring code, role) and, appended as they
finish, one record per chunk: the chunk id (sha256 of its items' content) and its predictions. Each line is
``<sha256 of the JSON> <JSON>``;
a line that is torn (kill -9 mid-write) or fails its checksum ends the file: it and anything after it are
dropped (the file is truncated there) and those chunks are scored again.

Files: ``<cache>/checkpoints/bbq/<key>.ckpt`` (cache: ``$EDGEVAL_CACHE_DIR`` or the user cache directory, see
:mod:`edgeval.cache`), about 0.4 KB per item and role. A validator run that completes deletes its files; clear
by hand with ``rm -r <cache>/checkpoints``. A cache that cannot be written only turns checkpoints off.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ...cache import user_cache_dir
from ...errors import DataError
from .predictions import prediction_json
from .records import parse_line, record_from_json
from .types import BBQItem, Prediction

CHUNK_GROUPS = 32
FORMAT = "edgeval-bbq-checkpoint"
VERSION = 1
SUBDIR = ("checkpoints", "bbq")
PROGRESS_EVERY_S = 5.0


def checkpoint_dir() -> Path:
    return user_cache_dir().joinpath(*SUBDIR)


def chunks(items: Sequence[BBQItem], groups_per_chunk: int | None = None) -> list[list[BBQItem]]:
    """``items`` cut into consecutive runs of ``groups_per_chunk`` (default :data:`CHUNK_GROUPS`) context groups
    (category, example_id // 4)."""
    groups_per_chunk = groups_per_chunk or CHUNK_GROUPS
    out: list[list[BBQItem]] = []
    current: list[BBQItem] = []
    seen: set[tuple[str, int]] = set()
    for item in items:
        group = (item.category, item.example_id // 4)
        if group not in seen and len(seen) == groups_per_chunk:
            out.append(current)
            current, seen = [], set()
        seen.add(group)
        current.append(item)
    if current:
        out.append(current)
    return out


def chunk_id(chunk: Sequence[BBQItem]) -> str:
    """sha256 of the chunk's items, every field, in order: a chunk of other items or other data never matches."""
    text = json.dumps([asdict(it) for it in chunk], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_key(artifact, runtime, role: str, settings: Mapping[str, Any], threads: int | None) -> dict[str, Any]:
    """Everything that decides a role's predictions, besides the items: a checkpoint is reused only when equal."""
    from ..._version import __version__
    from ...environment import package_versions
    from .prompts import prompt_info

    options = {k: v for k, v in runtime.options.to_json().items() if k not in ("threads", "runtime")}
    return {"role": role, "model_sha256": artifact.sha256, "runtime": runtime.name, "threads": threads,
            "runtime_options": options, "prompt": prompt_info(runtime.tokenizer), "settings": dict(settings),
            "edgeval": __version__, "packages": package_versions(), "code": _code_fingerprint(type(runtime))}


def _code_fingerprint(runtime_cls: type) -> str:
    """sha256 of the source files that turn items into predictions (a development build changes them without a
    version bump): this package's prompts, scoring and types, and the runtime's module."""
    import inspect

    from . import prior, prompts, scoring, types

    digest = hashlib.sha256()
    for module in (prompts, scoring, prior, types, inspect.getmodule(runtime_cls)):
        source = getattr(module, "__file__", None)
        if source and Path(source).is_file():
            digest.update(Path(source).read_bytes())
    return digest.hexdigest()


def _line(obj: dict[str, Any]) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    return f"{hashlib.sha256(text.encode()).hexdigest()} {text}\n".encode()


def _unline(raw: bytes) -> dict[str, Any] | None:
    """The object of one complete line, or None when its checksum or JSON is bad."""
    digest, _, text = raw.partition(b" ")
    if hashlib.sha256(text).hexdigest().encode() != digest:
        return None
    try:
        return parse_line(text.decode("utf-8"), "checkpoint")
    except (DataError, UnicodeDecodeError):
        return None


class Checkpoint:
    """One role's append-only checkpoint file; see the module docstring."""

    def __init__(self, path: Path, key: dict[str, Any], emit: Callable[[str], None]):
        self.path, self.emit = path, emit
        self.key = json.loads(json.dumps(key, sort_keys=True, default=str))  # as it reads back from the file
        self.done: dict[str, list[Prediction]] = {}
        self.items_resumed = 0
        self.writable = True

    @classmethod
    def open(cls, key: dict[str, Any], emit: Callable[[str], None], resume: bool = True) -> "Checkpoint | None":
        """The checkpoint for ``key`` (its finished chunks loaded), or None when the cache cannot be written."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
        book = cls(checkpoint_dir() / f"{digest[:40]}.ckpt", key, emit)
        try:
            if not resume:
                book.path.unlink(missing_ok=True)
            book._load()
        except OSError as exc:
            emit(f"bbq: warning: checkpoints off ({book.path.parent}: {exc.strerror or exc}); a crash will "
                 "mean scoring again from the start")
            return None
        return book

    def _load(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        good, offset = 0, 0
        for line in raw.splitlines(keepends=True):
            obj = _unline(line[:-1]) if line.endswith(b"\n") else None
            if obj is None or not self._accept(obj, first=offset == 0):
                break
            offset += len(line)
            good += 1
        if good == 0:
            self._create()
        elif offset < len(raw):
            self.emit(f"bbq: checkpoint {self.path.name}: dropped a torn or damaged tail "
                      f"({len(raw) - offset} bytes); those items are scored again")
            os.truncate(self.path, offset)

    def _accept(self, obj: dict[str, Any], first: bool) -> bool:
        if first:
            return obj == {"format": FORMAT, "version": VERSION, "key": self.key}
        try:
            preds = [record_from_json(r, "checkpoint") for r in obj["predictions"]]
        except (DataError, KeyError, TypeError):
            return False
        self.done.setdefault(str(obj.get("chunk")), preds)
        return True

    def _create(self) -> None:
        from ...report import atomic_write_bytes

        atomic_write_bytes(self.path, _line({"format": FORMAT, "version": VERSION, "key": self.key}))

    def get(self, chunk: Sequence[BBQItem], cid: str) -> list[Prediction] | None:
        """The saved predictions of ``chunk`` (id ``cid``), when there are some for exactly its items."""
        preds = self.done.get(cid)
        if preds is None or [p.key for p in preds] != [it.key for it in chunk]:
            return None
        return preds

    def append(self, cid: str, preds: Sequence[Prediction]) -> None:
        """Append one finished chunk in a single write (then fsync); a failure turns checkpoints off."""
        self.done.setdefault(cid, list(preds))
        if not self.writable:
            return
        records = [json.loads(prediction_json(p)) for p in preds]
        data = _line({"chunk": cid, "predictions": records})
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.writable = False
            self.emit(f"bbq: warning: checkpoints off: cannot append to {self.path} ({exc.strerror or exc})")

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def score_in_chunks(items: Sequence[BBQItem], score: Callable[[list[BBQItem]], list[Prediction]],
                    book: Checkpoint | None, label: str, emit: Callable[[str], None]) -> list[Prediction]:
    """Predictions for ``items`` in their order: chunk by chunk, finished chunks taken from ``book``."""
    parts = [(chunk, chunk_id(chunk)) for chunk in chunks(items)]
    saved = {cid: preds for chunk, cid in parts if book is not None
             and (preds := book.get(chunk, cid)) is not None}
    resumed = sum(len(chunk) for chunk, cid in parts if cid in saved)
    if resumed and book is not None:
        emit(f"bbq: resuming {label} from checkpoint: {resumed}/{len(items)} items already scored")
        book.items_resumed += resumed
    out: list[Prediction] = []
    todo, started, last = len(items) - resumed, time.perf_counter(), time.perf_counter()
    for chunk, cid in parts:
        preds = saved.get(cid)
        if preds is None:
            preds = score(chunk)
            if book is not None:
                book.append(cid, preds)
            todo -= len(chunk)
            now = time.perf_counter()
            if now - last >= PROGRESS_EVERY_S or todo == 0:
                done = len(items) - resumed - todo
                emit(f"bbq: {label}: {done + resumed}/{len(items)} items scored "
                     f"({done / max(now - started, 1e-9):.1f} items/s)")
                last = now
        out.extend(preds)
    return out
