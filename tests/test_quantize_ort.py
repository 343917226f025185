"""ONNX Runtime quantizers as compressors (int8, int8-static, int4): on tiny Llama exports, each writes an ONNX
file that edgeval's runtime runs, with the quantized ops it promises, tokenizer files beside it; refusals and bad
settings fail before any work with one line."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeval.converters.compressor import TOKENIZER_FILES, StepContext, refusal
from edgeval.converters.export import artifact_bytes, export_onnx, name_external_data
from edgeval.errors import BadInputError, DataError, PolicyError
from edgeval.plugins import registered_compressors
from edgeval.settings import parse

#: op types each quantizer must leave in the graph
EXPECTED_OPS = {"int8": {"DynamicQuantizeLinear", "MatMulInteger"}, "int8-static": {"QuantizeLinear",
                                                                                    "DequantizeLinear"},
                "int4": {"MatMulNBits"}}
FAST = {"int8-static": {"n_samples": 2, "seq_len": 16}}
PROMPTS = [[1, 5, 9, 13, 2], [1, 7]]


@pytest.fixture(scope="module")
def kv_onnx(tiny_llama_dir, tmp_path_factory) -> Path:
    """The tiny Llama exported like SmolLM2's dense model: legacy, KV cache, next-token output."""
    out = tmp_path_factory.mktemp("llama-kv") / "model.onnx"
    return export_onnx(tiny_llama_dir, out, legacy=True, kv_cache=True, next_token_output=True)


@pytest.fixture(scope="module")
def quantized(kv_onnx, tmp_path_factory) -> dict:
    """Each quantizer applied once to the KV-cache export: name -> StepResult."""
    results = {}
    for name in EXPECTED_OPS:
        results[name] = _apply(name, kv_onnx, tmp_path_factory.mktemp(f"q-{name}") / "out", FAST.get(name, {}))
    return results


def _apply(name: str, source: Path, out_dir: Path, settings: dict | None = None):
    comp = registered_compressors()[name]
    return comp.apply(source, out_dir, parse(comp.Settings, settings or {}, name), StepContext())


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


def _weight_matmuls(path: Path) -> list[str]:
    """MatMul nodes that still read a float initializer (directly or through an Identity)."""
    model = onnx.load(str(path), load_external_data=False)
    names = {t.name for t in model.graph.initializer}
    names |= {n.output[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in names}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and any(i in names for i in n.input)]


def test_quantizers_are_registered_compressors():
    found = registered_compressors()
    for name in EXPECTED_OPS:
        comp = found[name]
        assert (comp.kind, comp.accepts, comp.produces) == ("quantize", ("onnx",), "onnx")
        assert comp.summary and callable(comp.refuse)


@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
def test_output_runs_on_edgeval_runtime_with_quantized_ops(name, quantized, kv_onnx):
    from edgeval.runtimes import load_runtime

    result = quantized[name]
    assert result.path.name == kv_onnx.name and result.path.is_file()
    assert EXPECTED_OPS[name] <= _ops(result.path)
    for file in TOKENIZER_FILES:
        assert (result.path.parent / file).is_file() == (kv_onnx.parent / file).is_file()
    reference = load_runtime(kv_onnx).next_token_logits(PROMPTS)
    runtime = load_runtime(result.path)
    assert runtime.describe()["kv_cache"]
    logits = runtime.next_token_logits(PROMPTS)
    assert logits.shape == reference.shape and np.isfinite(logits).all()
    assert 0 < np.abs(logits - reference).max() < 1.0  # quantized: changed, but still the same model
    # dynamic int8 quantizes activations with one scale per tensor: a batch's other rows (padding, the cached
    # path's different shapes) move its logits a little; the static and weight-only formats do not
    atol = 0.05 if name == "int8" else 1e-4
    np.testing.assert_allclose(runtime.next_token_logits_many(PROMPTS), logits, atol=atol)


@pytest.mark.parametrize("name", ["int8", "int4"])
def test_every_weight_matmul_is_quantized_including_the_next_token_lm_head(name, quantized, kv_onnx):
    result = quantized[name]
    assert _weight_matmuls(kv_onnx)  # the float export has them (the LM head twice: via an Identity)
    assert _weight_matmuls(result.path) == []
    measured = result.measured
    assert measured["ops_after"]["MatMul"] < measured["ops_before"]["MatMul"]
    assert measured["quantized_weights"] > 0 and measured["quantized_weight_bytes"] > 0
    assert measured["float_weight_bytes"] < measured["float_weight_bytes_before"]


@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
def test_measured_figures_and_tools(name, quantized):
    result = quantized[name]
    assert result.measured["output_bytes"] == artifact_bytes(result.path)
    assert result.measured["output_bytes"] < result.measured["input_bytes"]
    assert result.measured["elapsed_s"] >= 0
    assert set(result.tools) == {"onnxruntime", "onnx"}
    assert not list(result.path.parent.glob(".stage-*")) and not list(result.path.parent.glob("*-inferred*"))


