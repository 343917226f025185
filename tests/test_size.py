"""SizeValidator: bytes, compressed bytes, measured sparsity (ONNX, external data, TFLite, safetensors), checks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeval.artifacts import Artifact, load_artifact
from edgeval.errors import ModelError
from edgeval.policy import Policy
from edgeval.validators.base import RunContext, run_validator
from edgeval.validators.size import SizeValidator, compressed_bytes
from edgeval.validators.tensorstats import count_zeros, tensor_stats

SHAPES = {"w1": (256, 128), "w2": (128, 256), "b1": (128,)}


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}


def magnitude_prune(tensors: dict[str, np.ndarray], sparsity: float = 0.5) -> dict[str, np.ndarray]:
    """Zero the smallest-magnitude half of each weight (ndim >= 2); biases untouched."""
    out = {}
    for name, w in tensors.items():
        w = w.copy()
        if w.ndim >= 2:
            w.reshape(-1)[np.argsort(np.abs(w), axis=None)[: int(w.size * sparsity)]] = 0.0
        out[name] = w
    return out


def save_onnx(tensors: dict[str, np.ndarray], path: Path, external: bool = False,
              location: str = "weights.bin") -> Path:
    """x[1,256] @ w1 + b1 -> relu -> @ w2 -> y[1,256]; ``external``: weights in ``location`` beside the model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Add", ["h0", "b1"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
                              [numpy_helper.from_array(a, name) for name, a in tensors.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
              location=location, size_threshold=0)
    return path


def size_of(candidate: Path | Artifact, baseline: Path | None = None, **settings) -> tuple:
    cand = candidate if isinstance(candidate, Artifact) else load_artifact(candidate)
    ctx = RunContext(cand, load_artifact(baseline) if baseline else None,
                     Policy.default().with_overrides("size", **settings), progress=lambda m: None)
    outcome = run_validator(SizeValidator(), ctx)
    return {c.id: c for c in outcome.checks}, outcome.results


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """A dense ONNX model and its 50 % magnitude-pruned copy."""
    root = tmp_path_factory.mktemp("onnx")
    dense = weights()
    return save_onnx(dense, root / "dense.onnx"), save_onnx(magnitude_prune(dense), root / "pruned.onnx")


