"""edgeval.converters.keras_tfmot: TFMOT pruning of a tiny tf-keras model, sparse TFLite, Keras 3 rejection.

TensorFlow picks Keras 2 or 3 once per process, when it is first imported: this module sets
``TF_USE_LEGACY_KERAS=1`` at collection time (before any test imports TF), and runs the Keras 3 check in a
subprocess without it. The pruned models and flatbuffers are built once per module.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeval.errors import BadInputError, MissingExtraError, UsageError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
pytestmark = pytest.mark.tf

IN, HIDDEN, OUT = 64, 64, 8


@pytest.fixture(scope="module")
def kt():
    """The module under test, after TensorFlow is importable in legacy-Keras mode (skip when TF is missing)."""
    pytest.importorskip("tensorflow_model_optimization")
    from edgeval.converters import keras_tfmot

    keras_tfmot.import_tf()
    return keras_tfmot


def _tiny_model(seed: int) -> Any:
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((IN,)), keras.layers.Dense(HIDDEN, activation="relu"),
                             keras.layers.Dense(OUT)])


def _prune_and_fit(kt, seed: int, **pruning: Any) -> Any:
    """Fresh tiny model, wrapped, two training steps on random data, stripped."""
    pruned = kt.apply_pruning(_tiny_model(seed), **pruning)
    pruned.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(seed)
    x, y = rng.random((32, IN), np.float32), rng.random((32, OUT), np.float32)
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=kt.pruning_callbacks())
    return kt.strip(pruned)


@pytest.fixture(scope="module")
def pruned50(kt) -> Any:
    """50 % unstructured, ConstantSparsity from step 0 to step 1, pruning every step."""
    return _prune_and_fit(kt, 0, target_sparsity=0.5, end_step=1, frequency=1)


@pytest.fixture(scope="module")
def pruned24(kt) -> Any:
    """2:4 along the input dimension."""
    return _prune_and_fit(kt, 1, m_by_n=(2, 4), end_step=1, frequency=1)


@pytest.fixture(scope="module")
def flatbuffers(kt, pruned50, tmp_path_factory) -> dict[str, Any]:
    """The 50 % model as dense-layout and sparse-format float TFLite files."""
    out = tmp_path_factory.mktemp("keras-tfmot")
    return {"dense": kt.to_tflite(pruned50, out / "dense.tflite"),
            "sparse": kt.to_tflite(pruned50, out / "sparse.tflite", sparse=True)}


def _run_tflite(flatbuffer: bytes, x: np.ndarray, resolver: str = "AUTO") -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=bytes(flatbuffer), experimental_op_resolver_type=OpResolverType[resolver])
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], x.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    return interp.get_tensor(out["index"])


def test_unstructured_50_percent(kt, pruned50):
    assert not kt._is_wrapped(pruned50)
    measured = kt.measured_sparsity(pruned50)
    assert len(measured.per_layer) == 2
    for name, value in measured.per_layer.items():
        assert value == pytest.approx(0.5, abs=0.005), name
    assert measured.elements == IN * HIDDEN + HIDDEN * OUT
    assert measured.overall == pytest.approx(0.5, abs=0.005)


def test_two_of_four_along_input_dim(kt, pruned24):
    kernels = [layer.kernel.numpy() for layer in pruned24.layers]
    for kernel in kernels:
        d_in, d_out = kernel.shape
        groups = (kernel.reshape(d_in // 4, 4, d_out) == 0).sum(axis=1)
        assert (groups == 2).all()
    assert kt.measured_sparsity(pruned24).overall == 0.5


def test_sparse_tflite_smaller_and_same_outputs(flatbuffers, pruned50):
    dense, sparse = flatbuffers["dense"], flatbuffers["sparse"]
    assert len(sparse) < len(dense)
    assert dense.path.read_bytes() == dense and sparse.path.stat().st_size == len(sparse)
    assert not list(dense.path.parent.glob(".*.tmp"))  # the atomic write left no temp file
    assert dense.op_resolver == sparse.op_resolver == "AUTO"
    x = np.random.default_rng(2).random((3, IN), np.float32)
    expected = pruned50(x).numpy()
    for flatbuffer in (dense, sparse):
        np.testing.assert_allclose(_run_tflite(flatbuffer, x), expected, atol=1e-5, rtol=0)


def test_size_validator_reads_sparsity(flatbuffers):
    from edgeval.validators.tensorstats import tflite_stats

    for kind in ("dense", "sparse"):
        weights = [s for s in tflite_stats(flatbuffers[kind].path) if s.is_weight]
        assert sorted(s.elements for s in weights) == [HIDDEN * OUT, IN * HIDDEN], kind
        for stat in weights:
            assert stat.zeros / stat.elements == pytest.approx(0.5, abs=0.005), (kind, stat.name)
    dense = {s.elements: s for s in tflite_stats(flatbuffers["dense"].path) if s.is_weight}
    assert dense[IN * HIDDEN].stored_bytes == IN * HIDDEN * 4  # dense layout: the zeros are stored


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")
@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_sparse_int8_needs_builtin_resolver(kt, pruned50, quantize):
    x = np.random.default_rng(3).random((2, IN), np.float32)
    calibration = [x[i:i + 1] for i in range(len(x))]
    flatbuffer = kt.to_tflite(pruned50, sparse=True, quantize=quantize, representative_data=calibration)
    assert flatbuffer.path is None and flatbuffer.op_resolver == "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
    got = _run_tflite(flatbuffer, x, flatbuffer.op_resolver)
    np.testing.assert_allclose(got, pruned50(x).numpy(), atol=0.05)


@pytest.mark.parametrize("sparse", [False, True])
def test_float16_weights(kt, pruned50, flatbuffers, tmp_path, sparse):
    """quantize="float16": float16 weights (zeros kept), smaller than float32, same outputs within fp16 rounding,
    and no special resolver needed."""
    from edgeval.validators.tensorstats import tflite_stats

    flatbuffer = kt.to_tflite(pruned50, tmp_path / "fp16.tflite", sparse=sparse, quantize="float16")
    weights = [s for s in tflite_stats(flatbuffer.path) if s.is_weight]
    assert sorted((s.dtype, s.elements) for s in weights) == [("float16", HIDDEN * OUT), ("float16", IN * HIDDEN)]
    assert all(s.zeros / s.elements == pytest.approx(0.5, abs=0.005) for s in weights)
    float32 = flatbuffers["sparse" if sparse else "dense"]
    # weights halve; the graph and the sparse format's indices do not (measured: 0.57 dense, 0.71 sparse)
    assert flatbuffer.op_resolver == "AUTO" and len(flatbuffer) < (0.8 if sparse else 0.65) * len(float32)
    x = np.random.default_rng(4).random((3, IN), np.float32)
    np.testing.assert_allclose(_run_tflite(flatbuffer, x), pruned50(x).numpy(), atol=2e-3, rtol=0)


def test_wrapped_model_is_stripped_before_conversion(kt):
    wrapped = kt.apply_pruning(_tiny_model(4), target_sparsity=0.5, schedule="polynomial", end_step=10)
    assert kt._is_wrapped(wrapped)
    assert type(wrapped.layers[0].pruning_schedule).__name__ == "PolynomialDecay"
    assert len(kt.measured_sparsity(wrapped).per_layer) == 2  # kernels only, the masks are not counted
    assert len(kt.to_tflite(wrapped)) > 0


@pytest.mark.parametrize("kwargs", [{"target_sparsity": 1.0}, {"schedule": "polynomial"},
                                    {"m_by_n": (4, 2)}, {"frequency": 0}, {"schedule": "cubic"}])
def test_bad_pruning_arguments(kt, kwargs):
    with pytest.raises(UsageError):
        kt.apply_pruning(_tiny_model(5), **kwargs)


def test_quantize_arguments(kt, pruned50):
    with pytest.raises(UsageError, match="representative_data"):
        kt.to_tflite(pruned50, quantize="int8")
    with pytest.raises(UsageError, match="quantize"):
        kt.to_tflite(pruned50, quantize="fp16")


def test_not_a_keras_model(kt):
    with pytest.raises(BadInputError, match="expected a tf_keras model"):
        kt.apply_pruning(object())


@pytest.mark.parametrize("module", ["tensorflow", "tf_keras", "tensorflow_model_optimization"])
def test_missing_tf_names_the_extra(kt, monkeypatch, module):
    import importlib

    real = importlib.import_module

    def fake(name: str, *args: Any) -> Any:
        if name == module:
            raise ImportError(f"No module named '{module}'", name=module)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(MissingExtraError) as info:
        kt.import_tf()
    assert info.value.extra == "tf" and "edgeval[tf]" in str(info.value)


_KERAS3_SCRIPT = textwrap.dedent("""
    import json
    import keras  # Keras 3: imports TensorFlow without TF_USE_LEGACY_KERAS
    from edgeval.converters import keras_tfmot as kt
    from edgeval.errors import BadInputError, UsageError

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    out = {"keras": keras.__version__}
    for name, call in [("ensure", lambda: kt.ensure_tf_keras_model(model)),
                       ("prune", lambda: kt.apply_pruning(model)), ("import", kt.import_tf)]:
        try:
            call()
            out[name] = None
        except (BadInputError, UsageError) as exc:
            out[name] = [type(exc).__name__, str(exc)]
    print("RESULT " + json.dumps(out))
""")


def test_keras3_model_rejected_in_a_keras3_process(kt):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", _KERAS3_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parent)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["keras"].startswith("3.")
    assert out["ensure"] == ["BadInputError", kt.KERAS3_MESSAGE] == out["prune"]
    assert "\n" not in kt.KERAS3_MESSAGE
    kind, message = out["import"]
    assert kind == "UsageError" and "TF_USE_LEGACY_KERAS=1 before importing TensorFlow" in message


def test_legacy_keras_switched_off_before_import(kt, monkeypatch):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "0")
    monkeypatch.delitem(sys.modules, "tensorflow")  # as if TensorFlow were not imported yet; restored after
    with pytest.raises(UsageError, match="TF_USE_LEGACY_KERAS='0' selects Keras 3"):
        kt.import_tf()
    assert "tensorflow" not in sys.modules  # refused before importing anything
