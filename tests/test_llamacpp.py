"""The llama.cpp runtime on tiny GGUFs: loading, logits against the torch runtime on the same file, the KV-cache
prefix path against full runs, the GGUF's own tokenizer, bad input, options, and `edgeval check` end to end."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeval.errors import DeviceError, MissingExtraError, ModelError, UsageError
from edgeval.runtimes import Runtime, RuntimeOptions, load_runtime, pad_left, runtime_class

needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python is not installed (pip install 'edgeval[gguf]')")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                 reason="the torch runtime (transformers) is not installed")
TEXTS = ["Who was the doctor?", "Context: two friends met at the park; one was old and one was young.",
         "Answer with A, B or C."]
ONE = RuntimeOptions(threads=1)
TORCH = RuntimeOptions(runtime="torch", threads=1)


@pytest.fixture(scope="module")
def tiny_q8_gguf(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with its 2-D weights in Q8_0 blocks (gguf-py quantizes them the llama.cpp way)."""
    pytest.importorskip("gguf")
    from tiny_gguf import write_tiny_llama_gguf

    return write_tiny_llama_gguf(tiny_llama_dir, tmp_path_factory.mktemp("q8") / "tiny.q8_0.gguf", qtype="Q8_0")


def ids_of(runtime, texts=TEXTS) -> list[list[int]]:
    return [runtime.tokenizer.encode(t) for t in texts]


def test_gguf_defaults_to_llama_cpp_and_torch_stays_available():
    from edgeval.runtimes.llamacpp import LlamaCppRuntime
    from edgeval.runtimes.torch import TorchRuntime

    assert runtime_class("gguf") is LlamaCppRuntime
    assert runtime_class("gguf", "torch") is TorchRuntime


def test_missing_llama_cpp_names_the_extra_and_the_torch_runtime(monkeypatch):
    from edgeval.runtimes.llamacpp import llama_cpp_module

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp -> ImportError
    with pytest.raises(MissingExtraError) as info:
        llama_cpp_module()
    message = str(info.value)
    assert "edgeval[gguf]" in message and "--runtime torch" in message and "\n" not in message


@needs_llama
@needs_torch
@pytest.mark.parametrize("kv_type, tol", [("f32", 1e-4), ("f16", 2e-3)])
def test_f32_gguf_matches_the_torch_runtime(tiny_llama_gguf, kv_type, tol):
    """F32 weights: llama.cpp and transformers agree to float rounding (the f16 KV cache, llama.cpp's default,
    adds its own rounding)."""
    llama = load_runtime(tiny_llama_gguf, options=ONE.with_(session={"kv_type": kv_type}))
    torch_rt = load_runtime(tiny_llama_gguf, options=TORCH)
    seqs = ids_of(llama)
    assert seqs == ids_of(torch_rt)
    for ours, theirs in zip(llama.sequence_logits(seqs), torch_rt.sequence_logits(seqs), strict=True):
        assert ours.dtype == np.float32 and ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < tol
    assert np.abs(llama.next_token_logits(seqs) - torch_rt.next_token_logits(seqs)).max() < tol
    facts = llama.describe()
    assert isinstance(llama, Runtime) and llama.batch_invariant and llama.kv_seq_axes() is not None
    assert facts["runtime"] == "llama.cpp" and facts["file_type"] == "all F32" and not facts["quantized"]
    assert facts["threads"] == 1 and facts["kv_type"] == kv_type and facts["kv_cache"]


@needs_llama
@needs_torch
def test_q8_0_gguf_runs_quantized_kernels(tiny_q8_gguf):
    """Q8_0 weights stay Q8_0 in llama.cpp (activations quantized too): close to the dequantized torch run, not
    equal to it."""
    llama, torch_rt = load_runtime(tiny_q8_gguf, options=ONE), load_runtime(tiny_q8_gguf, options=TORCH)
    seqs = ids_of(llama)
    ours, theirs = llama.next_token_logits(seqs), torch_rt.next_token_logits(seqs)
    diff = float(np.abs(ours - theirs).max())
    print(f"Q8_0 llama.cpp vs torch (dequantized): max|dlogit| = {diff:.3g}")
    assert 0 < diff < 0.05 and (ours.argmax(1) == theirs.argmax(1)).all()
    facts = llama.describe()
    assert facts["file_type"] == "Q8_0" and facts["quantized"]


