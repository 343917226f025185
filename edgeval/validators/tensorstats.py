"""Tensor statistics read straight from model files: elements, zeros and stored bytes per constant tensor.

No runtime is opened. Each reader walks one format's own container and yields one :class:`TensorStat` per stored
tensor, reading the data through memory maps so that a 540 MB model never sits in memory twice:

- ONNX: the graph is parsed without its external data (``load_external_data=False``); each tensor's bytes come
  from ``raw_data``, from its external file (memory-mapped at ``offset``/``length``), or from the typed fields
  through ``numpy_helper.to_array``. Initializers and Constant-node values, subgraphs included.
- TFLite: the flatbuffer is parsed with ``ai_edge_litert.schema_py_generated`` (Model → subgraphs → tensors →
  buffer index, type, shape); buffer data is read in place, or at ``offset``/``size`` from the file start for
  models over 2 GB. A buffer shared by several tensors is counted once. Tensors stored in TFLite's sparse format
  count their dense shape as elements and everything not stored as zeros.
- safetensors (every ``*.safetensors`` of a Hugging Face directory): the 8-byte header length and JSON header are
  read directly and each tensor is a slice of the memory-mapped file. One path for every dtype, bf16 and fp8
  included, which numpy cannot represent, and no torch needed.

Each tensor also gets a role (weight / scale / zero point / other) and a layer group (q, k, v, o, gate, up, down,
embeddings, lm_head, norm, other; :mod:`edgeval.validators.weightgroups`): from the ONNX graph (the consuming node's
operator, input position and name; :mod:`edgeval.validators.onnxquant`, which also counts the zeros of quantized
ONNX weights against their zero points and unpacks ``MatMulNBits`` blocks), from the TFLite names (a constant's own
or, failing that, the tensors it feeds), from safetensors names.

Zeros are counted on raw bit patterns by dtype width: an element is zero when all its bits are zero or, for
floating-point types, when only its sign bit is set (``-0.0``). Integer zeros are the raw value 0, which is the
real zero for symmetric int8 weights (TFLite's quantisation spec fixes their zero point at 0); asymmetric uint8
tensors are counted but never treated as weights. Tensors of other dtypes (string, int4, complex …) are listed
but not measured.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import EdgevalError, ModelError, require
from .onnxquant import Unmeasurable, Use, onnx_uses
from .weightgroups import group_of, role_from_name

#: canonical dtype -> (bytes per element, is floating point)
DTYPES: dict[str, tuple[int, bool]] = {
    "float64": (8, True), "float32": (4, True), "float16": (2, True), "bfloat16": (2, True),
    "float8_e4m3fn": (1, True), "float8_e5m2": (1, True),
    "int64": (8, False), "uint64": (8, False), "int32": (4, False), "uint32": (4, False),
    "int16": (2, False), "uint16": (2, False), "int8": (1, False), "uint8": (1, False), "bool": (1, False),
}
_QUANTIZED_WEIGHTS = {"int8"}
_UINT = {8: "<u8", 4: "<u4", 2: "<u2", 1: "u1"}
_CHUNK = 1 << 22  # elements per pass: bounds the temporaries of the zero count
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16", 17: "float8_e4m3fn",
                19: "float8_e5m2"}
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn",
              "F8_E5M2": "float8_e5m2", "I64": "int64", "U64": "uint64", "I32": "int32", "U32": "uint32",
              "I16": "int16", "U16": "uint16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


@dataclass(frozen=True)
class TensorStat:
    """One stored tensor: its dtype and shape, how many elements and zeros it holds, and its bytes on disk."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    elements: int
    zeros: int
    stored_bytes: int
    measured: bool = True
    role: str = ""  # weight / scale / zero_point / other; "" = decided by dtype and shape (weight_role)
    group: str = "other"  # layer group (edgeval.validators.weightgroups)
    storage: str = ""  # how a weight's values are stored when not plain ``dtype`` ("int4": packed MatMulNBits)
    note: str = ""  # why it is not measured

    @property
    def weight_role(self) -> bool:
        """A weight matrix, measured or not: its role says so, or, without a role, floating point (or symmetric
        int8) with at least two dimensions."""
        if self.role:
            return self.role == "weight"
        kind = DTYPES.get(self.dtype)
        return kind is not None and len(self.shape) >= 2 and (kind[1] or self.dtype in _QUANTIZED_WEIGHTS)

    @property
    def is_weight(self) -> bool:
        """A measured weight (its ``elements`` are logical weight parameters)."""
        return self.measured and self.weight_role

    @property
    def weight_storage_part(self) -> bool:
        """Bytes that store weights: the weights themselves, their scales and zero points."""
        return self.weight_role or self.role in ("scale", "zero_point")

    @property
    def value_bits(self) -> int:
        """Stored bits per element (a packed ``int4`` weight: 4)."""
        return int(self.storage[3:]) if self.storage[:3] == "int" and self.storage[3:].isdigit() \
            else 8 * DTYPES[self.dtype][0]

    @property
    def sparse_bytes(self) -> int:
        """Bitmask encoding (nonzero values + one bit per element), or the stored bytes when that is smaller."""
        if not self.measured:
            return self.stored_bytes
        bitmask = math.ceil((self.elements - self.zeros) * self.value_bits / 8) + math.ceil(self.elements / 8)
        return min(self.stored_bytes, bitmask)


