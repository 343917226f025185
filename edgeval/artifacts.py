"""Model artifacts: what file a model is, in which format, and its identity (sha256, bytes)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import ModelError

#: the built-in formats; plugins add more through the ``edgeval_detect_format`` hook
FORMATS = ("onnx", "tflite", "hf", "gguf", "genai")
GENAI_CONFIG = "genai_config.json"
_TFLITE_MAGIC = b"TFL3"
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class Artifact:
    """A model on disk. ``files`` lists every file that makes it up (e.g. ONNX external data)."""

    path: Path
    format: str
    sha256: str
    bytes: int
    files: tuple[Path, ...]

    def to_json(self) -> dict:
        return {"path": str(self.path), "format": self.format, "sha256": self.sha256, "bytes": self.bytes}


def detect_format(path: Path, disabled: Iterable[str] = ()) -> str:
    """Tell the model format from the path and its first bytes: plugins' ``edgeval_detect_format`` first, then the
    built-in formats; raise :class:`ModelError` when unknown."""
    if not path.exists():
        raise ModelError("no such file or directory", path=path)
    plugin = _plugin_format(path, disabled)
    if plugin is not None:
        return plugin
    if path.is_dir():
        return _directory_format(path)
    head = _head(path, 8)
    if len(head) == 0:
        raise ModelError("file is empty", path=path)
    suffix = path.suffix.lower()
    if suffix == ".tflite" or head[4:8] == _TFLITE_MAGIC:
        if head[4:8] != _TFLITE_MAGIC:
            raise ModelError("not a TFLite flatbuffer (no TFL3 identifier): truncated or not a model", path=path)
        return "tflite"
    if suffix == ".gguf" or head[:4] == _GGUF_MAGIC:
        if head[:4] != _GGUF_MAGIC:
            raise ModelError("not a GGUF file (bad magic)", path=path)
        return "gguf"
    if suffix == ".onnx":
        return "onnx"
    raise ModelError(f"unknown model format '{suffix or '(no suffix)'}': expected .onnx, .tflite, .gguf "
                     "or a Hugging Face model directory", path=path)


def _directory_format(path: Path) -> str:
    """A model directory: an ONNX Runtime GenAI bundle (``genai_config.json``) or a Hugging Face model."""
    if (path / GENAI_CONFIG).is_file():
        return "genai"
    if (path / "config.json").is_file():
        return "hf"
    raise ModelError(f"directory has no config.json (nor {GENAI_CONFIG}): not a Hugging Face model directory or "
                     "an ONNX Runtime GenAI bundle", path=path)


def _plugin_format(path: Path, disabled: Iterable[str]) -> str | None:
    """The format a plugin claims ``path`` is in, or None. A plugin answers with a format name (lower-case
    letters, digits, '-', '_') or None."""
    from .plugins import BUILTIN, plugin_manager

    for impl in plugin_manager(tuple(disabled)).hook.edgeval_detect_format.get_hookimpls():
        if impl.plugin_name == BUILTIN:
            continue
        fmt = impl.function(path=str(path))
        if fmt is None:
            continue
        if not (isinstance(fmt, str) and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", fmt)):
            from .errors import UsageError

            raise UsageError(f"plugin '{impl.plugin_name}' names the format of {path} {fmt!r}: a format is "
                             "lower-case letters, digits, '-' and '_'")
        return fmt
    return None


def _head(path: Path, n: int) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror}", path=path) from None


def onnx_external_files(path: Path) -> list[Path]:
    """Files holding an ONNX model's external tensor data (empty when there are none), read from the file's
    protobuf framing (:mod:`edgeval.onnxfile`: no weights loaded). A file that is not an ONNX model, a location
    outside the model's folder or a missing data file is a ModelError."""
    from .onnxfile import OnnxFileError, onnx_layout, refused_location

    try:
        locations = onnx_layout(path).external_locations
    except OnnxFileError as exc:
        raise ModelError(f"not a readable ONNX model ({exc}): truncated or garbage", path=path) from None
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror}", path=path) from None
    found: list[Path] = []
    for location in locations:
        if (why := refused_location(path.parent, location)) is not None:
            raise ModelError(f"external data file {location!r} {why}: refused", path=path)
        file = (path.parent / location).resolve()
        if not file.is_file():
            raise ModelError(f"external data file '{location}' is missing", path=path)
        if file not in found:
            found.append(file)
    return found


def onnx_tensors(graph):
    """Every constant tensor of an ONNX graph: initializers and Constant-node values, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            if attr.HasField("g"):
                yield from onnx_tensors(attr.g)
            for sub in attr.graphs:
                yield from onnx_tensors(sub)


#: files edgeval writes into a Hugging Face output folder to describe it: not part of the model (its identity and
#: size), so that a manifest can name the sha256 of the folder it sits in
DESCRIPTION_FILES = ("compression.json", "pruning.json")


def _files_of(path: Path, fmt: str) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not (p.parent == path
                                                                         and p.name in DESCRIPTION_FILES))
    if fmt == "onnx":
        return [path, *onnx_external_files(path)]
    return [path]


def sha256_files(files: list[Path], root: Path | None = None) -> str:
    """sha256 of one file, or of several (each file's relative name and content, in order)."""
    digest = hashlib.sha256()
    for file in files:
        if len(files) > 1:
            name = file.relative_to(root) if root and file.is_relative_to(root) else Path(file.name)
            digest.update(str(name).encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def load_artifact(path: str | Path, disabled: Iterable[str] = ()) -> Artifact:
    """Identify a model on disk (formats plugins add included, unless ``disabled``). Raises :class:`ModelError`
    for a missing, empty or unknown file."""
    path = Path(path).expanduser()
    fmt = detect_format(path, disabled)
    files = _files_of(path, fmt)
    root = path if path.is_dir() else path.parent
    try:
        total = sum(f.stat().st_size for f in files)
        digest = sha256_files(files, root)
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror}", path=path) from None
    return Artifact(path=path.resolve(), format=fmt, sha256=digest, bytes=total, files=tuple(files))
