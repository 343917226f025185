"""Runtimes agree with torch eager on left-padded batches, and reject bad artifacts with one-line errors."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeval.artifacts import Artifact
from edgeval.errors import MeasurementError, ModelError, TokenizerError
from edgeval.runtimes import load_runtime, pad_left, position_ids

TOL = 1e-4
#: rows of different lengths, so the batch is left-padded (the shortest by 17 tokens)
SEQUENCES = [list(range(5, 25)), [30, 31, 32], list(range(40, 52))]


# -- helpers -------------------------------------------------------------------------------------------------------
def torch_eager_logits(model_dir: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The reference: transformers eager attention, float32, on the same padded batch."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.inference_mode():
        return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                     position_ids=torch.from_numpy(position_ids(mask)), use_cache=False).logits.numpy()


def max_diff_on_tokens(logits: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """max |Δlogit| over real (unpadded) positions."""
    rows = mask.astype(bool)
    return float(np.abs(logits[rows] - reference[rows]).max())


def assert_matches_torch(model: Path, model_dir: Path, sequences=SEQUENCES, options=None) -> float:
    runtime = load_runtime(model, options=options)
    ids, mask = pad_left(sequences, runtime.tokenizer.pad_id)
    diff = max_diff_on_tokens(runtime.forward(ids, mask), torch_eager_logits(model_dir, ids, mask), mask)
    print(f"{runtime.name} {model.parent.name}/{model.name}: max|dlogit| = {diff:.3g}")
    assert diff < TOL
    return diff


def assert_padding_invariant(model: Path) -> None:
    """Each sequence's next-token logits alone == its row in the padded batch."""
    runtime = load_runtime(model)
    batch = runtime.next_token_logits(SEQUENCES)
    for row, seq in enumerate(SEQUENCES):
        alone = runtime.next_token_logits([seq])[0]
        assert np.abs(alone - batch[row]).max() < TOL, f"row {row} changes with padding"


