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
