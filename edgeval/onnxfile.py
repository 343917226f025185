"""What an ONNX file holds, read from its protobuf wire format without loading it: op types and where tensors keep
their data. Needs neither onnx nor onnxruntime.

Loading a model to ask two questions (which external data files does it use? does it run a batch-dependent op?)
parsed the whole file, weights included: 0.7 CPU-s on SmolLM2's 650 MB export, and two byte searches of the file
took another 0.8. This walk reads the messages that answer them (nodes, tensor headers, external-data entries,
subgraphs, functions) and seeks over the rest, weights above 64 KiB among it: a few hundredths of a second.
It also checks the file's framing (every field inside its message, the model ending where the file ends, at most
100 messages deep), so a truncated or garbage file is refused here, with one line, before a runtime sees it.
Cost grows with the number of fields walked, not the bytes: a hostile file of nothing but tiny fields is walked
at about 3 MB per CPU-second (10 MB in 3.1 s on this project's 2-core VM), a real model's graph in milliseconds.
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

#: message type -> {field number: (what it is, message type or None)}, from onnx.proto (ModelProto and below)
_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},  # 11: attribute defaults, tensors among them
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {4: "op_type", 5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry", 14: "data_location"},
    "entry": {1: "key", 2: "value"},
}
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_IN_MEMORY = 64 << 10  # messages up to this size are read whole and walked in memory (nodes; not weights)
_MAX_DEPTH = 100  # protobuf's own default nesting limit: ONNX Runtime refuses deeper files too


class OnnxFileError(ValueError):
    """The file's bytes are not an ONNX model's protobuf (truncated, or not a model at all)."""


@dataclass(frozen=True)
class TensorData:
    """Where one tensor message keeps its data: the ``location`` entry of its external data (None when it has
    none), and whether its ``data_location`` says EXTERNAL. Protobuf merges repeated copies of a singular
    message field, so one tensor can come as several messages: a location is taken wherever it appears."""

    location: str | None
    external: bool


@dataclass(frozen=True)
class OnnxLayout:
    """The op types a model runs (subgraphs and local functions included) and its tensors that name a data
    location, in file order."""

    op_types: frozenset[str]
    tensors: tuple[TensorData, ...]

    @property
    def external_locations(self) -> list[str]:
        """The distinct ``location`` values any tensor names, in order of first use: every file a runtime could
        read (a location beside an inline ``data_location`` included: fail closed)."""
        return list(dict.fromkeys(t.location for t in self.tensors if t.location is not None))


def refused_location(folder: Path, location: str) -> str | None:
    """Why an external-data ``location`` of a model in ``folder`` is refused, or None: a NUL byte, ONNX Runtime's
    in-memory address marker, an absolute path, a ``..`` part, or a link that resolves outside the folder.
    External data must be a plain file beside the model: nothing outside its folder is read or hashed."""
    if "\x00" in location:
        return "holds a NUL byte"
    if "_ORT_MEM_ADDR_" in location:
        return "is ONNX Runtime's in-memory address marker, not a file"
    folder, named = folder.resolve(), Path(location)
    if named.is_absolute() or ".." in named.parts or folder not in (folder / named).resolve().parents:
        return "is outside the model's folder"
    return None


def onnx_layout(path: str | Path) -> OnnxLayout:
    """The layout of the ONNX file at ``path``; :class:`OnnxFileError` when its bytes are not an ONNX model,
    OSError when it cannot be read. Remembered per file state (path, size, mtime): a model reopened in one run is
    not read again."""
    stat = Path(path).stat()
    return _layout(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _layout(path: str, size: int, _mtime_ns: int) -> OnnxLayout:
    walk = _Walk()
    with open(path, "rb") as fh:
        fields = walk.message(fh, size, "model")
    if "graph" not in fields:
        raise OnnxFileError("no graph in it")
    return OnnxLayout(frozenset(walk.op_types), tuple(walk.tensors))


class _Walk:
    """Collects op types and tensor data locations while walking messages (see :data:`_SCHEMA`)."""

    def __init__(self) -> None:
        self.op_types: set[str] = set()
        self.tensors: list[TensorData] = []
        self.depth = 0

    def message(self, fh: BinaryIO, end: int, kind: str) -> dict[str, int | str]:
        """Walk one message from ``fh``'s position to ``end``. Returns what it holds by the schema's names:
        numbers and strings by value, submessages as present (1)."""
        schema = _SCHEMA[kind]
        found: dict[str, int | str] = {}
        for field, wire, value in _fields(fh, end):
            what = schema.get(field)
            if what == "data_location" and wire == 0:
                found[what] = value
            elif what in ("op_type", "key", "value") and wire == 2:
                found[what] = text = _text(fh, value, strict=what != "op_type")
                if what == "op_type":
                    self.op_types.add(text)
            elif what is not None and what != "data_location" and wire == 2:
                sub = self._sub(fh, value, what)
                if what == "entry" and sub.get("key") == "location" and "value" in sub:
                    found["location"] = sub["value"]
                else:
                    found[what] = 1
        if kind == "tensor" and ("location" in found or found.get("data_location") == _EXTERNAL):
            location = found.get("location")
            self.tensors.append(TensorData(None if location is None else str(location),
                                           found.get("data_location") == _EXTERNAL))
        return found

    def _sub(self, fh: BinaryIO, length: int, kind: str) -> dict[str, int | str]:
        """A submessage of ``length`` bytes: read whole and walked in memory when small, walked in place (so that
        its large payloads are seeked over, not read) when not."""
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise OnnxFileError(f"messages nested more than {_MAX_DEPTH} deep")
        try:
            if length <= _IN_MEMORY and not isinstance(fh, io.BytesIO):
                data = fh.read(length)
                if len(data) != length:
                    raise OnnxFileError("truncated")
                return self.message(io.BytesIO(data), length, kind)
            return self.message(fh, fh.tell() + length, kind)
        finally:
            self.depth -= 1


def _text(fh: BinaryIO, length: int, strict: bool) -> str:
    """A string field; ``strict``: not valid UTF-8 is an OnnxFileError (a data location must name the file a
    runtime opens, not a lookalike with replaced bytes)."""
    data = fh.read(length)
    if len(data) != length:
        raise OnnxFileError("truncated")
    try:
        return data.decode("utf-8", "strict" if strict else "replace")
    except UnicodeDecodeError:
        raise OnnxFileError("an external-data entry that is not UTF-8") from None


def _varint(fh: BinaryIO) -> int:
    result = shift = 0
    while True:
        byte = fh.read(1)
        if not byte:
            raise OnnxFileError("truncated")
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7
        if shift > 63:
            raise OnnxFileError("a malformed number")


def _fields(fh: BinaryIO, end: int) -> Iterator[tuple[int, int, int]]:
    """The fields of the message that runs from ``fh``'s position to ``end``: (field number, wire type, value),
    the value a number's (wire type 0) or a payload's length (2, with ``fh`` at the payload and moved past it
    when the caller resumes); fixed-width numbers are skipped."""
    while (at := fh.tell()) < end:
        tag = _varint(fh)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise OnnxFileError(f"a field numbered 0 at byte {at}")
        if wire == 0:
            yield field, wire, _varint(fh)
        elif wire in (1, 5):
            fh.seek(8 if wire == 1 else 4, io.SEEK_CUR)
        elif wire == 2:
            length = _varint(fh)
            start = fh.tell()
            if start + length > end:
                raise OnnxFileError(f"a field of {length} bytes at byte {at} runs past the end of its message")
            yield field, wire, length
            fh.seek(start + length)
        else:
            raise OnnxFileError(f"an unknown field encoding ({wire}) at byte {at}")
    if fh.tell() != end:
        raise OnnxFileError("the last field runs past the end of its message")