def assert_one_line_error(excinfo: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message, message
    assert path.name in message, message
    for word in words:
        assert word in message, message


def bare_artifact(path: Path, fmt: str) -> Artifact:
    """An Artifact that skips load_artifact's own checks, to reach the runtime's error handling."""
    return Artifact(path=path, format=fmt, sha256="0" * 64, bytes=path.stat().st_size, files=(path,))


def copy_tokenizer(src_dir: Path, dst_dir: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (src_dir / name).is_file():
            shutil.copy(src_dir / name, dst_dir / name)


# -- agreement with torch eager ------------------------------------------------------------------------------------
def test_onnx_legacy_llama_matches_torch(tiny_llama_onnx, tiny_llama_dir):
    assert_matches_torch(tiny_llama_onnx, tiny_llama_dir)


def test_onnx_legacy_gpt2_matches_torch(tiny_gpt2_onnx, tiny_gpt2_dir):
    assert_matches_torch(tiny_gpt2_onnx, tiny_gpt2_dir)


@pytest.mark.slow
def test_onnx_dynamo_matches_torch(tiny_llama_onnx_dynamo, tiny_llama_dir):
    assert_matches_torch(tiny_llama_onnx_dynamo, tiny_llama_dir)
    assert_padding_invariant(tiny_llama_onnx_dynamo)


def test_onnx_optimum_layout_matches_torch(optimum_layout_onnx, tiny_gpt2_dir):
    assert_matches_torch(optimum_layout_onnx, tiny_gpt2_dir)
    runtime = load_runtime(optimum_layout_onnx)
    assert {"position_ids", "past_key_values.0.key"} <= set(runtime.describe()["inputs"])
    assert runtime.describe()["output"] == "logits"


def test_onnx_optimum_layout_needs_true_positions(optimum_layout_onnx, tiny_gpt2_dir):
    """The layout fixture can fail: naive positions 0..T-1 on a padded batch give different logits."""
    runtime = load_runtime(optimum_layout_onnx)
    ids, mask = pad_left(SEQUENCES, runtime.tokenizer.pad_id)
    feeds = runtime._feeds(ids, mask)
    feeds["position_ids"] = np.broadcast_to(np.arange(ids.shape[1]), ids.shape).astype(np.int64)
    naive = runtime.session.run(["logits"], feeds)[0]
    assert max_diff_on_tokens(naive, torch_eager_logits(tiny_gpt2_dir, ids, mask), mask) > 1e-3


def test_onnx_int32_input_ids(optimum_layout_onnx_int32, tiny_llama_dir):
    runtime = load_runtime(optimum_layout_onnx_int32)
    assert runtime.ids.dtype == np.int32
    assert_matches_torch(optimum_layout_onnx_int32, tiny_llama_dir)


def test_onnx_padding_invariance(tiny_llama_onnx, optimum_layout_onnx):
    assert_padding_invariant(tiny_llama_onnx)
    assert_padding_invariant(optimum_layout_onnx)


@pytest.mark.tflite
def test_tflite_matches_torch(tiny_llama_tflite, tiny_llama_dir):
    """3 rows on a batch-2 bucket: one full chunk, one chunk filled with a copy; 20 tokens padded to 32."""
    assert_matches_torch(tiny_llama_tflite, tiny_llama_dir)
    assert_padding_invariant(tiny_llama_tflite)


@pytest.mark.tflite
def test_tflite_bucket_and_too_long(tiny_llama_tflite):
    runtime = load_runtime(tiny_llama_tflite, threads=1)
    facts = runtime.describe()
    assert facts["bucket"] == {"batch": 2, "seq_len": 32} and facts["runtime"] == "tflite"
    assert facts["inputs"] == {"ids": "args_0", "mask": "args_1"} and facts["threads"] == 1
    with pytest.raises(MeasurementError) as excinfo:
        runtime.next_token_logits([list(range(1, 40))])
    assert_one_line_error(excinfo, tiny_llama_tflite, "39 tokens", "32")


@pytest.mark.tflite
def test_tflite_wider_batch_than_bucket(tiny_llama_tflite):
    """Extra leading padding columns beyond the bucket length are dropped and restored."""
    runtime = load_runtime(tiny_llama_tflite)
    ids, mask = pad_left(SEQUENCES, runtime.tokenizer.pad_id, length=40)
    wide = runtime.forward(ids, mask)
    assert wide.shape[:2] == (3, 40)
    narrow = runtime.forward(*pad_left(SEQUENCES, runtime.tokenizer.pad_id))
    assert np.abs(wide[:, -1] - narrow[:, -1]).max() < TOL


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gpt2_dir"])
def test_torch_runtime_matches_eager(fixture, request):
    model_dir = request.getfixturevalue(fixture)
    assert_matches_torch(model_dir, model_dir)
    runtime = load_runtime(model_dir, threads=1)
    ids, mask = pad_left(SEQUENCES, runtime.tokenizer.pad_id)
    last = runtime.next_token_logits(SEQUENCES)  # the logits_to_keep=1 path
    assert np.abs(last - torch_eager_logits(model_dir, ids, mask)[:, -1]).max() < TOL
    assert runtime.describe()["threads"] == 1 and runtime.describe()["runtime"] == "torch"


def test_torch_runtime_gguf_matches_eager(tiny_llama_gguf, tiny_llama_dir):
    """``--runtime torch`` on a GGUF (llama.cpp is the default for .gguf: tests/test_llamacpp.py)."""
    from edgeval.runtimes import RuntimeOptions

    torch_options = RuntimeOptions(runtime="torch")
    assert_matches_torch(tiny_llama_gguf, tiny_llama_dir, options=torch_options)
    from_gguf = load_runtime(tiny_llama_gguf, options=torch_options).tokenizer
    from_dir = load_runtime(tiny_llama_dir).tokenizer
    assert from_gguf.encode("Who was the doctor?") == from_dir.encode("Who was the doctor?")
    assert from_gguf.pad_id == from_dir.pad_id and from_gguf.chat_template


def test_tokenizer_override(tiny_llama_onnx, tiny_llama_dir, tmp_path):
    """--tokenizer PATH (a directory or a file in one) replaces the missing tokenizer beside the model."""
    shutil.copy(tiny_llama_onnx, tmp_path / "model.onnx")
    onnx_rt = load_runtime(tmp_path / "model.onnx", tokenizer=tiny_llama_dir / "tokenizer.json")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_llama_dir / name, tmp_path / name)
    torch_rt = load_runtime(tmp_path, tokenizer=tiny_llama_dir)
    text = "Answer with A, B or C."
    assert onnx_rt.tokenizer.encode(text) == torch_rt.tokenizer.encode(text)
    assert onnx_rt.tokenizer.pad_id == torch_rt.tokenizer.pad_id == 3


def test_onnx_describe(tiny_llama_onnx):
    facts = load_runtime(tiny_llama_onnx, threads=1).describe()
    assert facts["runtime"] == "onnxruntime" and facts["threads"] == 1
    assert facts["inputs"] == ["input_ids", "attention_mask"] and "CPUExecutionProvider" in facts["providers"]
    assert facts["version"]


# -- bad input -----------------------------------------------------------------------------------------------------
def test_truncated_onnx(tiny_llama_onnx, tmp_path):
    bad = tmp_path / "truncated.onnx"
    data = tiny_llama_onnx.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    copy_tokenizer(tiny_llama_onnx.parent, tmp_path)
    with pytest.raises(ModelError) as excinfo:
        load_runtime(bad)
    assert_one_line_error(excinfo, bad)
    from edgeval.runtimes.onnx import OnnxRuntime

    with pytest.raises(ModelError) as excinfo:  # the runtime's own check, past load_artifact's
        OnnxRuntime(bare_artifact(bad, "onnx"))
    assert_one_line_error(excinfo, bad, "not a readable ONNX model", "truncated or garbage")


def test_garbage_onnx(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError) as excinfo:
        load_runtime(bad)
    assert_one_line_error(excinfo, bad)
    from edgeval.runtimes.onnx import OnnxRuntime

    with pytest.raises(ModelError) as excinfo:
        OnnxRuntime(bare_artifact(bad, "onnx"))
    assert_one_line_error(excinfo, bad, "not a readable ONNX model", "truncated or garbage")


def test_garbage_tflite(tmp_path):
    pytest.importorskip("ai_edge_litert")
    bad = tmp_path / "garbage.tflite"
    bad.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 8)  # right magic, broken flatbuffer
    with pytest.raises(ModelError) as excinfo:
        load_runtime(bad)
    assert_one_line_error(excinfo, bad, "LiteRT cannot load it")


