"""Size of quantized artifacts and sparsity per layer group: int8 dynamic and int4 MatMulNBits ONNX models made
with onnxruntime.quantization, a tiny Llama whose o_proj/down_proj were left dense, and hostile packed weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeval.artifacts import load_artifact
from edgeval.policy import Policy
from edgeval.validators.base import RunContext, run_validator
from edgeval.validators.size import SizeValidator
from edgeval.validators.summaries import size_html, size_sentence
from edgeval.validators.tensorstats import tensor_stats
from edgeval.validators.weightgroups import group_of

PRUNED = ("q", "k", "v", "gate", "up")
DENSE = ("o", "down")
BLOCK = PRUNED + DENSE


def size_of(candidate: Path, baseline: Path | None = None) -> tuple[dict, dict]:
    ctx = RunContext(load_artifact(candidate), load_artifact(baseline) if baseline else None, Policy.default(),
                     progress=lambda m: None)
    outcome = run_validator(SizeValidator(), ctx)
    return {c.id: c for c in outcome.checks}, outcome.results


def quantize_int4(src: Path, dst: Path, block_size: int = 32, rtn: bool = True) -> Path:
    """``src`` with its MatMul weights in MatMulNBits int4 (RTN through its algo config, or the default algorithm)."""
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as nbits

    config = nbits.RTNWeightOnlyQuantConfig() if rtn else None
    quantizer = nbits.MatMulNBitsQuantizer(onnx.load(str(src)), block_size=block_size, is_symmetric=False,
                                           algo_config=config)
    quantizer.process()
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    return dst


def quantize_int8(src: Path, dst: Path, weight_type: str = "QInt8", per_channel: bool = False) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst), weight_type=getattr(QuantType, weight_type), per_channel=per_channel)
    return dst


@pytest.fixture(scope="module")
def partly_pruned(tiny_llama_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """The tiny Llama with exactly half of each q/k/v/gate/up matrix zeroed (magnitude) and o/down untouched:
    its HF directory and its legacy ONNX export."""
    import torch
    from transformers import AutoModelForCausalLM

    from edgeval.converters.export import export_onnx

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(f"{g}_proj" in name for g in PRUNED):
                p.view(-1)[p.abs().flatten().argsort()[: p.numel() // 2]] = 0
    root = tmp_path_factory.mktemp("partly-pruned")
    model.save_pretrained(root / "hf")
    onnx = export_onnx(root / "hf", root / "onnx" / "model.onnx", legacy=True, tokenizer=tiny_llama_dir)
    return {"hf": root / "hf", "onnx": onnx, "root": root}


@pytest.fixture(scope="module")
def int4(tiny_llama_onnx: Path, tmp_path_factory) -> Path:
    return quantize_int4(tiny_llama_onnx, tmp_path_factory.mktemp("int4") / "model.onnx")


def assert_skipped_layers_visible(r: dict) -> None:
    groups = r["groups"]
    for g in PRUNED:
        assert groups[g]["sparsity"] == pytest.approx(0.5, abs=1e-3), g
    for g in DENSE + ("embeddings",):
        assert groups[g]["sparsity"] == 0.0, g
    assert r["weight_sparsity"] < 0.3  # the whole-model figure hides which layers were pruned
    assert "q 50% k 50% v 50% o 0% gate 50% up 50% down 0% · embeddings 0%" in size_sentence(r)


# -- groups of float models ----------------------------------------------------------------------------------
def test_onnx_legacy_groups_come_from_consumer_nodes(partly_pruned, tiny_llama_onnx):
    """Legacy exports call the MatMul weights onnx::MatMul_NNN: the group comes from the node that consumes them."""
    _, r = size_of(partly_pruned["onnx"], tiny_llama_onnx)
    assert_skipped_layers_visible(r)
    assert r["groups"]["lm_head"]["sparsity"] == 0.0 and r["bits_per_weight"] == 32.0
    assert r["weight_storage"] == {"float32": r["weight_params"]}
    assert all(r["baseline_groups"][g]["sparsity"] == 0.0 for g in BLOCK)
    assert r["groups"]["q"]["params"] == 2 * 64 * 64 and r["groups"]["k"]["params"] == 2 * 64 * 32
    assert "baseline sparsity per group: q 0%" in size_sentence(r)
    assert "Sparsity per group: q 50%" in size_html(r) and "Bits per weight: baseline 32.00, candidate 32.00" \
        in size_html(r)
    assert json.loads(json.dumps(r, allow_nan=False)) == r


def test_safetensors_groups_come_from_names(partly_pruned):
    _, r = size_of(partly_pruned["hf"])
    assert_skipped_layers_visible(r)
    assert "lm_head" not in r["groups"]  # tied: one stored tensor, the embeddings


@pytest.mark.slow
def test_onnx_dynamo_groups_come_from_node_scopes(partly_pruned, tiny_llama_dir):
    """The dynamo exporter names weights val_NN and nodes node_linear_N; its node scopes name the module."""
    from edgeval.converters.export import export_onnx

    root = partly_pruned["root"]
    onnx = export_onnx(root / "hf", root / "dynamo" / "model.onnx", tokenizer=tiny_llama_dir)
    _, r = size_of(onnx)
    for g in PRUNED:
        assert r["groups"][g]["sparsity"] == pytest.approx(0.5, abs=1e-3), g
    for g in DENSE:
        assert r["groups"][g]["sparsity"] == 0.0 and r["groups"][g]["params"] > 0, g


@pytest.mark.parametrize("name, group", [
    ("model.layers.3.self_attn.q_proj.weight", "q"), ("/model/layers.0/self_attn/k_proj/MatMul", "k"),
    ("transformer.h.0.attn.c_attn.weight", "qkv"), ("transformer.h.0.attn.c_proj.weight", "o"),
    ("transformer.h.0.mlp.c_proj.weight", "down"), ("transformer.h.0.mlp.c_fc.weight", "up"),
    ("model.layers.0.mlp.gate_up_proj.weight", "gate_up"), ("layers.0.feed_forward.w2.weight", "down"),
    ("model.embed_tokens.weight_quantized", "embeddings"), ("transformer.wte.weight", "embeddings"),
    ("output.weight", "lm_head"), ("/model/model/embed_tokens/Gather_output_0_DequantizeLinear", "embeddings"),
    ("model.layers.0.post_attention_layernorm.weight", "norm"), ("onnx::MatMul_659", None),
    ("past_key_values.0.key", None),
])
def test_group_of_names(name, group):
    assert group_of(name) == group


# -- int8 dynamic --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weight_type, per_channel", [("QInt8", False), ("QUInt8", True)])
def test_int8_dynamic_bits_and_storage(tiny_llama_onnx, tmp_path, weight_type, per_channel):
    import onnx
    from onnx import numpy_helper

    int8 = quantize_int8(tiny_llama_onnx, tmp_path / "int8.onnx", weight_type, per_channel)
    _, r = size_of(int8, tiny_llama_onnx)
    assert 8 <= r["bits_per_weight"] <= 9 and r["baseline_bits_per_weight"] == 32.0
    stored = weight_type[1:].lower()
    assert r["weight_storage"].get(stored, 0) >= sum(r["groups"][g]["params"] for g in BLOCK)
    assert set(r["weight_storage"]) <= {"int8", "uint8"} and r["weight_params"] == r["baseline_weight_params"]
    for g in BLOCK + ("lm_head",):
        assert 8 <= r["groups"][g]["bits_per_weight"] <= 9, g
    assert r["scale_bytes"] > 0 and r["zero_point_bytes"] > 0
    assert r["quantized_weight_bytes"] == r["weight_params"]  # one byte per weight
    # zeros are q == zero point: counted independently on the stored arrays (the uint8 Gather has zp != 0)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(int8)).graph.initializer}
    expected = {name: int((a == inits[name[: -len("_quantized")] + "_zero_point"]).sum())
                for name, a in inits.items() if name.endswith("_quantized")}
    assert any(np.any(inits[n[: -len("_quantized")] + "_zero_point"] != 0) for n in expected)
    stats = {s.name: s for s in tensor_stats("onnx", int8)}
    assert {n: stats[n].zeros for n in expected} == expected and sum(expected.values()) == r["weight_zeros"]
    assert f"{r['bits_per_weight']:.2f} bits/weight (baseline 32.00)" in size_sentence(r)


# -- int4 MatMulNBits ----------------------------------------------------------------------------------------
def _matmul_weight_params(model_path: Path) -> int:
    import onnx

    model = onnx.load(str(model_path))
    fed = {n.input[1] for n in model.graph.node if n.op_type == "MatMul"}
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.name in fed)


def test_int4_bits_and_logical_params(int4, tiny_llama_onnx):
    _, r = size_of(int4, tiny_llama_onnx)
    logical = _matmul_weight_params(tiny_llama_onnx)
    assert r["weight_storage"]["int4"] == logical
    assert sum(g["params"] for name, g in r["groups"].items() if name != "embeddings") == logical
    for g in BLOCK + ("lm_head",):
        assert 4 < r["groups"][g]["bits_per_weight"] <= 5.5, g
    assert r["weight_params"] == r["baseline_weight_params"] and r["unmeasured"] == []
    assert r["quantized_weight_bytes"] == logical // 2 and r["scale_bytes"] == logical // 32 * 4
    assert r["zero_point_bytes"] > 0 and r["payload_bytes"] < r["baseline_payload_bytes"] / 2


def _dequantized_zeros(model_path: Path) -> dict[str, int]:
    """Zeros of each MatMulNBits weight as ONNX Runtime dequantizes it: the node applied to an identity matrix."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(model_path))
    inits = {t.name: t for t in model.graph.initializer}
    out = {}
    for node in (n for n in model.graph.node if n.op_type == "MatMulNBits"):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        k, n = attrs["K"], attrs["N"]
        probe = helper.make_node("MatMulNBits", ["x", *node.input[1:]], ["y"], domain="com.microsoft", **attrs)
        graph = helper.make_graph([probe], "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [k, k])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [k, n])],
                                  [inits[i] for i in node.input[1:] if i])
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        m = helper.make_model(graph, opset_imports=opsets)
        y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": np.eye(k, dtype=np.float32)})[0]
        out[node.input[1]] = int((y == 0).sum())
    return out