def test_static_int8_records_its_calibration(quantized):
    record = quantized["int8-static"].measured["calibration"]
    assert (record["n_samples"], record["seq_len"]) == (2, 16)
    assert record["source"].startswith("edgeval:") and len(record["sha256"]) == 64


@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
def test_an_already_quantized_model_is_refused(name, quantized, tmp_path):
    comp = registered_compressors()[name]
    source = quantized["int8"].path
    reason = refusal(comp, source)
    assert reason is not None and "already" in reason and str(source) in reason and "\n" not in reason
    with pytest.raises(BadInputError, match="already"):
        comp.apply(source, tmp_path / "out", parse(comp.Settings, FAST.get(name, {}), name), StepContext())


def test_the_float_export_is_not_refused(kv_onnx):
    assert all(refusal(registered_compressors()[name], kv_onnx) is None for name in EXPECTED_OPS)


@pytest.mark.parametrize("settings", [{"block_size": 7}, {"block_size": 8}, {"algorithm": "gptq"},
                                      {"accuracy_level": 5}, {"bits": 3}])
def test_bad_int4_settings_are_refused_by_parse(settings):
    with pytest.raises(PolicyError):
        parse(registered_compressors()["int4"].Settings, settings, "int4")


@pytest.mark.parametrize("settings", [{"bits": 8}, {"algorithm": "k_quant", "symmetric": True},
                                      {"algorithm": "hqq", "accuracy_level": 4}])
def test_impossible_int4_combinations_are_refused_by_check(settings, kv_onnx, tmp_path):
    comp = registered_compressors()["int4"]
    parsed = parse(comp.Settings, settings, "int4")
    with pytest.raises(BadInputError):
        comp.check(parsed)
    with pytest.raises(BadInputError):
        comp.apply(kv_onnx, tmp_path / "out", parsed, StepContext())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("settings", [{"weight_type": "QInt4"}, {"op_types": ["Conv"]}, {"op_types": []}])
def test_bad_int8_settings_are_refused_by_parse(settings):
    with pytest.raises(PolicyError):
        parse(registered_compressors()["int8"].Settings, settings, "int8")


@pytest.mark.parametrize("content", [None, b"", b"  \n"])
def test_missing_or_empty_calibration_file_fails_first_naming_it(content, kv_onnx, tmp_path):
    corpus = tmp_path / "corpus.txt"
    if content is not None:
        corpus.write_bytes(content)
    comp = registered_compressors()["int8-static"]
    settings = parse(comp.Settings, {"calibration": str(corpus)}, "int8-static")
    with pytest.raises(DataError) as caught:
        comp.apply(kv_onnx, tmp_path / "out", settings, StepContext())
    assert str(corpus) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()  # raised before any work


