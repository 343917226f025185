"""Does a model file itself hold quantized (lossy) computation? Evidence read from the artifact, never a claim.

The parity validator picks its lossy bounds only on this evidence (``parity.mode: auto``); a sidecar, a manifest
or a file name saying "int8" changes nothing. What counts:

- ONNX (graph parsed without its external data): nodes of a quantized op type (``MatMulNBits``,
  ``DynamicQuantizeLinear``, ``MatMulInteger``, ``QLinearMatMul``, ``QGemm``, ``QuantizeLinear``,
  ``DequantizeLinear``, ``GatherBlockQuantized``, …, subgraphs included), or weight initializers (two or more
  dimensions) stored as 8/4/2-bit integers, 8/4-bit floats or float16/bfloat16;
- TFLite (the flatbuffer read by :func:`~edgeval.validators.tensorstats.tflite_stats`): constant tensors of two or
  more dimensions stored as int8/uint8/int4/int2/float16/bfloat16/float8, or ``DEQUANTIZE``/``QUANTIZE`` ops.

- GGUF (tensor table read by gguf-py, no tensor data): weight tensors (two or more dimensions) stored in any type
  but F32 (Q4_0, Q4_1, Q8_0, Q4_K …, and F16/BF16 as for the other formats): llama.cpp computes on them as stored.
- An ONNX Runtime GenAI bundle: its decoder graph, as ONNX.

A Hugging Face directory is not inspected: no evidence, so the exact bounds apply.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import require
from .tensorstats import _reading, genai_graph, tflite_stats

#: ONNX op types that compute on quantized values (default and com.microsoft domains)
ONNX_QUANT_OPS = frozenset({
    "MatMulNBits", "MatMulBnb4", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeLinear",
    "DynamicQuantizeMatMul", "QLinearMatMul", "QLinearConv", "QLinearAdd", "QLinearMul", "QGemm", "QAttention",
    "QuantizeLinear", "DequantizeLinear", "GatherBlockQuantized", "DynamicQuantizeLSTM", "ConvInteger",
    "QOrderedMatMul", "QuantizeBFP", "DequantizeBFP"})
#: reduced-precision storage types of weights (ONNX / TFLite names, lower case)
LOW_PRECISION = frozenset({"int8", "uint8", "int4", "uint4", "int2", "uint2", "float16", "bfloat16",
                           "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "float8_e4m3fn",
                           "float8_e5m2", "float4e2m1"})
TFLITE_QUANT_OPS = frozenset({"DEQUANTIZE", "QUANTIZE", "FAKE_QUANT"})


def quantization_evidence(artifact: Any) -> list[str]:
    """What in ``artifact`` (an :class:`~edgeval.artifacts.Artifact`, or None) is quantized computation, as short
    phrases ("168 MatMulNBits nodes", "211 int8 weight tensors"); empty when nothing is (or it is not inspected)."""
    if artifact is None:
        return []
    reader = {"onnx": onnx_evidence, "tflite": tflite_evidence, "gguf": gguf_evidence,
              "genai": lambda p: onnx_evidence(genai_graph(p))}.get(str(getattr(artifact, "format", "")))
    return [] if reader is None else reader(Path(artifact.path))


def _phrases(ops: Counter, dtypes: Counter) -> list[str]:
    return ([f"{n} {op} {'nodes' if n > 1 else 'node'}" for op, n in sorted(ops.items())]
            + [f"{n} {dt} weight {'tensors' if n > 1 else 'tensor'}" for dt, n in sorted(dtypes.items())])


# -- ONNX ------------------------------------------------------------------------------------------------------
def onnx_evidence(path: Path) -> list[str]:
    """Quantized op types and low-precision weight initializers of an ONNX graph (external data not read); nodes
    whose results nothing reads and initializers no live node reads are not evidence (dead weight proves nothing)."""
    onnx = require("onnx", "onnx", "inspecting ONNX models")
    from ..artifacts import onnx_tensors

    with _reading(path, "ONNX model"):
        graph = onnx.load(str(path), load_external_data=False).graph
        nodes, live = _live_nodes(graph)
        ops = Counter(op for node in nodes for op in _onnx_op_types(node) if op in ONNX_QUANT_OPS)
        tensors = [t for t in graph.initializer if t.name in live]
        tensors += [t for node in nodes for attr in node.attribute for t in _attr_tensors(attr, onnx_tensors)]
        dtypes = Counter(name for t in tensors if len(t.dims) >= 2
                         and (name := onnx.TensorProto.DataType.Name(t.data_type).lower()) in LOW_PRECISION)
    return _phrases(ops, dtypes)


def _live_nodes(graph) -> tuple[list[Any], set[str]]:
    """The nodes whose results reach a graph output (nodes are topologically sorted), and the names they read."""
    live = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in live for out in node.output):
            kept.append(node)
            live.update(node.input)
            for attr in node.attribute:  # a subgraph reads names of the outer scope
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    live.update(name for n in sub.node for name in n.input)
    return kept, live


def _attr_tensors(attr, onnx_tensors):
    """A live node's constant tensors: its ``value`` and its subgraphs' tensors."""
    if attr.HasField("t"):
        yield attr.t
    for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
        yield from onnx_tensors(sub)


def _onnx_op_types(node):
    """A node's op type and those of its subgraphs (If/Loop/Scan bodies)."""
    yield node.op_type
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in sub.node:
                yield from _onnx_op_types(inner)


# -- TFLite ----------------------------------------------------------------------------------------------------
def tflite_evidence(path: Path) -> list[str]:
    """Quantize/dequantize ops and low-precision constant tensors of a TFLite flatbuffer."""
    dtypes = Counter(s.dtype for s in tflite_stats(path) if len(s.shape) >= 2 and s.dtype in LOW_PRECISION)
    return _phrases(Counter(dict.fromkeys(_tflite_quant_ops(path), 1)), dtypes)


def _tflite_quant_ops(path: Path) -> list[str]:
    """Names of the quantize/dequantize builtins in the model's operator-code table."""
    import numpy as np

    schema = require("ai_edge_litert.schema_py_generated", "tflite", "inspecting TFLite models")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    with _reading(path, "TFLite flatbuffer"):
        model = schema.Model.GetRootAs(np.memmap(path, np.uint8, "r"), 0)
        codes = (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))
        used = {names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode())) for c in codes}
    return sorted(name for name in used & TFLITE_QUANT_OPS if name is not None)


# -- GGUF ------------------------------------------------------------------------------------------------------
def gguf_evidence(path: Path) -> list[str]:
    """Weight tensors of a GGUF stored in a type other than F32 (quantized blocks, F16, BF16)."""
    gguf = require("gguf", "gguf", "inspecting GGUF files")
    with _reading(path, "GGUF file"):
        tensors = gguf.GGUFReader(path).tensors
        dtypes = Counter(t.tensor_type.name for t in tensors if len(t.shape) >= 2 and t.tensor_type.name != "F32")
    return _phrases(Counter(), dtypes)