@pytest.mark.parametrize("block_size, rtn", [(32, True), (128, False)])
def test_pruned_then_int4_zeros_are_counted(partly_pruned, tmp_path, block_size, rtn):
    """Zeros in the dequantized domain equal what ONNX Runtime's own kernel produces (block 128 pads K = 64);
    the pruned groups keep at least their pruned half, the dense ones only rounding zeros."""
    int4 = quantize_int4(partly_pruned["onnx"], tmp_path / "model.onnx", block_size, rtn)
    _, r = size_of(int4, partly_pruned["onnx"])
    stats = {s.name: s for s in tensor_stats("onnx", int4)}
    expected = _dequantized_zeros(int4)
    assert len(expected) == 15 and {name: stats[name].zeros for name in expected} == expected
    for g in PRUNED:
        assert r["groups"][g]["sparsity"] >= 0.49, g
    for g in DENSE:
        assert r["groups"][g]["sparsity"] < 0.3, g
    assert r["baseline_groups"]["o"]["sparsity"] == 0.0


# -- hostile packed weights ---------------------------------------------------------------------------------
def _tamper(src: Path, dst: Path, node_part: str, **attrs) -> Path:
    import onnx
    from onnx import helper

    model = onnx.load(str(src))
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits" and node_part in n.name)
    for a in [a for a in node.attribute if a.name in attrs]:
        node.attribute.remove(a)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("attrs, words", [({"K": 128}, "need"), ({"N": 10 ** 12}, "need"),
                                          ({"bits": 3}, "not a layout"), ({"block_size": 0}, "not a layout")])
