"""edgeval.onnxfile: op types and external-data locations read from an ONNX file's framing, checked against
onnx's own parse; truncated and garbage files refused."""
from __future__ import annotations

import numpy as np
import pytest

from edgeval.onnxfile import OnnxFileError, onnx_layout

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _model(tmp_path, external: bool = True):
    """A model with everything the walk must see: an op inside an If's subgraphs, a local function's op, a
    Constant node's tensor, initializers (external when asked)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    big = numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(16, 4), "big")
    branch = lambda name: helper.make_graph(  # noqa: E731
        [helper.make_node("DynamicQuantizeLinear", ["x"], [f"{name}_q", f"{name}_s", f"{name}_z"]),
         helper.make_node("Identity", ["x"], [f"{name}_out"])], name, [],
        [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1, 4])])
    function = helper.make_function("local", "Twice", ["a"], ["b"], [helper.make_node("Softsign", ["a"], ["b"])],
                                    [helper.make_opsetid("", 18)])
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones((1, 4), np.float32))),
             helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Twice", ["h"], ["t"], domain="local"),
             helper.make_node("Greater", ["c", "c"], ["cond_all"]),
             helper.make_node("ReduceMin", ["cond_all"], ["cond"], keepdims=0),
             helper.make_node("If", ["cond"], ["y"], then_branch=branch("then"), else_branch=branch("else"))]
    graph = helper.make_graph(nodes, "g", [x], [y], [w, big])
    model = helper.make_model(graph, functions=[function],
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("local", 1)])
    path = tmp_path / "m.onnx"
    if external:
        onnx.save(model, str(path), save_as_external_data=True, location="m.data", size_threshold=100)
    else:
        onnx.save(model, str(path))
    return path


def _onnx_view(path):
    model = onnx.load(str(path), load_external_data=False)

    def ops(graph):
        for node in graph.node:
            yield node.op_type
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from ops(sub)

    found = set(ops(model.graph)) | {n.op_type for f in model.functions for n in f.node}
    external = [next(e.value for e in t.external_data if e.key == "location") for t in model.graph.initializer
                if t.data_location == TensorProto.EXTERNAL]
    return found, list(dict.fromkeys(external))


@pytest.mark.parametrize("external", [True, False])
def test_layout_matches_onnx(tmp_path, external):
    path = _model(tmp_path, external)
    layout = onnx_layout(path)
    ops, locations = _onnx_view(path)
    assert layout.op_types == ops and "DynamicQuantizeLinear" in ops and "Softsign" in ops
    assert layout.external_locations == locations == (["m.data"] if external else [])
    assert all(t.external for t in layout.tensors) and len(layout.tensors) == (1 if external else 0)


def test_truncated_and_garbage_files_are_refused(tmp_path):
    path = _model(tmp_path, external=False)
    data = path.read_bytes()
    bad = tmp_path / "bad.onnx"
    cut_inside_graph = [n for n in range(1, len(data), 7) if n < len(data) - 40]  # the graph field ends late
    for n in cut_inside_graph:
        bad.write_bytes(data[:n])
        with pytest.raises(OnnxFileError):
            onnx_layout(bad)
    for garbage in (b"", b"\x08\x07garbage\xff\xff", b"ONNX" * 3, b"\xff" * 12, b"\x3a\x05ab"):
        bad.write_bytes(garbage)
        with pytest.raises(OnnxFileError):
            onnx_layout(bad)


def test_rewritten_file_is_read_again(tmp_path):
    path = _model(tmp_path, external=False)
    assert "DynamicQuantizeLinear" in onnx_layout(path).op_types
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])),
              str(path))
    assert onnx_layout(path).op_types == {"Relu"}


# -- hand-written wire bytes: what onnx's writer never produces but a hostile file can -----------------------------

def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _len(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _num(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _wire_model(graph: bytes, extra: bytes = b"") -> bytes:
    return _num(1, 8) + _len(7, graph) + _len(8, _num(2, 17)) + extra  # ir_version, graph, opset_import


def _constant(tensor_parts: list[bytes]) -> bytes:
    """A graph with one Constant node whose tensor attribute comes as several messages (protobuf merges them)."""
    attr = _len(1, b"value") + _num(20, 4) + b"".join(_len(5, part) for part in tensor_parts)
    return _len(1, _len(2, b"y") + _len(4, b"Constant") + _len(5, attr))


def _located(location: bytes = b"w.bin") -> bytes:
    """A float tensor's header naming ``location`` as its external data (data_location not set)."""
    return _num(1, 4) + _num(2, 1) + _len(13, _len(1, b"location") + _len(2, location))


_LOCATED = _located()


@pytest.mark.parametrize("parts", [[_LOCATED + _num(14, 1)],            # one message
                                   [_LOCATED, _num(14, 1)],             # location and data_location apart
                                   [_LOCATED + _num(14, 1) + _num(14, 7)]])  # an unknown data_location after
def test_a_tensor_names_its_file_however_its_message_is_cut(tmp_path, parts):
    from edgeval.artifacts import load_artifact

    path = tmp_path / "m.onnx"
    path.write_bytes(_wire_model(_constant(parts)))
    (tmp_path / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    assert onnx_layout(path).external_locations == ["w.bin"]
    artifact = load_artifact(path)
    assert [f.name for f in artifact.files] == ["m.onnx", "w.bin"]
    before = artifact.sha256
    (tmp_path / "w.bin").write_bytes(np.full(4, 9, dtype=np.float32).tobytes())
    assert load_artifact(path).sha256 != before  # the weights are part of the identity


def test_function_attribute_defaults_are_walked(tmp_path):
    """A local function's attribute defaults (FunctionProto field 11) can hold tensors, with external data."""
    default = _len(1, b"w") + _num(20, 4) + _len(5, _located(b"../x.bin") + _num(14, 1))
    function = _len(1, b"F") + _len(10, b"local") + _len(11, default)
    path = tmp_path / "m.onnx"
    path.write_bytes(_wire_model(_len(2, b"g"), extra=_len(25, function)))
    assert onnx_layout(path).external_locations == ["../x.bin"]
    from edgeval.artifacts import load_artifact
    from edgeval.errors import ModelError

    with pytest.raises(ModelError, match="outside the model's folder"):
        load_artifact(path)


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    graph = _len(2, b"g")
    for _ in range(150):  # If -> then_branch -> If -> ...
        graph = _len(1, _len(4, b"If") + _len(5, _len(1, b"then_branch") + _num(20, 5) + _len(6, graph)))
    path = tmp_path / "deep.onnx"
    path.write_bytes(_wire_model(graph))
    with pytest.raises(OnnxFileError, match="nested"):
        onnx_layout(path)
    from edgeval.runtimes.onnx import batch_dependent

    assert batch_dependent(path)  # cannot tell: the slow, safe answer


@pytest.mark.parametrize("location, message", [(b"w.bin\x00/..", "NUL"), (b"*/_ORT_MEM_ADDR_/*", "in-memory"),
                                               (b"\xff/w.bin", "not UTF-8")])
def test_odd_locations_are_refused_in_one_line(tmp_path, location, message):
    from edgeval.artifacts import load_artifact
    from edgeval.errors import ModelError
    from edgeval.runtimes.onnx import check_external_data

    path = tmp_path / "m.onnx"
    path.write_bytes(_wire_model(_constant([_located(location) + _num(14, 1)])))
    for read in (load_artifact, check_external_data):
        with pytest.raises(ModelError, match=message) as info:
            read(path)
        assert "\n" not in str(info.value) and "m.onnx" in str(info.value)