# -- the headline facts -----------------------------------------------------------------------------------
def test_pruned_copy_is_half_zeros_but_saves_no_bytes_on_disk(pair):
    dense, pruned = pair
    checks, r = size_of(pruned, dense)
    assert r["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert r["baseline_weight_sparsity"] == 0.0
    assert r["weight_params"] == 2 * 256 * 128 and r["params"] == r["weight_params"] + 128
    assert r["tensors"] == 3
    assert r["bytes"] == r["baseline_bytes"] and r["bytes_saved"] == 0 and r["bytes_saved_ratio"] == 0.0
    assert r["compressed_bytes"] < 0.8 * r["baseline_compressed_bytes"]
    assert r["compressed_saved"] > 0
    assert r["sparse_encoded_bytes"] < 0.7 * r["bytes"]
    assert "50.0 % zeros but saves 0 bytes on disk" in r["summary"]
    assert f"({r['bytes']:,} B vs {r['bytes']:,} B); compressed it saves" in r["summary"]
    ratio = checks["size.ratio_to_baseline"]
    assert ratio.status == "pass" and ratio.value == 1.0 and "saves 0 bytes on disk" in ratio.message


def test_file_names_do_not_move_the_verdict(tmp_path):
    """The same weights exported as dense.onnx and as a longer name: each initializer stores its external data
    file's name, so the files differ by a few hundred bytes; the verdict, on tensor payload, does not move."""
    tensors = magnitude_prune(weights())
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    short = save_onnx(tensors, tmp_path / "a" / "dense.onnx", external=True, location="dense.onnx.data")
    long = save_onnx(tensors, tmp_path / "b" / "wanda50-candidate.onnx", external=True,
                     location="wanda50-candidate.onnx.data")
    for cand, base in ((long, short), (short, long)):
        checks, r = size_of(cand, base, max_ratio_to_baseline=1.0, require_savings=False)
        assert r["bytes"] != r["baseline_bytes"] and r["payload_bytes"] == r["baseline_payload_bytes"]
        assert r["compared_on"] == "payload_bytes" and r["payload_ratio_to_baseline"] == 1.0
        ratio = checks["size.ratio_to_baseline"]
        assert ratio.status == "pass" and ratio.value == 1.0 and ratio.metric == "payload_ratio_to_baseline"
        savings, _ = size_of(cand, base, require_savings=True)
        assert savings["size.savings"].status == "fail" and savings["size.savings"].value == 0
    assert abs(size_of(long, short)[1]["bytes_saved"]) > 0  # file bytes alone would have decided differently


@pytest.mark.parametrize("ratio, status", [(1.00005, "pass"), (1.001, "fail")])
def test_ratio_tolerance_is_small(ratio, status):
    from edgeval.validators.size import RATIO_TOLERANCE, size_checks

    assert RATIO_TOLERANCE == 1e-4
    r = {"bytes": 1, "compressed_bytes": 1, "compared_on": "bytes", "ratio_to_baseline": ratio,
         "payload_ratio_to_baseline": None, "summary": "s"}
    check = {c.id: c for c in size_checks(r, {"max_ratio_to_baseline": 1.0}, True)}["size.ratio_to_baseline"]
    assert check.status == status and check.metric == "ratio_to_baseline"


def test_payload_is_the_tensor_data(pair):
    dense, _ = pair
    _, r = size_of(dense)
    assert r["payload_bytes"] == sum(a.nbytes for a in weights().values()) < r["bytes"]


def test_require_savings_fails_when_the_file_is_not_smaller(pair):
    dense, pruned = pair
    checks, _ = size_of(pruned, dense, require_savings=True)
    assert checks["size.savings"].status == "fail"
    assert "saves 0 bytes on disk" in checks["size.savings"].message
    checks, _ = size_of(pruned, None, require_savings=True)
    assert checks["size.savings"].status == "error" and checks["size.savings"].error_kind == "bad_input"


def test_smaller_candidate_passes_savings_and_ratio(tmp_path):
    base = save_onnx(weights(), tmp_path / "big.onnx")
    small = save_onnx({k: v[: v.shape[0] // 2] for k, v in weights().items()}, tmp_path / "small.onnx")
    checks, r = size_of(small, base, require_savings=True, max_ratio_to_baseline=0.6)
    assert checks["size.savings"].status == "pass" and checks["size.ratio_to_baseline"].status == "pass"
    assert r["bytes_saved"] > 0 and "and saves 50.0 % on disk" in r["summary"]
    checks, _ = size_of(base, small)
    ratio = checks["size.ratio_to_baseline"]
    assert ratio.status == "fail" and "larger on disk" in ratio.message


def test_budgets_pass_and_fail(pair):
    _, pruned = pair
    checks, r = size_of(pruned)
    assert set(checks) == {"size.bytes", "size.compressed_bytes"}
    assert all(c.status == "pass" for c in checks.values())
    assert "reported, no threshold set" in checks["size.bytes"].message and "baseline_bytes" not in r
    checks, _ = size_of(pruned, max_bytes=r["bytes"], max_compressed_bytes=r["compressed_bytes"] - 1)
    assert checks["size.bytes"].status == "pass" and checks["size.compressed_bytes"].status == "fail"
    checks, _ = size_of(pruned, max_bytes=r["bytes"] - 1)
    assert checks["size.bytes"].status == "fail"


def test_compress_level_is_applied_and_recorded(pair):
    _, pruned = pair
    _, fast = size_of(pruned, compress_level=1)
    _, none = size_of(pruned, compress_level=0)
    assert fast["compress_level"] == 1 and none["compress_level"] == 0
    assert none["compressed_bytes"] > fast["compressed_bytes"]


def test_compressed_bytes_streams_in_chunks(tmp_path):
    import zlib

    data = np.random.default_rng(1).integers(0, 4, 9 << 20, dtype=np.uint8).tobytes()  # > two read chunks
    (tmp_path / "blob").write_bytes(data)
    assert compressed_bytes([tmp_path / "blob"], 1) == pytest.approx(len(zlib.compress(data, 1)), rel=0.01)


def test_results_are_plain_json(pair):
    dense, pruned = pair
    _, r = size_of(pruned, dense)
    assert json.loads(json.dumps(r, allow_nan=False)) == r


def test_report_with_size_results_is_schema_valid(pair):
    from edgeval.environment import environment
    from edgeval.report import Report

    dense, pruned = pair
    cand, base = load_artifact(pruned), load_artifact(dense)
    outcome = run_validator(SizeValidator(), RunContext(cand, base, Policy.default(), progress=lambda m: None))
    report = Report(cand.to_json(), base.to_json(), Policy.default().to_json(), outcome.checks,
                    {"size": outcome.results}, environment=environment(),
                    run={"validators": ["size"], "seed": 0, "duration_s": 0.0})
    assert report.verdict == "pass", outcome.checks
    assert json.loads(report.dumps())["results"]["size"]["bytes_saved"] == 0


# -- ONNX external data ----------------------------------------------------------------------------------
def test_external_data_is_counted(pair, tmp_path):
    dense, pruned = pair
    external = save_onnx(magnitude_prune(weights()), tmp_path / "ext.onnx", external=True)
    art = load_artifact(external)
    assert [f.name for f in art.files] == ["ext.onnx", "weights.bin"]
    _, inline = size_of(pruned)
    _, r = size_of(external)
    assert r["files"] == 2 and r["bytes"] == art.bytes > (tmp_path / "weights.bin").stat().st_size
    assert (tmp_path / "ext.onnx").stat().st_size < 2000
    for key in ("params", "weight_zeros", "weight_sparsity", "tensors"):
        assert r[key] == inline[key]


def test_truncated_external_data_is_a_model_error(tmp_path):
    external = save_onnx(weights(), tmp_path / "ext.onnx", external=True)
    art = load_artifact(external)
    data = (tmp_path / "weights.bin").read_bytes()
    (tmp_path / "weights.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="weights.bin"):
        SizeValidator().run(RunContext(art, None, Policy.default()), Policy.default().section("size"))


# -- garbage --------------------------------------------------------------------------------------------
def _fake_artifact(path: Path, fmt: str) -> Artifact:
    return Artifact(path=path, format=fmt, sha256="0" * 64, bytes=path.stat().st_size, files=(path,))


@pytest.mark.parametrize("fmt,name,content", [
    ("onnx", "bad.onnx", b"\x08\x07garbage" * 50),
    ("tflite", "bad.tflite", b"\x10\x00\x00\x00TFL3" + b"\xff" * 40),
])
def test_garbage_file_is_a_one_line_model_error(tmp_path, fmt, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    ctx = RunContext(_fake_artifact(path, fmt), None, Policy.default(), progress=lambda m: None)
    with pytest.raises(ModelError) as info:
        SizeValidator().run(ctx, Policy.default().section("size"))
    assert name in str(info.value) and "\n" not in str(info.value)
    outcome = run_validator(SizeValidator(), ctx)
    assert outcome.checks[0].status == "error" and outcome.checks[0].error_kind == "bad_input"


def test_garbage_safetensors_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match="model.safetensors"):
        tensor_stats("hf", tmp_path)


# -- zeros on raw bit patterns ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,values,zeros", [
    ("float32", np.array([0.0, -0.0, 1.0, -2.0], np.float32), 2),
    ("float16", np.array([0.0, -0.0, 1.0, 1e-4], np.float16), 2),
    ("bfloat16", np.array([0x0000, 0x8000, 0x3F80, 0x0001], "<u2"), 2),  # 0, -0, 1.0, tiny denormal
    ("int8", np.array([0, -128, 1, 0], np.int8), 2),
    ("int64", np.array([0, -1, 1 << 40], np.int64), 1),
])
def test_count_zeros_by_dtype_width(dtype, values, zeros):
    assert count_zeros(values.view(np.uint8), dtype) == zeros


# -- safetensors (Hugging Face directory) ----------------------------------------------------------------
def _write_bf16_safetensors(path: Path, name: str, bits: np.ndarray, shape: tuple[int, ...]) -> None:
    """A safetensors file written by hand: numpy has no bfloat16, the file format is simple."""
    raw = bits.astype("<u2").tobytes()
    header = json.dumps({name: {"dtype": "BF16", "shape": list(shape), "data_offsets": [0, len(raw)]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw)


def test_safetensors_directory_f32_and_bf16(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    pruned = magnitude_prune(weights())
    save_file(pruned, str(tmp_path / "model-00001.safetensors"))
    bits = np.where(np.arange(64 * 32) % 4 == 0, 0x8000, 0x3F80).astype("<u2")  # a quarter -0.0
    _write_bf16_safetensors(tmp_path / "model-00002.safetensors", "lm_head", bits, (64, 32))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    _, r = size_of(tmp_path)
    with safe_open(str(tmp_path / "model-00001.safetensors"), framework="numpy") as fh:
        f32_zeros = sum(int((fh.get_tensor(k) == 0).sum()) for k in fh.keys())
    assert r["format"] == "hf" and r["files"] == 4 and r["tensors"] == 4
    assert r["weight_zeros"] == f32_zeros + 64 * 32 // 4
    assert r["weight_params"] == 2 * 256 * 128 + 64 * 32


def test_gguf_bytes_only(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 1000)
    checks, r = size_of(path)
    assert r["weight_sparsity"] is None and r["sparsity_measured"] is False and r["bytes"] == 1004
    assert "sparsity not measured" in r["summary"] and checks["size.bytes"].status == "pass"


# -- TFLite --------------------------------------------------------------------------------------------
def _tflite(w: np.ndarray, path: Path, sparse: bool = False) -> Path:
    import tensorflow as tf

    const = tf.constant(w)

    @tf.function(input_signature=[tf.TensorSpec([1, w.shape[0]], tf.float32)], autograph=False)
    def fn(x):
        return tf.nn.relu(tf.matmul(x, const))

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    if sparse:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    path.write_bytes(converter.convert())
    return path


@pytest.mark.tflite
@pytest.mark.tf
def test_tflite_dense_pruned_and_sparse_encoded(tmp_path):
    pytest.importorskip("tensorflow", reason="building .tflite test files needs tensorflow")
    pytest.importorskip("ai_edge_litert", reason="parsing .tflite needs ai-edge-litert")
    w = weights()["w1"]
    wp = magnitude_prune({"w": w})["w"]
    dense, pruned = _tflite(w, tmp_path / "dense.tflite"), _tflite(wp, tmp_path / "pruned.tflite")
    sparse = _tflite(wp, tmp_path / "sparse.tflite", sparse=True)
    checks, r = size_of(pruned, dense)
    assert r["format"] == "tflite" and r["weight_params"] == w.size
    assert r["weight_sparsity"] == pytest.approx(0.5, abs=1e-3) and r["baseline_weight_sparsity"] == 0.0
    assert r["bytes_saved"] == 0 and "saves 0 bytes on disk" in checks["size.ratio_to_baseline"].message
    _, s = size_of(sparse, dense)
    assert s["weight_params"] == w.size and s["weight_sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert s["bytes_saved_ratio"] > 0.3


@pytest.mark.tflite
def test_tflite_buffer_stored_at_an_offset_outside_the_flatbuffer(tmp_path):
    """The > 2 GB layout: buffer data after the flatbuffer, found by offset/size from the file start."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    import flatbuffers

    def pack(offset: int) -> bytes:
        tensor, graph, model = schema.TensorT(), schema.SubGraphT(), schema.ModelT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [4, 4], schema.TensorType.FLOAT32, 1, b"w"
        graph.tensors, graph.inputs, graph.outputs, graph.operators = [tensor], [], [], []
        outside = schema.BufferT()
        outside.offset, outside.size = offset, 64
        model.version, model.subgraphs, model.buffers = 3, [graph], [schema.BufferT(), outside]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    offset = -(-len(pack(2)) // 16) * 16
    head = pack(offset)
    data = np.array([0.0, -0.0] + [1.0] * 14, np.float32).tobytes()
    (tmp_path / "big.tflite").write_bytes(head + b"\0" * (offset - len(head)) + data)
    (stat,) = tensor_stats("tflite", tmp_path / "big.tflite")
    assert (stat.name, stat.shape, stat.elements, stat.zeros, stat.stored_bytes) == ("w", (4, 4), 16, 2, 64)
    (tmp_path / "big.tflite").write_bytes(head + b"\0" * (offset - len(head)) + data[:32])  # truncated
    with pytest.raises(ModelError, match="past the end of the file"):
        tensor_stats("tflite", tmp_path / "big.tflite")


def test_baseline_is_measured_once_per_process_while_unchanged(tmp_path, monkeypatch):
    """A baseline checked against several candidates is compressed once; a changed file is measured again."""
    import os

    from edgeval.validators import size

    dense = weights()
    base = save_onnx(dense, tmp_path / "dense.onnx")
    first = save_onnx(magnitude_prune(dense), tmp_path / "a.onnx")
    second = save_onnx(magnitude_prune(dense, 0.25), tmp_path / "b.onnx")
    calls = []
    real = size.compressed_bytes
    monkeypatch.setattr(size, "compressed_bytes",
                        lambda files, level=1: calls.append(list(files)) or real(files, level))
    _, r1 = size_of(first, base)
    _, r2 = size_of(second, base)
    assert [Path(c[0]).name for c in calls] == ["a.onnx", "dense.onnx", "b.onnx"]
    assert r1["baseline_compressed_bytes"] == r2["baseline_compressed_bytes"] == real([base])
    save_onnx(weights(seed=1), base)  # same size, new content and mtime
    os.utime(base, ns=(1, 1))
    _, r3 = size_of(second, base)
    assert [Path(c[0]).name for c in calls][3:] == ["b.onnx", "dense.onnx"]
    assert r3["baseline_compressed_bytes"] == real([base])
