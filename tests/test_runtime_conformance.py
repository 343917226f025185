"""Runtime conformance: every registered built-in runtime, and the demo plugin's, opened on a tiny model and
driven through the :class:`~edgeval.runtimes.Runtime` protocol, and nothing else.

A built-in runtime added to :data:`~edgeval.runtimes.registry.BUILTIN_RUNTIMES` without a tiny artifact in
:data:`ARTIFACTS` fails :func:`test_every_builtin_runtime_has_a_conformance_artifact`: conformance is not optional.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeval.artifacts import Artifact, load_artifact
from edgeval.errors import DeviceError, UsageError
from edgeval.runtimes import Runtime, RuntimeOptions, construct
from edgeval.runtimes.registry import BUILTIN_RUNTIMES, RuntimeSpec

PLUGIN_SRC = Path(__file__).parent / "plugin_pkg"

#: (format, runtime) -> (fixture giving the artifact, marks, module that must be importable)
ARTIFACTS: dict[tuple[str, str], tuple[str, tuple, str]] = {
    ("onnx", "onnxruntime"): ("optimum_layout_onnx_int32", (), "onnxruntime"),
    ("tflite", "tflite"): ("tiny_llama_tflite", (pytest.mark.tflite,), "ai_edge_litert"),
    ("hf", "torch"): ("tiny_llama_dir", (), "torch"),
    ("gguf", "torch"): ("tiny_llama_gguf", (), "torch"),
    ("gguf", "llama.cpp"): ("tiny_llama_gguf", (), "llama_cpp"),
    ("genai", "ort-genai"): ("tiny_genai_bundle", (), "onnxruntime_genai"),
}

SEQUENCES = [[5, 6, 7, 8, 9, 10], [5, 6, 7, 11], [12, 13], [5, 6, 7, 8, 9, 14, 15]]


def _cases() -> list:
    return [pytest.param((fmt, name), id=f"{fmt}:{name}", marks=ARTIFACTS.get((fmt, name), ("", (), ""))[1])
            for fmt, name, _ in BUILTIN_RUNTIMES]


def test_every_builtin_runtime_has_a_conformance_artifact() -> None:
    missing = [f"{fmt}:{name}" for fmt, name, _ in BUILTIN_RUNTIMES if (fmt, name) not in ARTIFACTS]
    assert not missing, f"add a tiny artifact for {missing} to ARTIFACTS"


def _open(spec: RuntimeSpec, path: Path, **options) -> Runtime:
    return construct(spec.load(), load_artifact(path), None, RuntimeOptions(threads=1, **options))


@pytest.fixture(scope="module")
def tiny_genai_bundle(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama as an fp32 ONNX Runtime GenAI bundle, built by onnxruntime-genai's model builder."""
    pytest.importorskip("onnxruntime_genai")
    from genai_fixture import build_bundle

    return build_bundle(tiny_llama_dir, tmp_path_factory.mktemp("genai-conformance") / "fp32", "fp32")


@pytest.fixture
def builtin_runtime(request: pytest.FixtureRequest):
    fmt, name = request.param
    fixture, _marks, module = ARTIFACTS[(fmt, name)]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (runtime {name})")
    path = request.getfixturevalue(fixture)
    spec = next(RuntimeSpec(f, n, t) for f, n, t in BUILTIN_RUNTIMES if (f, n) == (fmt, name))
    runtime = _open(spec, path)
    yield spec, path, runtime
    runtime.close()


@pytest.mark.parametrize("builtin_runtime", _cases(), indirect=True)
def test_builtin_runtime_conforms(builtin_runtime) -> None:
    spec, path, runtime = builtin_runtime
    assert runtime.name == spec.name
    assert_conforms(runtime)
    assert_refuses_what_it_cannot_do(spec, path)


def assert_conforms(runtime: Runtime) -> None:
    """Every member of the protocol, with the types and the agreements validators rely on."""
    assert isinstance(runtime, Runtime)
    assert isinstance(runtime.options, RuntimeOptions) and runtime.options.threads == 1
    assert runtime.max_seq_len is None or (isinstance(runtime.max_seq_len, int) and runtime.max_seq_len > 0)
    assert isinstance(runtime.batch_invariant, bool)
    assert isinstance(runtime.has_providers, bool) and isinstance(runtime.has_devices, bool)
    assert runtime.dtypes and all(isinstance(d, str) for d in runtime.dtypes)
    axes = runtime.kv_seq_axes()
    assert axes is None or (isinstance(axes, list) and all(isinstance(a, int) for a in axes))
    described = runtime.describe()
    assert isinstance(described, dict) and described.get("runtime") == runtime.name
    _assert_logits_agree(runtime)