@needs_llama
def test_prefix_sharing_equals_full_runs(tiny_q8_gguf, tiny_llama_gguf):
    """Every prefix of three prompts: the KV-cache path runs each shared prefix once and gives the logits of a
    full run of each prompt."""
    for gguf in (tiny_q8_gguf, tiny_llama_gguf):
        llama = load_runtime(gguf, options=ONE)
        seqs = [s[:k] for s in ids_of(llama) for k in range(1, len(s) + 1)]
        done: list[int] = []
        shared = llama.next_token_logits_many(seqs[::-1], window=7, progress=done.append)
        full = np.stack([llama.sequence_logits([s])[0][-1] for s in seqs[::-1]])
        assert np.abs(shared - full).max() < 1e-4
        assert sum(done) == len(seqs)
        assert llama.tokens_requested == sum(map(len, seqs))
        assert llama.tokens_computed == len(seqs)  # one new token per prompt: each extends the previous one


@needs_llama
def test_padded_forward_equals_each_row_alone(tiny_llama_gguf):
    llama = load_runtime(tiny_llama_gguf, options=ONE)
    seqs = ids_of(llama)
    ids, mask = pad_left(seqs, llama.tokenizer.pad_id)
    batch = llama.forward(ids, mask)
    for row, seq in enumerate(seqs):
        alone = llama.sequence_logits([seq])[0]
        assert np.abs(batch[row, ids.shape[1] - len(seq):] - alone).max() < 1e-5
        assert not batch[row, :ids.shape[1] - len(seq)].any()  # padding positions stay zero


@needs_llama
@needs_torch
def test_the_gguf_tokenizer_gives_the_letters_and_the_chat_format(tiny_llama_gguf):
    from edgeval.logprobs import letter_token_ids

    llama, torch_rt = load_runtime(tiny_llama_gguf, options=ONE), load_runtime(tiny_llama_gguf, options=TORCH)
    ours, theirs = llama.tokenizer, torch_rt.tokenizer
    assert letter_token_ids(ours) == letter_token_ids(theirs)
    messages = [{"role": "user", "content": "Context: x\nQuestion: who?\nA. a\nB. b\nC. c"}]
    chat = ours.apply_chat_template(messages)
    assert chat == theirs.apply_chat_template(messages) and chat.endswith("<|im_start|>assistant\n")
    assert ours.encode_prompt(chat) == theirs.encode_prompt(chat)
    assert ours.special_affixes() == theirs.special_affixes() and ours.pad_id == theirs.pad_id
    assert ours.decode(ours.encode("Who was the doctor?")) == "Who was the doctor?"
    assert ours.token_to_id("<|im_end|>") == ours.eos_id
    assert ours.fingerprint()["sha256"] and len(ours.fingerprint()["sha256"]) == 64


def _unknown_architecture(source: Path, out: Path) -> Path:
    """``source`` with general.architecture renamed (same length), so llama.cpp does not know it."""
    data = source.read_bytes()
    key = b"general.architecture"
    at = data.index(key) + len(key) + 4 + 8  # value type (uint32) and string length (uint64)
    assert data[at:at + 5] == b"llama"
    out.write_bytes(data[:at] + b"zzzzz" + data[at + 5:])
    return out


@needs_llama
@pytest.mark.parametrize("damage, words", [("truncated", "not within the file bounds"),
                                           ("header", "header"), ("architecture", "zzzzz")])
def test_bad_gguf_is_one_line_model_error(tiny_llama_gguf, tmp_path, damage, words):
    bad = tmp_path / f"{damage}.gguf"
    if damage == "truncated":
        bad.write_bytes(tiny_llama_gguf.read_bytes()[:100_000])
    elif damage == "header":
        bad.write_bytes(b"GGUF\x03\x00\x00\x00")
    else:
        _unknown_architecture(tiny_llama_gguf, bad)
    with pytest.raises(ModelError) as info:
        load_runtime(bad, options=ONE)
    message = str(info.value)
    assert "\n" not in message and str(bad) in message and words in message, message


@needs_llama
def test_options_it_cannot_honour_are_refused(tiny_llama_gguf, monkeypatch):
    import llama_cpp

    with pytest.raises(UsageError, match="--dtype float16"):
        load_runtime(tiny_llama_gguf, options=RuntimeOptions(dtype="float16"))
    with pytest.raises(UsageError, match="no session option"):
        load_runtime(tiny_llama_gguf, options=RuntimeOptions(session={"intra_op": "2"}))
    with pytest.raises(UsageError, match="n_ctx"):
        load_runtime(tiny_llama_gguf, options=RuntimeOptions(session={"n_ctx": "lots"}))
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)
    with pytest.raises(DeviceError, match="no GPU offload"):
        load_runtime(tiny_llama_gguf, options=RuntimeOptions(device="cuda"))