def _onnx_with_inputs(path: Path, *inputs: tuple[str, int, list]) -> Path:
    """A one-node ONNX model (Identity of the first input) with the given (name, elem_type, shape) inputs."""
    import onnx
    from onnx import helper

    values = [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in inputs]
    out = helper.make_tensor_value_info("out", inputs[0][1], inputs[0][2])
    graph = helper.make_graph([helper.make_node("Identity", [inputs[0][0]], ["out"])], "g", values, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_with_float_input_is_not_an_lm(tmp_path):
    from onnx import TensorProto

    bad = _onnx_with_inputs(tmp_path / "vision.onnx", ("pixel_values", TensorProto.FLOAT, [1, 3, 8, 8]))
    with pytest.raises(ModelError) as excinfo:
        load_runtime(bad)
    assert_one_line_error(excinfo, bad, "pixel_values", "not a causal LM taking input_ids")


def test_onnx_with_unknown_input(tmp_path):
    from onnx import TensorProto

    bad = _onnx_with_inputs(tmp_path / "odd.onnx", ("input_ids", TensorProto.INT64, ["b", "s"]),
                            ("temperature", TensorProto.FLOAT, [1]))
    with pytest.raises(ModelError) as excinfo:
        load_runtime(bad)
    assert_one_line_error(excinfo, bad, "'temperature'")


def test_onnx_past_with_unknown_dims(tmp_path):
    """Past key/values are fed empty; that needs exactly one dimension (the past length) left symbolic."""
    from onnx import TensorProto

    bad = _onnx_with_inputs(tmp_path / "past.onnx", ("input_ids", TensorProto.INT64, ["batch", "seq"]),
                            ("past_key_values.0.key", TensorProto.FLOAT, ["batch", "heads", "past", "head_dim"]))
    with pytest.raises(ModelError) as excinfo:
        load_runtime(bad)
    assert_one_line_error(excinfo, bad, "past_key_values.0.key")


def test_onnx_without_tokenizer(tiny_llama_onnx, tmp_path):
    lonely = tmp_path / "model.onnx"
    shutil.copy(tiny_llama_onnx, lonely)
    with pytest.raises(TokenizerError) as excinfo:
        load_runtime(lonely)
    assert_one_line_error(excinfo, lonely, "tokenizer.json")


def test_hf_dir_without_tokenizer(tiny_llama_dir, tmp_path):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_llama_dir / name, tmp_path / name)
    with pytest.raises(TokenizerError) as excinfo:
        load_runtime(tmp_path)
    assert_one_line_error(excinfo, tmp_path, "tokenizer")


def test_hf_dir_with_garbage_weights(tiny_llama_dir, tmp_path):
    copy_tokenizer(tiny_llama_dir, tmp_path)
    shutil.copy(tiny_llama_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelError) as excinfo:
        load_runtime(tmp_path)
    assert_one_line_error(excinfo, tmp_path, "transformers cannot load it")


