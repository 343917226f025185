"""Exporters write one artifact file with the (input_ids, attention_mask) -> logits signature, tokenizer beside it.

Numerical agreement of the exports with torch is tested in test_runtimes.py; here: layout, files, sources, errors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeval.errors import ModelError, TokenizerError

TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}


def _onnx_signature(path: Path) -> dict:
    """{name: (elem type, [dim_param or dim_value])} of graph inputs and outputs, plus opset and external data."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    io = {v.name: (v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
          for v in [*model.graph.input, *model.graph.output]}
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {"io": io, "opset": opset, "external": external}


def _assert_onnx_layout(path: Path, opset: int) -> None:
    from onnx import TensorProto

    sig = _onnx_signature(path)
    assert sig["opset"] == opset and sig["external"] == []
    assert list(sig["io"]) == ["input_ids", "attention_mask", "logits"]
    ids_type, ids_dims = sig["io"]["input_ids"]
    assert ids_type == TensorProto.INT64 and all(isinstance(d, str) for d in ids_dims), ids_dims  # dynamic B, T
    assert sig["io"]["logits"][0] == TensorProto.FLOAT and sig["io"]["logits"][1][2] == 1000
    assert {p.name for p in path.parent.iterdir()} == {path.name} | TOKENIZER_FILES  # one file, no .data


def test_export_onnx_legacy_layout(tiny_llama_onnx):
    _assert_onnx_layout(tiny_llama_onnx, opset=17)


@pytest.mark.slow
def test_export_onnx_dynamo_layout(tiny_llama_onnx_dynamo):
    _assert_onnx_layout(tiny_llama_onnx_dynamo, opset=18)


@pytest.mark.tflite
def test_export_tflite_signature(tiny_llama_tflite):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(tiny_llama_tflite)).get_signature_runner("serving_default")
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    assert list(inputs) == ["args_0", "args_1"] and list(outputs) == ["output_0"]
    for details in inputs.values():
        assert details["dtype"] == np.int32 and list(details["shape_signature"]) == [2, 32]
    assert list(outputs["output_0"]["shape"]) == [2, 32, 1000]
    assert {p.name for p in tiny_llama_tflite.parent.iterdir()} == {tiny_llama_tflite.name} | TOKENIZER_FILES


def test_export_from_loaded_model(tiny_llama_dir, tmp_path):
    """A model object remembers where it came from (name_or_path): its tokenizer files are found there."""
    from edgeval.converters._torch_model import load_torch_model
    from edgeval.converters.export import export_onnx

    model, source = load_torch_model(tiny_llama_dir)
    assert source == tiny_llama_dir
    out = export_onnx(model, tmp_path / "sub" / "m.onnx", legacy=True)
    assert out == tmp_path / "sub" / "m.onnx" and TOKENIZER_FILES <= {p.name for p in out.parent.iterdir()}


def test_loaded_model_is_switched_to_eager(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from edgeval.converters._torch_model import load_torch_model

    model, _ = load_torch_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="sdpa"))
    assert model.config._attn_implementation == "eager" and not model.training


def test_export_model_object_without_tokenizer(tiny_llama_dir, tmp_path):
    from tinymodels import tiny_model

    from edgeval.converters.export import export_onnx

    with pytest.raises(TokenizerError, match="tokenizer=PATH"):
        export_onnx(tiny_model("llama"), tmp_path / "a" / "model.onnx", legacy=True)
    out = export_onnx(tiny_model("llama"), tmp_path / "b" / "model.onnx", legacy=True, tokenizer=tiny_llama_dir)
    assert (out.parent / "tokenizer.json").read_bytes() == (tiny_llama_dir / "tokenizer.json").read_bytes()


def test_export_from_gguf_writes_its_tokenizer(tiny_llama_gguf, tmp_path):
    """GGUF files carry their tokenizer inside: the exporter converts it to tokenizer.json (+ chat template)."""
    from edgeval.converters.export import export_onnx
    from edgeval.runtimes import load_runtime

    out = export_onnx(tiny_llama_gguf, tmp_path / "model.onnx", legacy=True)
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= {p.name for p in tmp_path.iterdir()}
    from edgeval.runtimes import RuntimeOptions

    onnx_rt, gguf_rt = load_runtime(out), load_runtime(tiny_llama_gguf, options=RuntimeOptions(runtime="torch"))
    text = "Context: two friends met at the park."
    assert onnx_rt.tokenizer.encode(text) == gguf_rt.tokenizer.encode(text)
    diff = np.abs(onnx_rt.next_token_logits([onnx_rt.tokenizer.encode(text)])
                  - gguf_rt.next_token_logits([gguf_rt.tokenizer.encode(text)])).max()
    assert diff < 1e-4