@needs_llama
def test_gpu_offload_asks_for_every_layer(tiny_llama_gguf, monkeypatch):
    """A build with GPU offload gets n_gpu_layers=-1 on --device cuda:N (a CPU build ignores the layers)."""
    import llama_cpp

    from edgeval.runtimes.llamacpp import gpu_layers

    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: True)
    assert gpu_layers(llama_cpp, "cuda:1") == (-1, 1) and gpu_layers(llama_cpp, None) == (0, 0)
    with pytest.raises(UsageError):
        gpu_layers(llama_cpp, "tpu")


@needs_llama
def test_context_and_too_long_sequences(tiny_llama_gguf):
    from edgeval.errors import MeasurementError

    llama = load_runtime(tiny_llama_gguf, options=ONE.with_(session={"n_ctx": "64"}))
    assert llama.max_seq_len == 64 and llama.describe()["max_seq_len"] == 64
    with pytest.raises(MeasurementError, match="exceeds llama.cpp's context"):
        llama.next_token_logits([[5] * 65])
    assert llama.next_token_logits([[5] * 64]).shape == (1, 1000)  # usable after the refusal


@needs_llama
def test_quantized_gguf_is_quantization_evidence(tiny_q8_gguf, tiny_llama_gguf):
    from edgeval.artifacts import load_artifact
    from edgeval.validators.quantized import quantization_evidence

    assert quantization_evidence(load_artifact(tiny_q8_gguf)) == ["15 Q8_0 weight tensors"]
    assert quantization_evidence(load_artifact(tiny_llama_gguf)) == []


def _check(tmp_path: Path, *args) -> tuple[int, dict]:
    from bbq_fixture import FIXTURE_DIR

    from edgeval.cli import main

    policy = tmp_path / "policy.yaml"
    policy.write_text("bbq: {limit: 32, bootstrap: 200}\nperplexity: {window: 64, stride: 32, max_tokens: 200}\n")
    report = tmp_path / "r.json"
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in (*args, "--threads", 1, "--policy", policy, "--bbq-data", FIXTURE_DIR,
                               "--report", report, "-q")])
    return int(info.value.code), json.loads(report.read_text())


@needs_llama
def test_check_scores_a_quantized_gguf_on_llama_cpp(tiny_q8_gguf, tiny_llama_gguf, tmp_path):
    """`edgeval check q8.gguf --baseline f32.gguf`: BBQ, perplexity and latency, both on llama.cpp."""
    code, doc = _check(tmp_path, "check", tiny_q8_gguf, "--baseline", tiny_llama_gguf,
                       "--validators", "bbq,perplexity,latency")
    assert doc["verdict"] in ("pass", "blocked", "inconclusive") and code in (0, 1, 5), doc["checks"]
    assert {r["runtime"] for r in doc["run"]["runtimes"].values()} == {"llama.cpp"}
    compute = doc["results"]["bbq"]["compute"]["candidate"]
    assert compute["runtime"] == "llama.cpp" and compute["kv_cache"]
    assert 0 < compute["tokens_run"] < compute["prompt_tokens"]  # the three orders of an item share a prefix
    ids = {c["id"] for c in doc["checks"]}
    assert {"bbq.delta_srs", "perplexity.ratio_to_baseline", "latency.ratio_to_baseline"} <= ids
    assert doc["results"]["perplexity"]["candidate"]["perplexity"] > 1


@needs_llama
@needs_torch
@pytest.mark.slow
def test_parity_of_llama_cpp_with_torch_on_one_gguf(tiny_q8_gguf, tmp_path):
    """The same Q8_0 GGUF on llama.cpp (candidate) and torch (baseline): lossy bounds chosen on the GGUF's own
    evidence, the agreement reported, tokenizers equal."""
    code, doc = _check(tmp_path, "check", tiny_q8_gguf, "--baseline", tiny_q8_gguf, "--baseline-runtime", "torch",
                       "--validators", "parity")
    parity = doc["results"]["parity"]
    assert parity["mode"] == "lossy" and parity["tokenizer_agreement"] == 1.0
    assert parity["top1_agreement"] == 1.0 and parity["mean_kl"] < 1e-3
    assert parity["candidate"]["runtime"] == "llama.cpp" and parity["reference"]["runtime"] == "torch"
    assert code == 0, doc["checks"]