def test_user_calibration_text_is_used(kv_onnx, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The river ran past the mill and the children counted boats. " * 40, encoding="utf-8")
    result = _apply("int8-static", kv_onnx, tmp_path / "out", {"calibration": str(corpus), "n_samples": 2,
                                                                  "seq_len": 16, "quant_format": "QOperator"})
    assert result.measured["calibration"]["source"] == str(corpus)
    assert "QLinearMatMul" in _ops(result.path)


def test_a_corpus_shorter_than_a_window_is_refused(kv_onnx, tmp_path):
    corpus = tmp_path / "short.txt"
    corpus.write_text("too short", encoding="utf-8")
    with pytest.raises(DataError, match="fewer than seq_len"):
        _apply("int8-static", kv_onnx, tmp_path / "out", {"calibration": str(corpus), "seq_len": 64})


@pytest.mark.parametrize("algorithm", ["default", "k_quant"])
def test_other_int4_algorithms_on_the_plain_export(algorithm, tiny_llama_onnx, tmp_path):
    from edgeval.runtimes import load_runtime

    result = _apply("int4", tiny_llama_onnx, tmp_path / "out", {"algorithm": algorithm, "block_size": 16,
                                                                   "symmetric": algorithm == "default"})
    assert "MatMulNBits" in _ops(result.path) and _weight_matmuls(result.path) == []
    assert np.isfinite(load_runtime(result.path).next_token_logits(PROMPTS)).all()


@pytest.mark.parametrize("name", ["int8", "int4"])
def test_external_data_in_external_data_out(name, kv_onnx, tmp_path):
    from edgeval.runtimes import load_runtime

    source_dir = tmp_path / "src"
    shutil.copytree(kv_onnx.parent, source_dir)
    data = name_external_data(source_dir / kv_onnx.name, force=True)
    before = sorted(p.name for p in source_dir.iterdir())
    result = _apply(name, source_dir / kv_onnx.name, tmp_path / "out")
    files = sorted(p.name for p in result.path.parent.glob("*.data"))
    assert len(files) == 1 and files[0].startswith("weights-") and files[0] != data.name
    assert sorted(p.name for p in source_dir.iterdir()) == before  # nothing written beside the source
    assert np.isfinite(load_runtime(result.path).next_token_logits(PROMPTS)).all()


def test_int4_counts_packed_weights_apart_from_scales_and_zero_points(quantized):
    result = quantized["int4"]
    model = onnx.load(str(result.path), load_external_data=False)
    packed = {n.input[1] for n in model.graph.node if n.op_type == "MatMulNBits"}
    assert result.measured["quantized_weights"] == len(packed)
    assert result.measured["scale_and_zero_point_bytes"] > 0
    assert all(not kept["name"].endswith(("_scale", "_zero_points")) for kept in result.measured["float_weights_kept"])


def test_int8_quantizes_the_embedding_unless_told_matmul_only(kv_onnx, quantized, tmp_path):
    from edgeval.runtimes import load_runtime

    both = quantized["int8"]
    plain = _apply("int8", kv_onnx, tmp_path / "matmul", {"op_types": ["MatMul"]})
    assert plain.measured["float_weight_bytes"] > 0 and both.measured["float_weight_bytes"] == 0
    assert any("Gather" in line for line in plain.warnings) and not both.warnings
    assert both.measured["output_bytes"] < plain.measured["output_bytes"]
    assert np.isfinite(load_runtime(both.path).next_token_logits(PROMPTS)).all()


def test_static_int8_leaves_attention_matmuls_float_unless_asked(kv_onnx, quantized, tmp_path):
    default = quantized["int8-static"]
    assert default.measured["activation_matmuls_left_float"] == 4  # 2 layers x (QK^T, scores x V)
    both = _apply("int8-static", kv_onnx, tmp_path / "all", {**FAST["int8-static"], "activation_matmuls": True})
    assert both.measured["activation_matmuls_left_float"] == 0
    assert both.measured["ops_changed"]["QuantizeLinear"] > default.measured["ops_changed"]["QuantizeLinear"]


@pytest.mark.parametrize("name", ["int4", "int8-static"])
def test_progress_reaches_the_caller_and_ort_prints_nothing(name, kv_onnx, tmp_path, capfd):
    comp = registered_compressors()[name]
    lines: list[str] = []
    comp.apply(kv_onnx, tmp_path / "out", parse(comp.Settings, FAST.get(name, {}), name),
               StepContext(progress=lines.append))
    assert lines and all(line.startswith(name) for line in lines)
    assert capfd.readouterr().out == ""  # no progress bar of ORT's own on stdout


# -- scoring a batch-dependent graph ---------------------------------------------------------------------------
def test_dynamic_int8_is_scored_one_prompt_at_a_time(tiny_llama_onnx: Path, tmp_path: Path) -> None:
    """ORT's dynamic int8 picks one activation scale per call: the runtime says so and runs each prompt alone and
    in full, so a prompt's logits are the same whatever it is batched with (and equal to running it alone)."""
    import numpy as np

    from edgeval.converters.chain import compress
    from edgeval.runtimes import load_runtime

    plain = load_runtime(tiny_llama_onnx)
    assert plain.batch_invariant and plain.describe()["batch_invariant"] is True
    out = compress(tiny_llama_onnx, tmp_path / "q", [("int8", {})]).path
    runtime = load_runtime(out)
    assert runtime.batch_invariant is False and runtime.kv_seq_axes() is None
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [5, 6, 7, 900, 901, 902, 903, 904, 905]]
    alone = np.concatenate([runtime.next_token_logits([p]) for p in prompts])
    for batch in (prompts, prompts[::-1]):
        together = runtime.next_token_logits(batch)
        order = [prompts.index(p) for p in batch]
        np.testing.assert_array_equal(together, alone[order])
    np.testing.assert_array_equal(runtime.next_token_logits_many(prompts), alone)
    seq = runtime.sequence_logits(prompts)
    assert [s.shape[0] for s in seq] == [len(p) for p in prompts]
    np.testing.assert_array_equal(np.stack([s[-1] for s in seq]), alone)


@pytest.mark.parametrize("name, settings", [("int8", {"op_types": ["Gemm"]}), ("int8-static", {"op_types": ["Gemm"],
                                                                                                **FAST["int8-static"]})])
def test_a_quantizer_that_quantized_nothing_fails_closed(name, settings, kv_onnx, tmp_path):
    """op_types that match no node left a float32 copy (larger than its source) recorded as an int8 step."""
    from edgeval.errors import ModelError

    with pytest.raises(ModelError, match="quantized nothing"):
        _apply(name, kv_onnx, tmp_path / "out", settings)
