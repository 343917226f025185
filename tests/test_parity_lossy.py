"""Lossy parity: the mode is chosen from the artifact, KL / ΔNLL are right, the lossy bounds are enforced."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_parity import FakeRuntime

from edgeval.artifacts import load_artifact
from edgeval.errors import PolicyError
from edgeval.policy import Policy
from edgeval.settings import parse
from edgeval.validators.parity import ParitySettings, load_parity_prompts, parity_report
from edgeval.validators.parity_lossy import Divergence, kl_rows
from edgeval.validators.quantized import quantization_evidence
from edgeval.validators.summaries import parity_sentence

FEW = 4  # parity items used with the tiny real models (x 3 orders)


def _copy_beside(src: Path, out_dir: Path) -> Path:
    """A folder holding the tokenizer files that sit beside ``src``, for a quantized copy of it."""
    out_dir.mkdir(parents=True)
    for f in src.parent.iterdir():
        if f.is_file() and not f.name.startswith(src.name):
            shutil.copy(f, out_dir / f.name)
    return out_dir / "model.onnx"


@pytest.fixture(scope="module")
def tiny_int8(tiny_llama_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama export quantized by ONNX Runtime's ``quantize_dynamic`` (int8 weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = _copy_beside(tiny_llama_onnx, tmp_path_factory.mktemp("int8") / "q")
    quantize_dynamic(str(tiny_llama_onnx), str(out), weight_type=QuantType.QInt8)
    return out


@pytest.fixture(scope="module")
def tiny_int4(tiny_llama_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama export with MatMulNBits int4 weights (ONNX Runtime's RTN quantizer, block 32)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, RTNWeightOnlyQuantConfig

    out = _copy_beside(tiny_llama_onnx, tmp_path_factory.mktemp("int4") / "q")
    quant = MatMulNBitsQuantizer(str(tiny_llama_onnx), block_size=32, is_symmetric=True,
                                 algo_config=RTNWeightOnlyQuantConfig())
    quant.process()
    quant.model.save_model_to_file(str(out), use_external_data_format=False)
    return out


def _report(candidate: Path, reference: Path, settings: dict | None = None):
    from edgeval.runtimes import load_runtime

    cand, ref = load_runtime(candidate), load_runtime(reference)
    try:
        return parity_report(cand, ref, settings or {}, items=load_parity_prompts()[:FEW])
    finally:
        cand.close()
        ref.close()


def statuses(checks) -> dict[str, str]:
    return {c.id: c.status for c in checks}


# -- what the artifact holds -------------------------------------------------------------------------------------
def test_plain_export_holds_no_quantized_computation(tiny_llama_onnx: Path):
    assert quantization_evidence(load_artifact(tiny_llama_onnx)) == []
    assert quantization_evidence(None) == []


def test_quantized_copies_are_recognised_from_their_graph(tiny_int8: Path, tiny_int4: Path):
    int8 = " ".join(quantization_evidence(load_artifact(tiny_int8)))
    int4 = " ".join(quantization_evidence(load_artifact(tiny_int4)))
    assert "MatMulInteger" in int8 and "int8 weight" in int8
    assert "MatMulNBits" in int4 and "uint8 weight" in int4


@pytest.mark.tflite
def test_plain_tflite_export_holds_no_quantized_computation(tiny_llama_tflite: Path):
    assert quantization_evidence(load_artifact(tiny_llama_tflite)) == []


# -- the figures ---------------------------------------------------------------------------------------------------
def test_kl_and_delta_nll_are_zero_for_identical_runtimes():
    _, results = parity_report(FakeRuntime(), FakeRuntime(), {})
    assert results["mean_kl"] == 0.0 and results["max_kl"] == 0.0 and results["delta_nll"] == 0.0
    assert results["reference_nll"] > 0 and results["nll_tokens"] > results["n_prompts"]
    assert results["mode"] == "exact" and "no quantized computation" in results["mode_reason"]


def test_kl_matches_its_definition():
    ref, cand = np.log([[0.5, 0.25, 0.25]]), np.log([[0.25, 0.5, 0.25]])
    assert kl_rows(ref, cand)[0] == pytest.approx(0.5 * math.log(2) + 0.25 * math.log(0.5))
    assert kl_rows(ref + 7.0, ref)[0] == pytest.approx(0.0, abs=1e-12)  # a shift is the same distribution


def test_delta_nll_is_candidate_minus_reference_on_the_prompts_own_tokens():
    """Two tokens, uniform reference (NLL log 2); the candidate gives the true next token 3/4 (NLL log 4/3, better)
    or 1/4 (NLL log 4, worse)."""
    seq = [0, 1, 1, 0]
    ref = np.zeros((4, 2))
    better = np.zeros((4, 2))
    better[np.arange(3), seq[1:]] = math.log(3)
    for cand, expected in ((better, math.log(4 / 3) - math.log(2)), (-better, math.log(4) - math.log(2))):
        div = Divergence()
        div.add(cand, ref, seq)
        s = div.summary()
        assert s["reference_nll"] == pytest.approx(math.log(2)) and s["nll_tokens"] == 3
        assert s["delta_nll"] == pytest.approx(expected) and (s["delta_nll"] > 0) == (expected > 0)


def test_quantized_copy_has_positive_kl(tiny_int4: Path, tiny_llama_onnx: Path):
    checks, results = _report(tiny_int4, tiny_llama_onnx)
    assert results["mode"] == "lossy" and "MatMulNBits" in results["mode_reason"]
    assert results["mean_kl"] > 0 and results["max_kl"] >= results["mean_kl"]
    assert results["max_abs_logit_diff"] > 0
    by_id = {c.id: c for c in checks}
    assert not by_id["parity.max_abs_logit_diff"].gated  # reported, not gated in the lossy mode
    assert {"parity.mean_kl", "parity.delta_nll", "parity.option_agreement"} <= set(by_id)
    assert all("[lossy mode: auto: the candidate holds quantized" in c.message for c in checks)
    assert parity_sentence(results).startswith("lossy mode") and "mean KL" in parity_sentence(results)


# -- the modes -----------------------------------------------------------------------------------------------------
def test_auto_is_exact_for_a_plain_export(tiny_llama_onnx: Path, tiny_llama_dir: Path):
    checks, results = _report(tiny_llama_onnx, tiny_llama_dir, Policy().section("parity"))  # as `edgeval export`
    assert results["mode"] == "exact" and results["mean_kl"] < 1e-6
    assert statuses(checks)["parity.max_abs_logit_diff"] == "pass"
    assert "parity.mean_kl" not in statuses(checks) and all("[exact mode: auto:" in c.message for c in checks)


def test_auto_is_lossy_for_int8_dynamic(tiny_int8: Path, tiny_llama_onnx: Path):
    checks, results = _report(tiny_int8, tiny_llama_onnx)
    assert results["mode"] == "lossy" and "DynamicQuantizeLinear" in results["mode_reason"]
    assert "parity.mean_kl" in statuses(checks)


def test_forced_lossy_on_a_plain_export_fails_closed(tiny_llama_onnx: Path, tiny_llama_dir: Path):
    checks, results = _report(tiny_llama_onnx, tiny_llama_dir, {"mode": "lossy"})
    (error,) = [c for c in checks if c.status == "error"]
    assert error.id == "parity.mode" and error.error_kind == "bad_input" and "no quantized computation" in error.message
    assert results["mode"] == "exact" and statuses(checks)["parity.max_abs_logit_diff"] == "pass"
    assert next(c for c in checks if c.id == "parity.max_abs_logit_diff").threshold == 1e-2  # exact bound applied


def test_forced_exact_gates_a_quantized_copy_on_the_exact_bounds(tiny_int4: Path, tiny_llama_onnx: Path):
    checks, results = _report(tiny_int4, tiny_llama_onnx, {"mode": "exact"})
    assert results["mode"] == "exact" and "MatMulNBits" in results["mode_reason"]
    assert statuses(checks)["parity.max_abs_logit_diff"] == "fail"


def test_lossy_bounds_are_enforced(tiny_int4: Path, tiny_llama_onnx: Path):
    tight = {"lossy_max_mean_kl": 1e-9, "lossy_max_delta_nll": 1e-9, "lossy_max_kl": 1e-9}
    status = statuses(_report(tiny_int4, tiny_llama_onnx, tight)[0])
    assert status["parity.mean_kl"] == status["parity.max_kl"] == "fail"
    assert status.get("parity.cached_mean_kl", "fail") == "fail"  # the tiny export has no KV cache
    loose = {"lossy_max_mean_kl": 10.0, "lossy_max_kl": 10.0, "lossy_max_delta_nll": 10.0,
             "lossy_min_top1_agreement": 0.0, "lossy_min_letter_agreement": 0.0, "lossy_min_option_agreement": 0.0}
    assert set(statuses(_report(tiny_int4, tiny_llama_onnx, loose)[0]).values()) == {"pass"}


@pytest.mark.parametrize("section", [{"mode": "fuzzy"}, {"mode": None}, {"lossy_max_mean_kl": 0},
                                     {"lossy_max_mean_kl": -1.0}, {"lossy_min_top1_agreement": 1.5},
                                     {"lossy_min_option_agreement": "high"}, {"lossy_max_delta_nll": -0.1},
                                     {"lossy_bogus": 1}])
def test_policy_refuses_bad_parity_settings(section: dict):
    with pytest.raises(PolicyError):
        parse(ParitySettings, section, "parity")
    with pytest.raises(PolicyError):
        Policy.from_dict({"parity": section})


def test_policy_defaults_hold_the_mode_and_the_lossy_bounds():
    section = Policy().section("parity")
    assert section["mode"] == "auto" and section["max_abs_logit_diff"] == 1e-2
    assert {k for k in section if k.startswith("lossy_")} == {
        "lossy_max_mean_kl", "lossy_max_kl", "lossy_max_delta_nll", "lossy_min_top1_agreement",
        "lossy_min_letter_agreement", "lossy_min_option_agreement"}


def test_kv_cached_path_of_a_quantized_copy_is_gated_on_kl(optimum_layout_onnx_int32: Path, tiny_llama_dir: Path,
                                                           tmp_path: Path):
    """A with-past layout quantized to int4 (MatMulNBits: batch-invariant, so its KV cache is used; a dynamic int8
    copy runs every prompt alone and in full): the cached path (as BBQ scores) gets its own KL, gated like mean KL."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, RTNWeightOnlyQuantConfig

    out = _copy_beside(optimum_layout_onnx_int32, tmp_path / "q")
    quant = MatMulNBitsQuantizer(str(optimum_layout_onnx_int32), block_size=32, is_symmetric=True,
                                 algo_config=RTNWeightOnlyQuantConfig())
    quant.process()
    quant.model.save_model_to_file(str(out), use_external_data_format=False)
    checks, results = _report(out, tiny_llama_dir, {"lossy_max_mean_kl": 1e-9})
    assert results["mode"] == "lossy" and results["mean_kl_cached"] > 0
    cached = next(c for c in checks if c.id == "parity.cached_mean_kl")
    assert cached.status == "fail" and cached.value == pytest.approx(results["mean_kl_cached"])
    assert "parity.cached_logit_diff" not in statuses(checks)  # the exact cached bound is not applied


