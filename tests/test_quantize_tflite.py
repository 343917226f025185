"""The TFLite quantizers (``tflite-fp16``, ``tflite-int8``): litert-torch export with its quantization recipes.

The float reference is the fp32 TFLite export of the same tiny Llama in the same bucket (batch 2, seq 32), run on
the same runtime, so that the differences measured are the quantization's alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeval.converters.compressor import StepContext
from edgeval.errors import ModelError, PolicyError
from edgeval.settings import parse

BUCKET = {"batch": 2, "seq_len": 32}
#: token-id prompts of several lengths (the tiny tokenizer's vocabulary is 1000 ids)
PROMPTS = [[5, 17, 230, 41], [900, 3, 3, 77, 12, 8, 301], [64] * 20, list(range(100, 131))]
DTYPE = {"tflite-fp16": "float16", "tflite-int8": "int8"}


def _compressor(name: str):
    from edgeval.plugins import registered_compressors

    return registered_compressors()[name]


@pytest.fixture(scope="module", params=["tflite-fp16", "tflite-int8"])
def quantized(request, tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``(method, StepResult)`` of one quantizer applied to the tiny Llama."""
    comp = _compressor(request.param)
    out_dir = tmp_path_factory.mktemp(request.param)
    lines: list[str] = []
    result = comp.apply(tiny_llama_dir, out_dir, parse(comp.Settings, BUCKET), StepContext(lines.append))
    assert lines and "full_" in lines[0]  # progress names litert-torch's recipe
    return request.param, result


def test_registered_as_quantizers():
    for name in DTYPE:
        comp = _compressor(name)
        assert (comp.kind, comp.accepts, comp.produces) == ("quantize", ("hf", "gguf"), "tflite")
        assert dict(parse(comp.Settings, {})) == {"batch": 1, "seq_len": 256}


@pytest.mark.parametrize("bad", [{"seq_len": 0}, {"batch": 0}, {"seq_len": "long"}, {"bits": 4}])
def test_bad_settings_refused_before_work(bad):
    with pytest.raises(PolicyError) as excinfo:
        parse(_compressor("tflite-int8").Settings, bad, "tflite-int8")
    assert next(iter(bad)) in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_no_weight_in_target_dtype_is_an_error(tmp_path):
    """Fail closed: a conversion that quantized nothing must not pass as quantized."""
    measured = {"weight_tensors": {"float32": 15}}
    with pytest.raises(ModelError, match="stored no int8 weight tensor"):
        _compressor("tflite-int8").check_stored(tmp_path / "model.tflite", measured)
    assert _compressor("tflite-fp16").warnings({"weight_tensors": {"float32": 3}, "float32_weight_share": 0.5})


@pytest.mark.tflite
def test_output_files_dtypes_and_size(quantized, tiny_llama_tflite):
    method, result = quantized
    assert result.path.name == "model.tflite" and result.path.is_file()
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in result.path.parent.iterdir()}
    weights = result.measured["weight_tensors"]
    # 2 blocks x 7 linears + the tied embedding/LM head; float32 left: the (1, 1, 8) rotary constant alone
    assert weights[DTYPE[method]] == 15 and weights.get("float32", 0) <= 1, weights
    assert result.measured["float32_weight_share"] < 0.01 and not result.warnings
    assert result.measured["bytes"] == result.path.stat().st_size < 0.65 * tiny_llama_tflite.stat().st_size
    assert {"litert-torch", "ai-edge-quantizer", "torch"} <= set(result.tools)


@pytest.mark.tflite
def test_runs_on_litert_close_to_float(quantized, tiny_llama_tflite):
    """The quantized file runs on the TFLite runtime (its own kernels) and predicts what the float file does.

    Bound, relative to the spread of the float logits: float16 weights round at 2^-11 (~0.05 %) and per-channel
    int8 at half a step of row max / 127 (~0.4 %), so 1 % (fp16) and 5 % (int8) of the spread leave room for the
    error to add up over two blocks and the head while still catching a wrong scale or a float path
    (measured on 2026-11-30: 0.0003 and 0.010 on a spread of 1.59). ``delta > 0``: the quantized kernels ran."""
    from edgeval.runtimes import load_runtime

    method, result = quantized
    float_rt, quant_rt = load_runtime(tiny_llama_tflite, threads=1), load_runtime(result.path, threads=1)
    reference, logits = float_rt.next_token_logits(PROMPTS), quant_rt.next_token_logits(PROMPTS)
    assert quant_rt.describe()["bucket"] == {"batch": 2, "seq_len": 32}
    assert np.isfinite(logits).all() and logits.shape == reference.shape
    delta = float(np.abs(logits - reference).max())
    print(f"{method}: max |dlogit| {delta:.4g} (logit spread {float(np.ptp(reference)):.3g})")
    assert (logits.argmax(-1) == reference.argmax(-1)).all()
    assert 0 < delta < (0.01 if method == "tflite-fp16" else 0.05) * float(np.ptp(reference))


@pytest.mark.tflite
def test_gguf_source(tiny_llama_gguf, tmp_path):
    """A ``.gguf`` input (dequantized to float on load) is exported and quantized too, its tokenizer converted."""
    from edgeval.runtimes import load_runtime

    comp = _compressor("tflite-int8")
    result = comp.apply(tiny_llama_gguf, tmp_path, parse(comp.Settings, {"seq_len": 16}), StepContext())
    assert result.measured["weight_tensors"]["int8"] >= 14 and (tmp_path / "tokenizer.json").is_file()
    runtime = load_runtime(result.path, threads=1)
    assert runtime.describe()["bucket"] == {"batch": 1, "seq_len": 16}
    assert np.isfinite(runtime.next_token_logits(PROMPTS[:2])).all()


@pytest.mark.parametrize("name", ["tflite-fp16", "tflite-int8"])
def test_the_chain_planner_takes_the_tflite_quantizers(name):
    """The planner calls a compressor's check(settings): the TFLite quantizers' own post-conversion check had that
    name with another signature, so every `edgeval compress --method tflite-*` was an internal error (exit 4)."""
    from edgeval.converters.chain import plan

    steps = plan("hf", [(name, {"seq_len": 64})])
    assert [(s.method, s.output_format, s.settings.seq_len) for s in steps] == [(name, "tflite", 64)]
