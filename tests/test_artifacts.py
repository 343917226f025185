"""Artifact identification: formats, sha256, bytes, and one-line errors for bad files."""
from __future__ import annotations

import hashlib

import pytest

from edgeval.artifacts import load_artifact
from edgeval.errors import ModelError


def test_tflite_and_gguf_by_magic(tmp_path):
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 32)
    art = load_artifact(tfl)
    assert art.format == "tflite" and art.bytes == 40
    assert art.sha256 == hashlib.sha256(tfl.read_bytes()).hexdigest()
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 12)
    assert load_artifact(gguf).format == "gguf"


def test_hf_directory_hashes_all_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    art = load_artifact(tmp_path)
    assert art.format == "hf" and art.bytes == 102 and len(art.files) == 2
    (tmp_path / "model.safetensors").write_bytes(b"y" * 100)
    assert load_artifact(tmp_path).sha256 != art.sha256


@pytest.mark.parametrize("name, content, message", [
    ("missing.onnx", None, "no such file"),
    ("empty.onnx", b"", "file is empty"),
    ("bad.tflite", b"garbage garbage", "not a TFLite flatbuffer"),
    ("bad.gguf", b"nope nope", "not a GGUF file"),
    ("model.bin", b"1234", "unknown model format '.bin'"),
])
def test_bad_files_give_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError) as info:
        load_artifact(path)
    assert message in str(info.value) and name in str(info.value) and "\n" not in str(info.value)


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        load_artifact(tmp_path)


def test_garbage_onnx_is_rejected(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "g.onnx"
    path.write_bytes(b"\xff\xfe this is not protobuf \x00\x01" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        load_artifact(path)


def test_onnx_external_data_is_part_of_the_artifact(tmp_path):
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 64])], [weight])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location="m.onnx.data",
              size_threshold=0)
    art = load_artifact(path)
    assert [f.name for f in art.files] == ["m.onnx", "m.onnx.data"]
    assert art.bytes == path.stat().st_size + (tmp_path / "m.onnx.data").stat().st_size
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ModelError, match="external data file 'm.onnx.data' is missing"):
        load_artifact(path)


def test_external_data_outside_the_folder_is_not_read(tmp_path):
    """An ONNX whose external data names a file outside its folder is refused when the artifact is read, before
    that file is hashed or sized (a huge or private file elsewhere must not be read)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])], [weight])
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "m.onnx"
    onnx.save(helper.make_model(graph), str(path), save_as_external_data=True, location="w.data", size_threshold=0)
    (tmp_path / "m" / "w.data").rename(tmp_path / "w.data")
    model = onnx.load(str(path), load_external_data=False)
    next(e for e in model.graph.initializer[0].external_data if e.key == "location").value = "../w.data"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="'../w.data' is outside the model's folder"):
        load_artifact(path)