def test_hf_dir_with_pickled_weights_only(tiny_llama_dir, tmp_path):
    """Only safetensors are read: a pytorch_model.bin is never unpickled."""
    copy_tokenizer(tiny_llama_dir, tmp_path)
    shutil.copy(tiny_llama_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(ModelError) as excinfo:
        load_runtime(tmp_path)
    assert_one_line_error(excinfo, tmp_path, "safetensors")


@pytest.fixture(scope="module")
def nan_model_dir(tmp_path_factory):
    """The tiny Llama with a NaN in its final norm (every logit NaN), as HF dir + legacy ONNX."""
    import torch
    from tinymodels import tiny_model

    from edgeval.converters.export import export_onnx

    out = tmp_path_factory.mktemp("nan-llama")
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.norm.weight[0] = float("nan")
    model.save_pretrained(out)
    from tinymodels import build_tokenizer

    build_tokenizer(out)
    export_onnx(model, out / "model.onnx", legacy=True, tokenizer=out)
    return out


@pytest.mark.parametrize("target", ["model.onnx", "."])
def test_nan_logits_are_a_measurement_error(nan_model_dir, target):
    runtime = load_runtime(nan_model_dir / target)
    with pytest.raises(MeasurementError, match="NaN"):
        runtime.forward(*pad_left(SEQUENCES, runtime.tokenizer.pad_id))
    with pytest.raises(MeasurementError, match="NaN"):
        runtime.next_token_logits(SEQUENCES)


# -- the ONNX path stays light -------------------------------------------------------------------------------------
def test_onnx_path_imports_no_torch_or_tensorflow(tiny_llama_onnx):
    code = textwrap.dedent(f"""
        import sys
        import edgeval.runtimes.onnx
        from edgeval.runtimes import load_runtime
        runtime = load_runtime({str(tiny_llama_onnx)!r})
        logits = runtime.next_token_logits([runtime.tokenizer.encode("Who was the doctor?")])
        assert logits.shape == (1, 1000), logits.shape
        heavy = [m for m in ("torch", "transformers", "tensorflow", "tf_keras", "keras", "jax", "litert_torch")
                 if m in sys.modules]
        assert not heavy, heavy
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_next_token_output_matches_full_logits_and_is_used(tiny_llama_dir, tiny_gpt2_dir, tmp_path):
    """Exports with next_token_output=True carry a last-position-only output; next_token_logits uses it."""
    from edgeval.converters.export import export_onnx
    from edgeval.runtimes import load_runtime

    batch = [[5, 6, 7, 8, 9, 10], [11, 12], [3, 4, 5, 6]]
    for source in (tiny_llama_dir, tiny_gpt2_dir):
        path = export_onnx(source, tmp_path / source.name / "model.onnx", legacy=True, next_token_output=True)
        runtime = load_runtime(path)
        assert runtime.next_name == "next_token_logits"
        fast = runtime.next_token_logits(batch)
        runtime.next_name = None  # the generic path: full logits, last position
        slow = runtime.next_token_logits(batch)
        assert fast.shape == slow.shape == (3, 1000)
        np.testing.assert_allclose(fast, slow, atol=1e-5)


def prompt_tree(seed: int = 0) -> list[list[int]]:
    """Prompts shaped like BBQ's: a shared head, contexts (one extending another), questions, 3 endings each."""
    rng = np.random.default_rng(seed)
    head, out = [int(t) for t in rng.integers(3, 999, 5)], []
    for _ in range(2):
        ambig = head + [int(t) for t in rng.integers(3, 999, 4)]
        for context in (ambig, ambig + [int(t) for t in rng.integers(3, 999, 3)]):
            for q in range(2):
                question = context + [int(t) for t in rng.integers(3, 999, 2 + q)]
                out += [question + [int(t) for t in rng.integers(3, 999, 1 + k)] for k in range(3)]
    return out + [head[:3], [7, 8]]


def assert_prefix_sharing_exact(runtime) -> None:
    """KV-cached scoring of the tree (tiny batches, so the cache is gathered across batches) == full prompts."""
    sequences = prompt_tree()
    assert runtime.kv_seq_axes() is not None
    shared = runtime.next_token_logits_many(sequences, max_rows=3, window=20)
    full = runtime.next_token_logits(sequences)
    np.testing.assert_allclose(shared, full, atol=1e-5)
    assert runtime.tokens_computed < 0.6 * runtime.tokens_requested


@pytest.fixture(scope="session")
def kv_exports(tiny_llama_dir, tiny_gpt2_dir, tmp_path_factory) -> dict[str, Path]:
    from edgeval.converters.export import export_onnx

    root = tmp_path_factory.mktemp("kv-exports")
    return {d.name: export_onnx(d, root / d.name / "model.onnx", legacy=True, kv_cache=True, next_token_output=True)
            for d in (tiny_llama_dir, tiny_gpt2_dir)}


@pytest.mark.parametrize("which", ["tiny-llama", "tiny-gpt2"])
def test_kv_cache_export_shares_prefixes_exactly(kv_exports, tiny_llama_dir, tiny_gpt2_dir, which):
    """edgeval export --kv-cache: the with-past layout; prefix sharing equals full prompts, and a plain
    forward pass (empty past) still matches torch."""
    model_dir = {"tiny-llama": tiny_llama_dir, "tiny-gpt2": tiny_gpt2_dir}[which]
    path = next(p for name, p in kv_exports.items() if name.startswith(which))
    runtime = load_runtime(path)
    facts = runtime.describe()
    assert facts["kv_cache"] and "past_key_values.0.key" in facts["inputs"] and facts["next_token_output"]
    assert_prefix_sharing_exact(runtime)
    assert_matches_torch(path, model_dir)


def test_parity_checks_the_cached_path(kv_exports, tiny_llama_dir):
    """`edgeval export --kv-cache` parity: the KV-cached path is compared too, and a broken cache fails it."""
    from edgeval.validators.parity import parity_report

    path = next(p for name, p in kv_exports.items() if name.startswith("tiny-llama"))
    candidate, reference = load_runtime(path), load_runtime(tiny_llama_dir)
    checks, results = parity_report(candidate, reference)
    status = {c.id: c.status for c in checks}
    assert status["parity.cached_logit_diff"] == "pass" and results["max_abs_cached_logit_diff"] < 1e-4
    step = candidate._cached_step

    def stale_cache(ids, mask, positions, past, keep):  # e.g. a graph that ignores its past
        logits, present = step(ids, mask, positions, past, keep)
        return (logits if past is None else logits + 0.5), present

    candidate._cached_step = stale_cache
    checks, results = parity_report(candidate, reference)
    status = {c.id: c.status for c in checks}
    assert status["parity.cached_logit_diff"] == "fail" and status["parity.max_abs_logit_diff"] == "pass"


@pytest.mark.parametrize("which", ["llama", "gpt2"])
def test_torch_runtime_shares_prefixes_exactly(tiny_llama_dir, tiny_gpt2_dir, which):
    assert_prefix_sharing_exact(load_runtime(tiny_llama_dir if which == "llama" else tiny_gpt2_dir))


def test_optimum_layout_cache_is_used(optimum_layout_onnx, optimum_layout_onnx_int32):
    """A with-past model edgeval did not write (explicit positions; int32 ids) gets the same prefix sharing."""
    for path in (optimum_layout_onnx, optimum_layout_onnx_int32):
        assert_prefix_sharing_exact(load_runtime(path))


def test_cache_needs_position_ids_and_present_outputs(optimum_layout_onnx):
    """Without position_ids edgeval cannot know how the graph numbers tokens after a padded past; without a
    present output per past input there is nothing to reuse. Both fall back to full prompts, same logits."""
    runtime = load_runtime(optimum_layout_onnx)
    outputs = [o.name for o in runtime.session.get_outputs()]
    assert runtime._cache_layout(outputs) is not None
    assert runtime._cache_layout([name for name in outputs if name != "present.1.value"]) is None
    runtime.inputs = [spec for spec in runtime.inputs if spec.name != "position_ids"]
    assert runtime._cache_layout(outputs) is None


@pytest.mark.slow
def test_kv_cache_export_dynamo(tiny_llama_dir, tmp_path):
    from edgeval.converters.export import export_onnx

    path = export_onnx(tiny_llama_dir, tmp_path / "model.onnx", kv_cache=True)
    runtime = load_runtime(path)
    assert runtime.describe()["kv_cache"] and runtime.next_name is None
    assert_prefix_sharing_exact(runtime)
    assert_matches_torch(path, tiny_llama_dir)


def test_torch_loader_rejects_missing_and_foreign_paths(tmp_path):
    from edgeval.errors import ModelError
    from edgeval.runtimes.torch import load_hf_model

    with pytest.raises(ModelError, match="no such file"):
        load_hf_model(tmp_path / "missing")
    with pytest.raises(ModelError, match="no config.json"):
        load_hf_model(tmp_path)
