"""ONNX Runtime GenAI bundles: detected, loaded, scored with the bundle's own graph (GroupQueryAttention,
MatMulNBits) equal to torch on the same tiny Llama, the letter path equal to full prompts, bad bundles refused in
one line, and ``edgeval check BUNDLE --baseline HF_DIR`` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime_genai")
pytest.importorskip("onnxruntime")

from genai_fixture import build_bundle, copy_bundle  # noqa: E402

from edgeval.artifacts import load_artifact  # noqa: E402
from edgeval.errors import ModelError  # noqa: E402


@pytest.fixture(scope="session")
def genai_fp32(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama as an fp32 CPU bundle by onnxruntime-genai's model builder (GroupQueryAttention)."""
    return build_bundle(tiny_llama_dir, tmp_path_factory.mktemp("genai") / "fp32", "fp32")


@pytest.fixture(scope="session")
def genai_int4(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model as an int4 CPU bundle (MatMulNBits, block 32, accuracy level 4)."""
    return build_bundle(tiny_llama_dir, tmp_path_factory.mktemp("genai") / "int4", "int4")


def open_bundle(path: Path):
    from edgeval.runtimes.genai import GenAIRuntime

    return GenAIRuntime(load_artifact(path))


def ops_of(bundle: Path) -> set[str]:
    import onnx

    config = json.loads((bundle / "genai_config.json").read_text())
    graph = onnx.load(str(bundle / config["model"]["decoder"]["filename"]), load_external_data=False).graph
    return {node.op_type for node in graph.node}


def prompts(seed: int = 0) -> list[list[int]]:
    """Prompts of several lengths, three of which share a prefix (the tree shares it; full runs do not)."""
    rng = np.random.default_rng(seed)
    stem = [int(t) for t in rng.integers(5, 1000, 11)]
    loose = [[int(t) for t in rng.integers(5, 1000, n)] for n in (3, 17, 6)]
    tails = [[int(t) for t in rng.integers(5, 1000, n)] for n in (4, 7, 1)]
    return [*loose, stem, *[stem + tail for tail in tails], stem[:5]]


def torch_logits(hf_dir: Path, sequences: list[list[int]]) -> list[np.ndarray]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        return [model(torch.tensor([seq])).logits[0].numpy() for seq in sequences]


def test_bundle_is_detected_and_resolves_to_this_runtime(genai_fp32):
    from edgeval.runtimes.registry import resolve

    artifact = load_artifact(genai_fp32)
    assert artifact.format == "genai"
    assert {p.name for p in artifact.files} >= {"genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"}
    assert resolve("genai").name == "ort-genai"
    assert {"GroupQueryAttention"} <= ops_of(genai_fp32)


def test_fp32_bundle_equals_torch(genai_fp32, tiny_llama_dir):
    runtime = open_bundle(genai_fp32)
    sequences = prompts()
    got = runtime.sequence_logits(sequences)  # one left-padded batch, run right-padded by the runtime
    for ours, theirs in zip(got, torch_logits(tiny_llama_dir, sequences), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    assert runtime.describe()["runtime"] == "ort-genai" and runtime.max_seq_len == 512


def test_int4_bundle_is_close_to_torch(genai_int4, tiny_llama_dir):
    """int4 weights: the logits move (0.12 at most on this model, measured), the next-token choice mostly not."""
    assert "MatMulNBits" in ops_of(genai_int4)
    sequences = prompts(1)
    got = open_bundle(genai_int4).sequence_logits(sequences)
    ref = torch_logits(tiny_llama_dir, sequences)
    worst = max(float(np.abs(a - b).max()) for a, b in zip(got, ref, strict=True))
    agree = np.mean(np.concatenate([a.argmax(-1) == b.argmax(-1) for a, b in zip(got, ref, strict=True)]))
    assert 1e-4 < worst < 0.5, worst       # really quantized, and still the same model
    assert agree >= 0.8, agree


@pytest.mark.parametrize("bundle", ["genai_fp32", "genai_int4"])
def test_letter_path_equals_each_prompt_in_full(bundle, request):
    runtime = open_bundle(request.getfixturevalue(bundle))
    sequences = prompts(2)
    alone = np.stack([runtime.next_token_logits([seq])[0] for seq in sequences])
    many = runtime.next_token_logits_many(sequences, max_rows=4)
    np.testing.assert_allclose(many, alone, atol=1e-5, rtol=0)
    assert runtime.kv_seq_axes() is not None and runtime.tokens_computed < runtime.tokens_requested


@pytest.mark.parametrize("bundle", ["genai_fp32", "genai_int4"])
def test_equals_onnxruntime_genai_itself(bundle, request):
    """The logits onnxruntime-genai's own Generator computes for a prompt are ours, to the bit: the graph is fed as
    the library feeds it."""
    import onnxruntime_genai as og

    path = request.getfixturevalue(bundle)
    model, runtime = og.Model(str(path)), open_bundle(path)
    sequences = prompts(3)
    for seq in sequences:
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=64)
        generator = og.Generator(model, params)
        generator.append_tokens(np.array([seq], dtype=np.int32))
        theirs = np.asarray(generator.get_output("logits"))[0]
        np.testing.assert_allclose(runtime.sequence_logits([seq])[0], theirs, atol=1e-6, rtol=0)
    np.testing.assert_allclose(runtime.next_token_logits_many(sequences)[-1], theirs[-1], atol=1e-5, rtol=0)


def test_what_group_query_attention_supports(genai_fp32):
    """The limits docs/genai.md states, measured on the raw graph: left padding gives other logits; a batch with
    a past and several new tokens is refused. (If ONNX Runtime lifts them, this test says the doc is stale.)"""
    import onnxruntime as ort

    session = ort.InferenceSession(str(genai_fp32 / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [f"past_key_values.{i}.{k}" for i in range(2) for k in ("key", "value")]
    empty = {name: np.zeros((2, 2, 0, 16), np.float32) for name in names}
    ids = np.array([[7, 8, 9, 10], [3, 3, 11, 12]])
    left = np.array([[1, 1, 1, 1], [0, 0, 1, 1]])
    (padded,) = session.run(["logits"], {"input_ids": ids, "attention_mask": left, **empty})
    (alone,) = session.run(["logits"], {"input_ids": ids[1:, 2:], "attention_mask": left[1:, 2:],
                                        **{k: v[:1] for k, v in empty.items()}})
    assert np.abs(padded[1, 2:] - alone[0]).max() > 1e-2
    past = {k: np.zeros((2, 2, 3, 16), np.float32) for k in empty}
    with pytest.raises(Exception, match="batch_size must be 1"):
        session.run(["logits"], {"input_ids": ids[:, :2], "attention_mask": np.ones((2, 5), np.int64), **past})


def _bad(bundle: Path, tmp_path: Path, **changes) -> Path:
    return copy_bundle(bundle, tmp_path / "bad", **changes)


@pytest.mark.parametrize("change, message", [
    ({"filename": "nope.onnx"}, "model.decoder.filename 'nope.onnx' is not a file in the bundle"),
    ({"filename": "../model.onnx"}, "is not a file in the bundle"),
    ({"num_hidden_layers": "two"}, "has no valid 'model.decoder.num_hidden_layers'"),
    ({"inputs": {"input_ids": "input_ids"}}, "has no valid 'model.decoder.inputs.attention_mask'"),
    ({"num_hidden_layers": 10**9}, "num_hidden_layers is 1000000000: expected 1..4096"),  # not 4e9 names in memory
    ({"num_hidden_layers": 0}, "num_hidden_layers is 0"),
    ({"num_key_value_heads": -2}, "both must be positive"),
    ({"head_size": None, "hidden_size": 64, "num_attention_heads": 0}, "both must be positive"),
])
def test_bad_config_is_one_line_model_error(genai_fp32, tmp_path, change, message):
    with pytest.raises(ModelError) as info:
        open_bundle(_bad(genai_fp32, tmp_path, **change))
    assert message in str(info.value) and "genai_config.json" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("key, value", [("context_length", 0), ("context_length", -5), ("vocab_size", 0)])
def test_a_non_positive_context_or_vocabulary_is_refused(genai_fp32, tmp_path, key, value):
    """context_length 0 was read as "no limit" (a perplexity run passed) and -5 failed later without naming the
    file."""
    bad = _bad(genai_fp32, tmp_path)
    config = json.loads((bad / "genai_config.json").read_text())
    config["model"][key] = value
    (bad / "genai_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=f"genai_config.json: 'model.{key}' is {value}: it must be positive"):
        open_bundle(bad)


def test_malformed_json_is_exit_3_without_traceback(genai_fp32, tmp_path, capsys):
    from edgeval.cli import main

    bad = _bad(genai_fp32, tmp_path)
    (bad / "genai_config.json").write_text('{"model": {"decoder": ')
    with pytest.raises(ModelError, match="genai_config.json: not valid JSON"):
        open_bundle(bad)
    with pytest.raises(SystemExit) as info:
        main(["check", str(bad), "--validators", "perplexity", "--report", str(tmp_path / "r.json"), "-q"])
    err = capsys.readouterr().err
    assert info.value.code == 3 and "not valid JSON" in err and "Traceback" not in err


def _graph(path: Path, inputs: list[str], logits_type: int = 1, logits_rank: int = 3) -> None:
    """A stand-in decoder: ``inputs`` (ids and mask int64, pasts float) in; ``logits`` and a present per past out
    (Identity nodes), the logits of ``logits_type`` and ``logits_rank``."""
    import onnx
    from onnx import TensorProto, helper

    def info(name: str, elem: int, rank: int):
        return helper.make_tensor_value_info(name, elem, [f"d{i}" for i in range(rank)])

    pasts = [n for n in inputs if n.startswith("past")]
    ins = [info(n, TensorProto.FLOAT if n in pasts else TensorProto.INT64, 4 if n in pasts else 2) for n in inputs]
    nodes = [helper.make_node("Cast", ["input_ids"], ["logits"], to=logits_type)]
    nodes += [helper.make_node("Identity", [n], [n.replace("past_key_values", "present")]) for n in pasts]
    outs = [info("logits", logits_type, logits_rank)] + [info(n.replace("past_key_values", "present"),
                                                              TensorProto.FLOAT, 4) for n in pasts]
    model = helper.make_model(helper.make_graph(nodes, "g", ins, outs), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))


PASTS = [f"past_key_values.{i}.{k}" for i in range(2) for k in ("key", "value")]


@pytest.mark.parametrize("inputs, logits_type, message", [
    (["input_ids"], 1, "lacks input 'attention_mask'.*not a text-only causal LM decoder"),
    (["input_ids", "attention_mask", "inputs_embeds", *PASTS], 1, "has input 'inputs_embeds' edgeval cannot feed"),
    (["input_ids", "attention_mask", *PASTS], 7, r"output 'logits' is tensor\(int64\).*not \(batch, seq, vocab\)"),
])
def test_graph_that_is_not_a_causal_lm_is_refused(genai_fp32, tmp_path, inputs, logits_type, message):
    bad = _bad(genai_fp32, tmp_path)
    _graph(bad / "model.onnx", inputs, logits_type)
    with pytest.raises(ModelError, match=message) as info:
        open_bundle(bad)
    assert "model.onnx" in str(info.value) and "\n" not in str(info.value)


def test_check_bundle_against_hf_baseline_end_to_end(genai_int4, tiny_llama_dir, tmp_path):
    from test_bbq_e2e import run

    code, doc = run(tmp_path, "check", genai_int4, "--baseline", tiny_llama_dir, "--validators", "bbq,perplexity")
    assert code in (0, 1, 5), doc["checks"]
    assert doc["candidate"]["format"] == "genai"
    assert doc["run"]["runtimes"]["candidate"]["runtime"] == "ort-genai"
    assert doc["run"]["runtimes"]["baseline"]["runtime"] == "torch"
    assert doc["results"]["bbq"]["n_items"] == 32
    assert not [c for c in doc["checks"] if c["status"] == "error"], doc["checks"]


def test_parity_and_size_read_the_bundles_graph(genai_fp32, genai_int4):
    from edgeval.validators.quantized import quantization_evidence
    from edgeval.validators.tensorstats import tensor_stats

    assert quantization_evidence(load_artifact(genai_fp32)) == []
    assert any("MatMulNBits" in phrase for phrase in quantization_evidence(load_artifact(genai_int4)))
    stats = tensor_stats("genai", genai_int4)
    assert stats and any(s.storage == "int4" for s in stats)


def test_fp32_bundle_passes_exact_parity_against_its_hf_model(genai_fp32, tiny_llama_dir):
    from edgeval.runtimes.torch import TorchRuntime
    from edgeval.validators.parity import parity_report

    checks, results = parity_report(open_bundle(genai_fp32), TorchRuntime(load_artifact(tiny_llama_dir)))
    assert results["mode"] == "exact" and results["max_abs_logit_diff"] < 1e-3
    assert results["max_abs_cached_logit_diff"] < 1e-3
    assert all(c.status == "pass" for c in checks), [(c.id, c.status, c.message) for c in checks]


def test_no_one_token_step_after_a_past(genai_fp32):
    """GQA's one-token (decode) kernel differs from its prompt kernel in the last bits, which int8 activations
    amplify (0.3-0.85 logits on SmolLM2 int4, measured): a cached step never feeds one new token after a past, it
    runs the past's last token again with it."""
    runtime = open_bundle(genai_fp32)
    calls, run = [], runtime.session.run

    def spy(names, feeds):
        calls.append((feeds["input_ids"].shape[1], feeds["past_key_values.0.key"].shape[2]))
        return run(names, feeds)

    runtime.session.run = spy
    sequences = prompts(4)
    assert any(len(a) == len(b) + 1 and a[:-1] == b for a in sequences for b in sequences)  # a one-token node
    many = runtime.next_token_logits_many(sequences)
    assert [new for new, past in calls if past] and all(new >= 2 for new, past in calls if past), calls
    alone = np.stack([runtime.next_token_logits([seq])[0] for seq in sequences])
    np.testing.assert_array_equal(many, alone)