def test_inconsistent_matmulnbits_is_reported_unmeasured(int4, tmp_path, attrs, words):
    bad = _tamper(int4, tmp_path / "bad.onnx", "layers.0/self_attn/q_proj", **attrs)
    checks, r = size_of(bad)
    assert all(c.status == "pass" for c in checks.values())
    (entry,) = r["unmeasured"]
    assert entry["name"].startswith("onnx::MatMul_") and words in entry["why"]
    q = r["groups"]["q"]
    assert q["sparsity"] is None and q["bits_per_weight"] is None and q["unmeasured_weights"] == 1
    assert r["bits_per_weight"] is None and r["groups"]["k"]["sparsity"] is not None
    assert "q ? k " in size_sentence(r)


def test_wrong_zero_points_are_reported_unmeasured(int4, tmp_path):
    import onnx

    model = onnx.load(str(int4))
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    zp = next(t for t in model.graph.initializer if t.name == node.input[3])
    zp.raw_data = zp.raw_data[:-1]
    zp.dims[:] = [len(zp.raw_data)]
    onnx.save(model, str(tmp_path / "bad.onnx"))
    _, r = size_of(tmp_path / "bad.onnx")
    assert [u["name"] for u in r["unmeasured"]] == [node.input[1]] and "zero points" in r["unmeasured"][0]["why"]