def _keras_tflite(path: Path, how: str) -> Path:
    """A one-layer Keras model converted to TFLite: fp32, float16 weights, or dynamic-range int8 weights."""
    import tensorflow as tf

    model = tf.keras.Sequential([tf.keras.Input((64,)), tf.keras.layers.Dense(64)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if how != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if how == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    path.write_bytes(converter.convert())
    return path


@pytest.mark.tf
@pytest.mark.tflite
def test_tflite_quantized_weights_are_recognised(tmp_path: Path):
    from edgeval.validators.quantized import tflite_evidence

    assert tflite_evidence(_keras_tflite(tmp_path / "fp32.tflite", "fp32")) == []
    fp16 = " ".join(tflite_evidence(_keras_tflite(tmp_path / "fp16.tflite", "fp16")))
    assert "float16 weight" in fp16 and "DEQUANTIZE" in fp16
    assert "int8 weight" in " ".join(tflite_evidence(_keras_tflite(tmp_path / "int8.tflite", "int8")))


def test_dynamic_int8_has_no_cached_path(optimum_layout_onnx_int32: Path, tiny_llama_dir: Path, tmp_path: Path):
    """Dynamic int8 is batch-dependent: the runtime scores every prompt alone and in full, so parity has no
    separate cached path to measure (and reports none rather than a made-up figure)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = _copy_beside(optimum_layout_onnx_int32, tmp_path / "q")
    quantize_dynamic(str(optimum_layout_onnx_int32), str(out), weight_type=QuantType.QInt8)
    checks, results = _report(out, tiny_llama_dir, {})
    assert results["mode"] == "lossy" and results["mean_kl_cached"] is None and results["mean_kl"] > 0
    assert "parity.cached_mean_kl" not in statuses(checks)


def test_dead_low_precision_tensors_and_ops_are_no_evidence(tiny_llama_onnx: Path, tmp_path: Path):
    """An fp32 export with an unused float16 initializer, or a QuantizeLinear whose output nothing reads, does not
    earn the lossy bounds: only computation the graph runs counts."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(tiny_llama_onnx))
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((4, 4), np.float16), "unused_half"))
    model.graph.initializer.append(numpy_helper.from_array(np.float32(0.1), "dead_scale"))
    model.graph.node.append(helper.make_node("QuantizeLinear", ["dead_scale", "dead_scale"], ["dead_q"]))
    fooled = tmp_path / "model.onnx"
    onnx.save(model, str(fooled))
    assert quantization_evidence(load_artifact(fooled)) == []


def test_a_candidate_computed_in_half_precision_is_compared_with_the_lossy_bounds(tiny_llama_onnx: Path):
    """--dtype float16 makes the computation lossy whatever the artifact holds; auto used to say "no quantized
    computation" and apply the exact bounds."""
    from types import SimpleNamespace

    from edgeval.runtimes import RuntimeOptions
    from edgeval.validators.parity_lossy import choose_mode

    artifact = load_artifact(tiny_llama_onnx)
    half = SimpleNamespace(artifact=artifact, options=RuntimeOptions(dtype="float16"))
    mode = choose_mode("auto", half)
    assert mode.name == "lossy" and "computed in float16 (--dtype)" in mode.reason
    plain = SimpleNamespace(artifact=artifact, options=RuntimeOptions())
    assert choose_mode("auto", plain).name == "exact"