def count_zeros(raw: np.ndarray, dtype: str) -> int:
    """Zero elements in the little-endian bytes ``raw`` of a ``dtype`` tensor (``-0.0`` counts as zero)."""
    itemsize, is_float = DTYPES[dtype]
    values = np.frombuffer(raw, dtype=_UINT[itemsize], count=len(raw) // itemsize)
    sign_free = np.array((1 << (8 * itemsize - 1)) - 1, dtype=_UINT[itemsize])
    zeros = 0
    for start in range(0, values.size, _CHUNK):
        part = values[start:start + _CHUNK]
        if is_float:
            part = part & sign_free
        zeros += part.size - int(np.count_nonzero(part))
    return zeros


def stat_from_raw(name: str, dtype: str, shape: tuple[int, ...], raw: np.ndarray,
                  elements: int | None = None) -> TensorStat:
    """Measure one tensor from its raw bytes. ``elements``: the dense count when the storage is sparse."""
    if dtype not in DTYPES:
        return TensorStat(name, dtype, shape, math.prod(shape), 0, int(raw.size), measured=False)
    stored = int(raw.size) // DTYPES[dtype][0]
    zeros = count_zeros(raw, dtype)
    if elements is not None and elements > stored:
        zeros += elements - stored
    return TensorStat(name, dtype, shape, max(stored, elements or 0), zeros, int(raw.size))


def tensor_stats(fmt: str, path: Path) -> list[TensorStat] | None:
    """Every stored tensor of a model, or None when the format's tensors are not measured (GGUF)."""
    reader = {"onnx": onnx_stats, "tflite": tflite_stats, "hf": safetensors_stats,
              "genai": lambda p: onnx_stats(genai_graph(p))}.get(fmt)
    return None if reader is None else list(reader(Path(path)))


def genai_graph(bundle: Path) -> Path:
    """The decoder ONNX graph an ONNX Runtime GenAI bundle's genai_config.json names (checked)."""
    from ..runtimes.genai import read_config

    return read_config(Path(bundle)).model_file


@contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn any parse failure into a one-line :class:`ModelError` naming the file."""
    try:
        yield
    except EdgevalError:
        raise
    except Exception as exc:  # parsers raise everything from DecodeError to struct.error on garbage
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"not a readable {what} ({type(exc).__name__}{': ' + detail if detail else ''})",
                         path=path) from None


# -- ONNX --------------------------------------------------------------------------------------------------
def onnx_stats(path: Path) -> Iterator[TensorStat]:
    """Tensors of an ONNX model, external data included."""
    onnx = require("onnx", "onnx", "measuring ONNX weights")
    from ..artifacts import onnx_tensors

    with _reading(path, "ONNX model"):
        model = onnx.load(str(path), load_external_data=False)
        uses = onnx_uses(model.graph)
        index = {t.name: t for t in model.graph.initializer}

        def raw_of(name: str) -> np.ndarray | None:
            return _onnx_typed(index[name], path) if name in index else None

        for tensor in onnx_tensors(model.graph):
            use = uses.get(tensor.name) or Use(role_from_name(tensor.name), group_of(tensor.name) or "other")
            yield _onnx_stat(tensor, path, use, raw_of)


def _onnx_stat(tensor, path: Path, use: Use, raw_of) -> TensorStat:
    """One ONNX tensor; a quantized weight's zeros are counted in the dequantized domain (``use.quant``)."""
    dtype = _ONNX_DTYPES.get(tensor.data_type, f"onnx_type_{tensor.data_type}")
    shape = tuple(int(d) for d in tensor.dims)
    role, group = use.role, use.group
    if dtype not in DTYPES:
        return TensorStat(tensor.name, dtype, shape, math.prod(shape), 0, tensor.ByteSize(), measured=False,
                          note=f"{dtype} tensors are not decoded", role=role, group=group)
    raw = _onnx_raw(tensor, path)
    if use.quant is None:
        return replace(stat_from_raw(tensor.name, dtype, shape, raw), role=role, group=group)
    try:
        elements, zeros, storage = use.quant.measure(raw, dtype, shape, raw_of)
    except Unmeasurable as exc:
        return TensorStat(tensor.name, dtype, shape, math.prod(shape), 0, int(raw.size), measured=False,
                          note=str(exc), role=role, group=group)
    return TensorStat(tensor.name, dtype, shape, elements, zeros, int(raw.size), storage=storage, role=role,
                      group=group)


def _onnx_typed(tensor, path: Path) -> np.ndarray | None:
    """A (small) initializer's values as a numpy array of its own dtype: zero points."""
    dtype = _ONNX_DTYPES.get(tensor.data_type)
    if dtype is None or dtype not in DTYPES:
        return None
    raw = _onnx_raw(tensor, path)
    return raw.view(f"V{DTYPES[dtype][0]}" if dtype.startswith(("bfloat", "float8")) else np.dtype(dtype))


def _onnx_raw(tensor, path: Path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        info = {e.key: e.value for e in tensor.external_data}
        file = path.parent / info["location"]
        with _reading(file, "ONNX external data file"):
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else file.stat().st_size - offset
            return np.memmap(file, np.uint8, "r", offset, (length,)) if length else np.empty(0, np.uint8)
    if tensor.HasField("raw_data"):
        return np.frombuffer(tensor.raw_data, np.uint8)
    return np.ascontiguousarray(numpy_helper.to_array(tensor)).reshape(-1).view(np.uint8)


# -- TFLite ------------------------------------------------------------------------------------------------
def tflite_stats(path: Path) -> Iterator[TensorStat]:
    """Tensors of a TFLite flatbuffer that own a non-empty buffer (each buffer counted once)."""
    schema = require("ai_edge_litert.schema_py_generated", "tflite", "measuring TFLite weights")
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    with _reading(path, "TFLite flatbuffer"):
        data = np.memmap(path, np.uint8, "r")
        model = schema.Model.GetRootAs(data, 0)
        seen: set[int] = {0}  # buffer 0 is the empty sentinel
        for graph in (model.Subgraphs(i) for i in range(model.SubgraphsLength())):
            feeds = _tflite_feeds(graph)
            for j, tensor in enumerate(graph.Tensors(j) for j in range(graph.TensorsLength())):
                if tensor.Buffer() in seen:
                    continue
                seen.add(tensor.Buffer())
                raw = _tflite_buffer(model.Buffers(tensor.Buffer()), data)
                if raw.size:
                    yield _tflite_stat(tensor, raw, types, feeds.get(j, ()))


def _tflite_feeds(graph) -> dict[int, list[str]]:
    """Tensor index -> names of the tensors it feeds (outputs of the operators that read it): a constant named
    ``arith.constant2`` is grouped by what it computes."""
    feeds: dict[int, list[str]] = {}
    for op in (graph.Operators(i) for i in range(graph.OperatorsLength())):
        inputs, outputs = op.InputsAsNumpy(), op.OutputsAsNumpy()
        if isinstance(inputs, int) or isinstance(outputs, int):
            continue
        names = [(graph.Tensors(int(o)).Name() or b"").decode("utf-8", "replace") for o in outputs if o >= 0]
        for i in inputs:
            feeds.setdefault(int(i), []).extend(names)
    return feeds


def _tflite_buffer(buffer, data: np.ndarray) -> np.ndarray:
    if buffer.Offset() > 1:  # > 2 GB models: data outside the flatbuffer, offset from the file start
        end = buffer.Offset() + buffer.Size()
        if end > data.size:
            raise ValueError(f"buffer ends at byte {end:,}, past the end of the file ({data.size:,} B)")
        return data[buffer.Offset():end]
    raw = buffer.DataAsNumpy()
    return np.empty(0, np.uint8) if isinstance(raw, int) else raw


def _tflite_stat(tensor, raw: np.ndarray, types: dict[int, str], feeds: Iterable[str] = ()) -> TensorStat:
    shape_arr = tensor.ShapeAsNumpy()
    shape = () if isinstance(shape_arr, int) else tuple(int(d) for d in shape_arr)
    name = (tensor.Name() or b"").decode("utf-8", "replace")
    dense = math.prod(shape) if tensor.Sparsity() is not None else None
    dtype = types.get(tensor.Type(), f"tflite_type_{tensor.Type()}")
    return named(stat_from_raw(name, dtype, shape, raw, dense), feeds)


# -- safetensors -------------------------------------------------------------------------------------------
def safetensors_stats(path: Path) -> Iterator[TensorStat]:
    """Tensors of every ``*.safetensors`` file of a Hugging Face directory (or of one file)."""
    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
    for file in files:
        with _reading(file, "safetensors file"):
            yield from _safetensors_file(file)


def _safetensors_file(file: Path) -> Iterator[TensorStat]:
    data = np.memmap(file, np.uint8, "r")
    header_len = int(np.frombuffer(data[:8], "<u8")[0])
    if header_len + 8 > data.size:
        raise ValueError(f"header length {header_len:,} exceeds the file size {data.size:,}")
    header = json.loads(bytes(data[8:8 + header_len]))
    base = 8 + header_len
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = (base + int(o) for o in info["data_offsets"])
        if end > data.size or start > end:
            raise ValueError(f"tensor '{name}' lies outside the file")
        dtype = _ST_DTYPES.get(info["dtype"], str(info["dtype"]).lower())
        yield named(stat_from_raw(name, dtype, tuple(int(d) for d in info["shape"]), data[start:end]))


def named(stat: TensorStat, feeds: Iterable[str] = ()) -> TensorStat:
    """``stat`` with the role and layer group its name gives, else the first of ``feeds`` that names one
    (TFLite and safetensors). A TFLite name fused from several locations (``a;;b``) is its first location's."""
    texts = [stat.name, *feeds]
    group = next((g for text in texts if (g := group_of(text.split(";")[0]))), None)
    role = role_from_name(stat.name)
    if role == "weight":  # a quantizer's packed weight (GPTQ ``qweight`` …): no layout to decode it by
        return replace(stat, role=role, group=group or "other", measured=False, zeros=0,
                       note="quantized weights outside ONNX are not decoded")
    return replace(stat, role=role, group=group or "other")