def test_gguf_stays_unmeasured(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 100)
    _, r = size_of(path)
    assert r["groups"] is None and r["bits_per_weight"] is None and r["weight_storage"] is None
    assert "per group" not in size_sentence(r) and "bits/weight" not in size_sentence(r)



@pytest.mark.tflite
def test_tflite_groups_follow_the_first_location_of_fused_names(tiny_llama_tflite, tiny_llama_dir):
    """litert-torch names a shared constant ``…up_proj;;…gate_proj``: it is the up_proj; each grouped weight holds
    the data of a Hugging Face weight of that group, and the embedding table (``arith.constant…``) is grouped by
    the Gather it feeds."""
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter
    from safetensors.numpy import load_file

    hf = load_file(str(tiny_llama_dir / "model.safetensors"))
    interpreter = Interpreter(model_path=str(tiny_llama_tflite))
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    stats = [s for s in tensor_stats("tflite", tiny_llama_tflite) if s.group in BLOCK and s.is_weight]
    assert len(stats) == 2 * len(BLOCK)
    for s in stats:
        data = interpreter.get_tensor(index[s.name])
        assert any(f".{s.group}_proj." in k and np.array_equal(v, data) for k, v in hf.items()), (s.group, s.name)
    _, r = size_of(tiny_llama_tflite)
    assert {g: r["groups"][g]["params"] for g in BLOCK + ("embeddings",)} == {
        g: sum(v.size for k, v in hf.items() if f".{g}_proj." in k or (g == "embeddings" and "embed" in k))
        for g in BLOCK + ("embeddings",)}


def test_packed_safetensors_weights_are_not_guessed(tmp_path):
    """A GPTQ-style ``qweight`` (int32-packed) in safetensors is a weight it cannot decode: unmeasured, its group
    without a sparsity, never counted as int32 parameters."""
    from safetensors.numpy import save_file

    save_file({"model.layers.0.self_attn.q_proj.qweight": np.zeros((8, 64), np.int32),
               "model.layers.0.self_attn.q_proj.scales": np.ones((1, 64), np.float16),
               "model.layers.0.self_attn.k_proj.weight": np.ones((64, 32), np.float32)},
              str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text("{}")
    _, r = size_of(tmp_path)
    assert r["groups"]["q"]["sparsity"] is None and r["groups"]["q"]["unmeasured_weights"] == 1
    assert r["groups"]["k"]["sparsity"] == 0.0 and r["weight_params"] == 64 * 32 and r["bits_per_weight"] is None
    assert r["scale_bytes"] == 128
    assert [u["name"] for u in r["unmeasured"]] == ["model.layers.0.self_attn.q_proj.qweight"]


def test_zero_point_not_stored_as_an_initializer_is_not_assumed_zero(tiny_llama_onnx, tmp_path):
    """A uint8 weight whose zero point comes from a Constant node: reported unmeasured, not counted against 0."""
    import onnx
    from onnx import helper

    model = onnx.load(str(quantize_int8(tiny_llama_onnx, tmp_path / "int8.onnx", "QUInt8", True)))
    zp = next(t for t in model.graph.initializer if t.name.endswith("_zero_point") and len(t.dims) == 1)
    model.graph.initializer.remove(zp)
    model.graph.node.insert(0, helper.make_node("Constant", [], [zp.name], value=zp))
    onnx.save(model, str(tmp_path / "moved.onnx"))
    _, r = size_of(tmp_path / "moved.onnx")
    (entry,) = r["unmeasured"]
    assert entry["name"] == zp.name[: -len("_zero_point")] + "_quantized" and "not a stored initializer" in entry["why"]
    assert r["bits_per_weight"] is None
