"""What an ONNX graph holds, read from its structure alone (weights never loaded): op counts, whether it already
computes with quantized weights, and where its initializer bytes go (quantized weights, scales and zero points,
float weights). The quantizers use it to refuse an already-quantized input and to measure what they did."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ModelError
from ...runtimes._util import one_line

#: ops that only appear in a graph that already computes with quantized weights or activations
QUANTIZED_OPS = frozenset({
    "MatMulNBits", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeLinear", "DynamicQuantizeMatMul",
    "QuantizeLinear", "DequantizeLinear", "ConvInteger", "QGemm", "QAttention", "QOrderedMatMul",
    "GatherBlockQuantized", "MatMulBnb4", "MatMulFpQ4", "DynamicQuantizeLSTM"})
#: integer element types a quantized weight is stored in (onnx.TensorProto: UINT8, INT8, UINT4, INT4)
_QUANT_TYPES = frozenset({2, 3, 21, 22})
_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_BITS = {1: 32, 2: 8, 3: 8, 10: 16, 11: 64, 16: 16, 21: 4, 22: 4}
#: which input of a quantized op holds its weight or data (the others, but the first, are scales and zero points)
_DATA_SLOT = {"MatMulInteger": 1, "MatMulIntegerToFloat": 1, "DynamicQuantizeMatMul": 1, "MatMulNBits": 1,
              "MatMulBnb4": 1, "MatMulFpQ4": 1, "QAttention": 1, "ConvInteger": 1, "QGemm": 3}
#: an integer initializer with at least this many elements is a weight, not a constant or a zero point
_WEIGHT_ELEMENTS = 256
#: float weights kept unquantized that are worth a warning (bytes)
_WARN_BYTES = 1 << 20


def load_graph(path: Path) -> Any:
    """The ModelProto of ``path`` without its external data (cheap); ModelError when it is not ONNX."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  (protobuf's DecodeError and friends: not a model)
        raise ModelError(f"not a readable ONNX model: {one_line(exc)}", path=path) from None


def op_counts(model: Any) -> Counter:
    """Node count per op type over the main graph and its subgraphs."""
    counts: Counter = Counter()
    for graph in _graphs(model.graph):
        counts.update(node.op_type for node in graph.node)
    return counts


def _graphs(graph: Any):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def _elements(tensor: Any) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def tensor_bytes(tensor: Any) -> int:
    """Bytes of an initializer's values (from its shape and type, without reading external data)."""
    return (_elements(tensor) * _BITS.get(tensor.data_type, 8) + 7) // 8


def _is_quantized_weight(tensor: Any) -> bool:
    return tensor.data_type in _QUANT_TYPES and len(tensor.dims) >= 2 and _elements(tensor) >= _WEIGHT_ELEMENTS


def already_quantized(model: Any) -> str | None:
    """Why ``model`` already holds quantized computation (its quantized ops, or int8/int4 weights), or None."""
    ops = op_counts(model)
    found = sorted(op for op in ops if op in QUANTIZED_OPS or op.startswith("QLinear"))
    if found:
        return "it already holds quantized ops (" + ", ".join(f"{ops[op]} {op}" for op in found) + ")"
    weights = [t for t in model.graph.initializer if _is_quantized_weight(t)]
    if weights:
        return f"it already holds {len(weights)} int8/int4 weight tensors (e.g. '{weights[0].name}')"
    return None


def weight_inventory(model: Any) -> dict[str, Any]:
    """Initializer bytes by role: quantized weights (integer, 2-D or more), scales and zero points (the other
    initializers of quantized ops), float weights (2-D float initializers) and the rest."""
    quant_params = _quant_param_names(model)
    out = {"quantized_weights": 0, "quantized_weight_bytes": 0, "scale_and_zero_point_bytes": 0,
           "float_weights": 0, "float_weight_bytes": 0, "other_bytes": 0}
    for tensor in model.graph.initializer:
        size = tensor_bytes(tensor)
        if tensor.name in quant_params:
            out["scale_and_zero_point_bytes"] += size
        elif _is_quantized_weight(tensor):
            out["quantized_weights"] += 1
            out["quantized_weight_bytes"] += size
        elif tensor.data_type in _FLOAT_TYPES and len(tensor.dims) >= 2:
            out["float_weights"] += 1
            out["float_weight_bytes"] += size
        else:
            out["other_bytes"] += size
    return out