def _assert_logits_agree(runtime: Runtime) -> None:
    """forward, next_token_logits, sequence_logits and next_token_logits_many give the same numbers; the token
    counters move by what was asked and run."""
    ids, mask = np.array([SEQUENCES[0]], np.int64), np.ones((1, len(SEQUENCES[0])), np.int64)
    full = runtime.forward(ids, mask)
    assert full.dtype == np.float32 and full.shape[:2] == ids.shape and np.isfinite(full).all()
    nxt = runtime.next_token_logits(SEQUENCES)
    assert nxt.shape == (len(SEQUENCES), full.shape[-1]) and nxt.dtype == np.float32
    np.testing.assert_allclose(nxt[0], full[0, -1], atol=2e-4)
    per_position = runtime.sequence_logits(SEQUENCES)
    assert [len(x) for x in per_position] == [len(s) for s in SEQUENCES]
    for row, logits in enumerate(per_position):
        np.testing.assert_allclose(logits[-1], nxt[row], atol=2e-4)
    asked, ran = runtime.tokens_requested, runtime.tokens_computed
    many = runtime.next_token_logits_many(SEQUENCES)
    np.testing.assert_allclose(many, nxt, atol=2e-4)
    assert runtime.tokens_requested - asked == sum(map(len, SEQUENCES))
    assert 0 < runtime.tokens_computed - ran <= runtime.tokens_requested - asked
    columns = [5, 1, 17]  # a few ids, out of order (BBQ's letters): exactly those columns of the full rows
    picked = runtime.next_token_logits_many(SEQUENCES, columns=columns)
    assert picked.shape == (len(SEQUENCES), 3) and picked.dtype == np.float32
    np.testing.assert_allclose(picked, many[:, columns], atol=2e-4)
    alone = runtime.next_token_logits([SEQUENCES[2]])  # left padding in a batch changes nothing
    np.testing.assert_allclose(alone[0], nxt[2], atol=2e-4)
    assert isinstance(runtime.computes_last_only(), bool)
    width = runtime.logits_width()
    assert width is None or width >= full.shape[-1] or width == full.shape[-1]
    logprobs = runtime.sequence_logprobs(SEQUENCES, [1] * len(SEQUENCES))
    for seq, lp, logits in zip(SEQUENCES, logprobs, per_position, strict=True):  # log-softmax at the next token
        shifted = logits[:-1].astype(np.float64)
        expected = shifted[np.arange(len(seq) - 1), seq[1:]] - np.log(np.exp(
            shifted - shifted.max(-1, keepdims=True)).sum(-1)) - shifted.max(-1)
        np.testing.assert_allclose(lp, expected, atol=5e-4)


def assert_refuses_what_it_cannot_do(spec: RuntimeSpec, path: Path) -> None:
    """A provider on a runtime without providers is a usage error; one this machine lacks is a DeviceError; the
    same for devices and dtypes. Never a quiet run on something else."""
    cls = spec.load()
    with pytest.raises(DeviceError if cls.has_providers else UsageError, match="provider|cannot honour"):
        _open(spec, path, provider="NoSuchExecutionProvider")
    with pytest.raises(DeviceError if cls.has_devices else UsageError, match="not available|cannot honour"):
        _open(spec, path, device="cuda:7")
    if "float16" not in cls.dtypes:
        with pytest.raises(UsageError, match="cannot honour --dtype float16"):
            _open(spec, path, dtype="float16")


# -- the demo plugin's runtimes, imported from its source ------------------------------------------------------
@pytest.fixture(scope="module")
def demo_plugin():
    sys.path.insert(0, str(PLUGIN_SRC))
    try:
        import edgeval_demo_plugin
        yield edgeval_demo_plugin
    finally:
        sys.path.remove(str(PLUGIN_SRC))
        sys.modules.pop("edgeval_demo_plugin", None)


def test_the_demo_plugins_onnx_runtime_conforms(demo_plugin, tiny_llama_onnx: Path) -> None:
    specs = {s.name: s for s in demo_plugin.edgeval_runtimes()}
    runtime = _open(specs["demo-onnx"], tiny_llama_onnx)
    try:
        assert runtime.name == "demo-onnx"
        assert_conforms(runtime)
    finally:
        runtime.close()


def test_the_demo_plugins_new_format_conforms(demo_plugin, tiny_llama_onnx: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copy(tiny_llama_onnx.parent / "tokenizer.json", tmp_path / "tokenizer.json")
    table = np.random.default_rng(0).normal(size=(1000, 1000)).astype(np.float32)
    np.save(tmp_path / "m.npy", table, allow_pickle=False)
    (tmp_path / "m.npy").rename(tmp_path / "m.bigram")
    assert demo_plugin.edgeval_detect_format(str(tmp_path / "m.bigram")) == "bigram"
    spec = next(s for s in demo_plugin.edgeval_runtimes() if s.format == "bigram")
    artifact = Artifact(tmp_path / "m.bigram", "bigram", "0" * 64, table.nbytes, (tmp_path / "m.bigram",))
    runtime = construct(spec.load(), artifact, None, RuntimeOptions(threads=1))
    try:
        assert_conforms(runtime)
    finally:
        runtime.close()