def test_export_missing_model(tmp_path):
    from edgeval.converters.export import export_onnx

    missing = tmp_path / "nowhere"
    with pytest.raises(ModelError) as excinfo:
        export_onnx(missing, tmp_path / "model.onnx", legacy=True)
    assert "nowhere" in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_cli_export_kv_cache_checks_parity_of_the_cached_path(tiny_llama_dir, tmp_path):
    """`edgeval export --to onnx --kv-cache`: the with-past layout, parity (cached path included) written beside."""
    import json

    from edgeval.cli import main
    from edgeval.runtimes import load_runtime

    out = tmp_path / "kv" / "model.onnx"
    with pytest.raises(SystemExit) as info:
        main(["export", str(tiny_llama_dir), "--to", "onnx", "--out", str(out), "--legacy", "--kv-cache"])
    assert info.value.code == 0
    assert load_runtime(out).describe()["kv_cache"]
    parity = json.loads(out.with_name("model.onnx.parity.json").read_text())
    assert {c["id"]: c["status"] for c in parity["checks"]}["parity.cached_logit_diff"] == "pass"
    assert parity["results"]["mode"] == "exact", parity["results"]["mode_reason"]  # an fp32 export: exact bounds


def test_cli_export_onnx_options_refused_for_tflite(tiny_llama_dir, tmp_path, capsys):
    from edgeval.cli import main

    with pytest.raises(SystemExit) as info:
        main(["export", str(tiny_llama_dir), "--to", "tflite", "--out", str(tmp_path / "m.tflite"), "--kv-cache"])
    assert info.value.code == 2 and "ONNX options" in capsys.readouterr().err


def test_cli_export_failing_parity_leaves_nothing_at_out(tiny_llama_dir, tmp_path, capsys, monkeypatch):
    """A model that fails parity is not written: --out stays absent, only OUT.parity.json says why. --threads
    reaches the parity runtimes."""
    import json

    from edgeval.cli import main
    from edgeval.report import Check

    seen = {}

    def failing(candidate, reference, settings):
        seen["threads"] = (candidate.threads, reference.threads)
        return [Check("parity.max_abs_logit_diff", "parity", "fail", "max_abs_logit_diff", 9.0, None, 0.01,
                      "max_abs_logit_diff = 9 > 0.01")], {  # what .parity.json's schema requires
            "n_prompts": 48, "max_abs_logit_diff": 9.0, "top1_agreement": 0.5, "letter_agreement": 0.5,
            "option_agreement": 0.5, "tokenizer_agreement": 1.0, "candidate": {}, "reference": {}}

    monkeypatch.setattr("edgeval.validators.parity.parity_report", failing)
    out = tmp_path / "exp" / "model.onnx"
    with pytest.raises(SystemExit) as info:
        main(["export", str(tiny_llama_dir), "--to", "onnx", "--out", str(out), "--legacy", "--threads", "1"])
    err = capsys.readouterr().err
    assert info.value.code == 3 and "was not written" in err and "Traceback" not in err
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx.parity.json"]  # no model, no temp folder
    assert json.loads((out.parent / "model.onnx.parity.json").read_text())["checks"][0]["status"] == "fail"
    assert seen["threads"][0] == 1


def test_external_data_is_named_by_content_not_by_output_name(tiny_llama_dir, tmp_path, capsys):
    """Two exports of the same weights under different names store the same data file under the same name; the
    export's size line counts it."""
    import onnx

    from edgeval.converters.export import artifact_bytes, export_onnx
    from edgeval.runtimes import load_runtime

    first = export_onnx(tiny_llama_dir, tmp_path / "a" / "first.onnx", legacy=True, external_data=True)
    second = export_onnx(tiny_llama_dir, tmp_path / "b" / "renamed.onnx", legacy=True, external_data=True)
    data_a = [p for p in first.parent.iterdir() if p.suffix == ".data"]
    data_b = [p for p in second.parent.iterdir() if p.suffix == ".data"]
    assert len(data_a) == len(data_b) == 1 and data_a[0].name == data_b[0].name
    assert data_a[0].name.startswith("weights-") and data_a[0].read_bytes() == data_b[0].read_bytes()
    locations = {e.value for t in onnx.load(str(first), load_external_data=False).graph.initializer
                 for e in t.external_data if e.key == "location"}
    assert locations == {data_a[0].name}
    assert artifact_bytes(first) == first.stat().st_size + data_a[0].stat().st_size
    runtime = load_runtime(first)  # and it still runs
    assert runtime.next_token_logits([[1, 2, 3]]).shape == (1, 1000)