def _quant_param_names(model: Any) -> set[str]:
    """Names of the inputs of quantized ops other than their weight or data input (scales, zero points)."""
    names: set[str] = set()
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS or node.op_type.startswith("QLinear"):
            slot = _DATA_SLOT.get(node.op_type, 3 if node.op_type.startswith("QLinear") else 0)
            names.update(name for index, name in enumerate(node.input) if index != slot and index > 0)
    return names


def float_weights_kept(model: Any) -> list[tuple[str, str, int]]:
    """``(initializer, consumer op types, bytes)`` of the float weights left unquantized that matter: 1 MiB or
    more, or 1 % of the initializer bytes (tiny models), largest first."""
    consumers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    params = _quant_param_names(model)
    floor = min(_WARN_BYTES, sum(tensor_bytes(t) for t in model.graph.initializer) // 100)
    kept = [(t.name, ",".join(sorted(consumers.get(t.name, {"?"}))), tensor_bytes(t))
            for t in model.graph.initializer if t.name not in params
            and t.data_type in _FLOAT_TYPES and len(t.dims) >= 2 and tensor_bytes(t) >= floor]
    return sorted(kept, key=lambda item: -item[2])


def drop_unused_initializers(model: Any) -> int:
    """Remove initializers no node, subgraph or graph output reads (a float weight a quantizer replaced but
    left behind); returns how many went."""
    used = {name for graph in _graphs(model.graph) for node in graph.node for name in node.input}
    used |= {output.name for output in model.graph.output}
    unused = [t for t in model.graph.initializer if t.name not in used]
    for tensor in unused:
        model.graph.initializer.remove(tensor)
    return len(unused)


def initializer_identities(model: Any) -> list[Any]:
    """Identity nodes that only rename an initializer (the legacy exporter reads a tied LM head through one
    for the ``next_token_logits`` MatMul, which hides the weight from the quantizers)."""
    initializers = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    return [n for n in model.graph.node
            if n.op_type == "Identity" and n.input[0] in initializers and n.output[0] not in outputs]


def fold_initializer_identities(model: Any) -> int:
    """Let the consumers of :func:`initializer_identities` read the initializer itself (so the quantizer sees
    every MatMul of a shared weight); returns how many Identity nodes went."""
    found = initializer_identities(model)
    renamed = {n.output[0]: n.input[0] for n in found}
    for graph in _graphs(model.graph):
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name in renamed:
                    node.input[index] = renamed[name]
    for node in found:
        model.graph.node.remove(node)
    return len(found)


def has_external_data(model: Any) -> bool:
    """Whether any initializer of ``model`` keeps its values in an external file."""
    return any(t.data_location == 1 for t in model.graph.initializer)


def graph_inputs(model: Any) -> list[Any]:
    """The graph's inputs as :mod:`edgeval.runtimes.onnx` describes them (name, ``tensor(type)``, shape)."""
    import onnx

    from ...runtimes.onnx import _Input

    initializers = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        kind = onnx.helper.tensor_dtype_to_string(tensor.elem_type).removeprefix("TensorProto.").lower()
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)
        specs.append(_Input(value.name, f"tensor({kind})", dims))
    return specs


@dataclass(frozen=True)
class GraphFacts:
    """What the quantizers need to know of their input, so that its ModelProto (for an inline-weights model,
    all the weights) can be dropped before ONNX Runtime loads its own copy."""

    ops: Counter
    inventory: dict[str, Any]
    quantized: str | None
    external: bool
    data_files: frozenset[str]
    identities: int
    inputs: list[Any]
    activation_matmuls: tuple[str, ...]


def facts(model: Any) -> GraphFacts:
    """:class:`GraphFacts` of ``model``."""
    files = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    return GraphFacts(ops=op_counts(model), inventory=weight_inventory(model), quantized=already_quantized(model),
                      external=has_external_data(model), data_files=frozenset(files),
                      identities=len(initializer_identities(model)), inputs=graph_inputs(model),
                      activation_matmuls=activation_matmuls(model))


def activation_matmuls(model: Any) -> tuple[str, ...]:
    """Names of the MatMul nodes that multiply two activations (attention's QK^T and scores x V): no input is
    an initializer, nor an Identity of one."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {n.output[0] for n in initializer_identities(model)}
    constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return tuple(n.name for n in model.graph.node if n.op_type == "MatMul" and not set(n.input) & constants)


__all__ = ["QUANTIZED_OPS", "GraphFacts", "facts", "graph_inputs", "load_graph", "op_counts", "tensor_bytes",
           "already_quantized", "weight_inventory", "float_weights_kept", "drop_unused_initializers",
           "initializer_identities", "fold_initializer_identities", "has_external_data", "activation_matmuls"]
