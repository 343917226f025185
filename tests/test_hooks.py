"""edgeval.hooks: the Keras/TFMOT callback, the gated TFLite converter, the ORT gate step, the MLflow sink, and
the two pipeline examples.

Planted regression = a policy budget the candidate cannot meet (``size.max_ratio_to_baseline`` below what the
pruning achieved, or ``require_savings`` on a file that keeps its size); a clean candidate passes. TensorFlow is
imported in legacy-Keras mode (``TF_USE_LEGACY_KERAS=1`` is set at collection, as in test_keras_tfmot.py).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeval import DeploymentBlocked, Report, UsageError
from edgeval.errors import MissingExtraError

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

ROOT = Path(__file__).resolve().parents[1]
IN, HIDDEN, OUT = 64, 64, 8
SAVINGS = {"size": {"require_savings": True}}
TOO_TIGHT = {"size": {"max_ratio_to_baseline": 0.2}}  # sparse 50 % TFLite / int8 ONNX are ~0.4-0.75


# -- Keras / TFLite fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kt():
    pytest.importorskip("tensorflow_model_optimization")
    from edgeval.converters import keras_tfmot

    keras_tfmot.import_tf()
    return keras_tfmot


def _tiny_model(seed: int = 0) -> Any:
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((IN,)), keras.layers.Dense(HIDDEN, activation="relu"),
                             keras.layers.Dense(OUT)])


def _fit_pruned(kt, model: Any, callback: Any) -> Any:
    """Wrap ``model`` for 50 % pruning and fit two steps with the TFMOT callbacks and ``callback``."""
    pruned = kt.apply_pruning(model, target_sparsity=0.5, end_step=1, frequency=1)
    pruned.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((32, IN), np.float32), rng.random((32, OUT), np.float32)
    pruned.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[*kt.pruning_callbacks(), callback])
    return pruned


@pytest.fixture(scope="module")
def flatbuffers(kt, tmp_path_factory) -> dict[str, Any]:
    """Dense baseline (file), and the 50 %-pruned model as sparse and dense-layout flatbuffers (bytes)."""
    out = tmp_path_factory.mktemp("hooks-tflite")
    model = _tiny_model(1)
    baseline = kt.to_tflite(model, out / "dense.tflite")
    pruned = kt.apply_pruning(model, target_sparsity=0.5, end_step=1, frequency=1)
    pruned.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(1)
    pruned.fit(rng.random((32, IN), np.float32), rng.random((32, OUT), np.float32), batch_size=16, verbose=0,
               callbacks=kt.pruning_callbacks())
    stripped = kt.strip(pruned)
    return {"baseline": baseline.path, "baseline_bytes": bytes(baseline), "stripped": stripped,
            "sparse": bytes(kt.to_tflite(stripped, sparse=True)), "dense_layout": bytes(kt.to_tflite(stripped))}


class BytesConverter:
    """A converter that returns given bytes: GatedConverter needs only ``convert() -> bytes``."""

    def __init__(self, data: bytes) -> None:
        self.data, self.calls = data, 0

    def convert(self) -> bytes:
        self.calls += 1
        return self.data


# -- Keras callback --------------------------------------------------------------------------------------------
@pytest.mark.tf
def test_callback_prunes_converts_and_passes(kt, tmp_path):
    from edgeval.hooks.keras import edgeval_callback

    model, out = _tiny_model(), tmp_path / "m" / "pruned.tflite"
    callback = edgeval_callback(out, baseline=model, policy=SAVINGS)
    dense = out.with_name("pruned.dense.tflite")
    assert dense.is_file()  # converted at construction, before pruning changed the shared layers
    _fit_pruned(kt, model, callback)
    report = callback.report
    assert report.passed and out.read_bytes() == callback.flatbuffer
    size = report.results["size"]
    assert size["weight_sparsity"] == pytest.approx(0.5, abs=0.01) and size["baseline_weight_sparsity"] < 0.01
    assert size["bytes"] < size["baseline_bytes"]
    on_disk = Report.load(out.with_name("pruned.edgeval-report.json"))
    assert on_disk.verdict == "pass" and on_disk.candidate["path"] == str(out)
    assert on_disk.baseline["path"] == str(dense) and on_disk.run["hook"]["name"] == "keras.EdgevalPruningCallback"


@pytest.mark.tf
def test_callback_raises_on_planted_regression(kt, tmp_path):
    from edgeval.hooks.keras import edgeval_callback

    model, out = _tiny_model(), tmp_path / "pruned.tflite"
    callback = edgeval_callback(out, baseline=model, policy=TOO_TIGHT)
    with pytest.raises(DeploymentBlocked) as info:
        _fit_pruned(kt, model, callback)
    assert info.value.report is callback.report and info.value.report.verdict == "blocked"
    assert info.value.report.check("size.ratio_to_baseline").status == "fail"
    assert not out.exists()  # a blocked model never lands at out_path
    assert Report.load(tmp_path / "pruned.edgeval-report.json").verdict == "blocked"


@pytest.mark.tf
def test_callback_record_mode_keeps_report(kt, tmp_path):
    from edgeval.hooks.keras import TFLiteOptions, edgeval_callback

    model, out = _tiny_model(), tmp_path / "pruned.tflite"
    dense = kt.to_tflite(model, tmp_path / "given-dense.tflite")
    callback = edgeval_callback(out, baseline=dense.path, policy=SAVINGS, on_block="record",
                                tflite=TFLiteOptions(sparse=False))
    _fit_pruned(kt, model, callback)  # does not raise
    assert callback.report.verdict == "blocked"  # dense layout: the zeros are stored, no byte saved
    assert callback.report.check("size.savings").value <= 0
    assert callback.flatbuffer[4:8] == b"TFL3" and not out.exists()


def test_callback_rejects_unknown_on_block(tmp_path):
    from edgeval.hooks.keras import edgeval_callback

    with pytest.raises(UsageError, match="on_block"):
        edgeval_callback(tmp_path / "m.tflite", on_block="ignore")


def test_bad_policy_mapping_fails_before_any_conversion(tmp_path):
    from edgeval.errors import PolicyError
    from edgeval.hooks.tflite import GatedConverter

    converter = BytesConverter(b"")
    with pytest.raises(PolicyError, match="did you mean 'require_savings'"):
        GatedConverter(converter, None, out_path=tmp_path / "m.tflite", policy={"size": {"require_saving": True}})
    assert converter.calls == 0


def test_importing_hooks_imports_no_framework():
    code = ("import sys, edgeval.hooks.keras, edgeval.hooks.tflite, edgeval.hooks.onnxruntime, edgeval.hooks.mlflow\n"
            "heavy = [m for m in ('tensorflow', 'tf_keras', 'onnxruntime', 'torch', 'mlflow') if m in sys.modules]\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- GatedConverter ----------------------------------------------------------------------------------------------
@pytest.mark.tf
def test_gated_converter_blocks_planted_regression(flatbuffers, tmp_path):
    from edgeval.hooks.tflite import GatedConverter

    out = tmp_path / "pruned.tflite"
    gated = GatedConverter(BytesConverter(flatbuffers["sparse"]), flatbuffers["baseline"], out_path=out,
                           policy=TOO_TIGHT)
    with pytest.raises(DeploymentBlocked) as info:
        gated.convert()
    report = info.value.report
    assert report is gated.report and report.verdict == "blocked" and info.value.exit_code == 1
    assert not out.exists() and not list(tmp_path.glob(".edgeval-*"))  # no model, no temp dir left
    on_disk = Report.load(tmp_path / "pruned.edgeval-report.json")
    assert on_disk.verdict == "blocked" and on_disk.run["hook"] == {
        "name": "tflite.GatedConverter", "written": False, "out_path": str(out)}
    assert on_disk.candidate["bytes"] == len(flatbuffers["sparse"])


@pytest.mark.tf
def test_gated_converter_leaves_existing_file_when_blocked(flatbuffers, tmp_path):
    from edgeval.hooks.tflite import GatedConverter

    out = tmp_path / "model.tflite"
    out.write_bytes(b"previous release")
    gated = GatedConverter(BytesConverter(flatbuffers["dense_layout"]), flatbuffers["baseline"], out_path=out,
                           policy=SAVINGS)
    with pytest.raises(DeploymentBlocked):
        gated.convert()
    assert out.read_bytes() == b"previous release"
    assert gated.report.check("size.savings").status == "fail"


@pytest.mark.tf
@pytest.mark.parametrize("baseline_kind", ["path", "bytes"])
def test_gated_converter_passes_clean_model(flatbuffers, tmp_path, baseline_kind):
    from edgeval.hooks.tflite import GatedConverter

    out, report_path = tmp_path / "deploy" / "pruned.tflite", tmp_path / "reports" / "gate.json"
    baseline = flatbuffers["baseline"] if baseline_kind == "path" else flatbuffers["baseline_bytes"]
    gated = GatedConverter(BytesConverter(flatbuffers["sparse"]), baseline, out_path=out, policy=SAVINGS,
                           report_path=report_path)
    assert gated.convert() == flatbuffers["sparse"] == out.read_bytes()
    report = Report.load(report_path)
    assert report.passed and report.candidate["path"] == str(out) and report.run["hook"]["written"] is True
    assert report.results["size"]["bytes_saved"] > 0
    assert not list(out.parent.glob(".edgeval-*"))


@pytest.mark.tf
def test_gated_converter_wraps_a_real_tflite_converter(kt, flatbuffers, tmp_path):
    from edgeval.hooks.tflite import GatedConverter

    tf, _, _ = kt.import_tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(flatbuffers["stripped"])
    gated = GatedConverter(converter, flatbuffers["baseline"], out_path=tmp_path / "p.tflite", policy=SAVINGS)
    gated.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]  # forwarded to the wrapped converter
    assert converter.optimizations == gated.optimizations
    assert len(gated.convert()) < flatbuffers["baseline"].stat().st_size and gated.report.passed


@pytest.mark.tf
def test_gated_converter_bad_baseline_is_an_error_verdict(flatbuffers, tmp_path):
    from edgeval.hooks.tflite import GatedConverter

    gated = GatedConverter(BytesConverter(flatbuffers["sparse"]), tmp_path / "missing.tflite",
                           out_path=tmp_path / "p.tflite")
    with pytest.raises(DeploymentBlocked) as info:
        gated.convert()
    assert info.value.report.verdict == "error" and info.value.exit_code == 3
    assert not (tmp_path / "p.tflite").exists() and (tmp_path / "p.edgeval-report.json").is_file()


@pytest.mark.tflite
def test_gate_litert_torch(tmp_path):
    pytest.importorskip("litert_torch")
    import torch

    from edgeval.hooks.tflite import gate_litert_torch

    torch.manual_seed(0)
    net, args = torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT)), \
        (torch.randn(1, IN),)
    dense = gate_litert_torch(net, args, None, out_path=tmp_path / "dense.tflite",  # no baseline: a size limit
                              policy={"size": {"max_bytes": 10**9}})
    assert dense == (tmp_path / "dense.tflite").read_bytes()
    with torch.no_grad():
        for layer in (net[0], net[2]):
            layer.weight[layer.weight.abs() < layer.weight.abs().median()] = 0
    with pytest.raises(DeploymentBlocked) as info:  # litert stores the zeros densely: nothing saved
        gate_litert_torch(net, args, tmp_path / "dense.tflite", out_path=tmp_path / "pruned.tflite", policy=SAVINGS)
    assert info.value.report.results["size"]["weight_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert not (tmp_path / "pruned.tflite").exists()


# -- ONNX Runtime step -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_onnx(tiny_llama_onnx: Path, tmp_path_factory) -> Path:
    """The tiny Llama export after ``quantize_dynamic`` (int8 weights), tokenizer copied beside it."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    from edgeval.hooks.onnxruntime import copy_tokenizer

    out = tmp_path_factory.mktemp("llama-int8") / "model.int8.onnx"
    quantization.quantize_dynamic(tiny_llama_onnx, out, weight_type=quantization.QuantType.QInt8)
    assert copy_tokenizer(tiny_llama_onnx.parent, out)
    return out


FAST_LATENCY = {"latency": {"warmup": 1, "runs": 5, "seq_len": 16, "max_ratio_to_baseline": None}}


def test_gate_onnx_quantized_candidate_passes(int8_onnx, tiny_llama_onnx, tmp_path):
    from edgeval.hooks.blessing import BLESSED
    from edgeval.hooks.onnxruntime import gate_onnx

    report = gate_onnx(int8_onnx, tiny_llama_onnx, policy={**SAVINGS, **FAST_LATENCY},
                       validators=["size", "latency"], bless_dir=tmp_path)
    size = report.results["size"]
    assert report.passed and size["bytes"] < 0.5 * size["baseline_bytes"]  # int8 weights: the report shows it
    assert report.results["latency"]["p50_ms"] > 0 and report.run["hook"]["name"] == "onnxruntime.gate_onnx"
    written = int8_onnx.with_name("model.int8.edgeval-report.json")  # default: beside the candidate
    assert Report.load(written).passed
    assert json.loads((tmp_path / BLESSED).read_text())["candidate_sha256"] == report.candidate["sha256"]


def test_gate_onnx_blocks_unchanged_size(tiny_llama_onnx, tmp_path):
    from edgeval.hooks.blessing import BLESSED, NOT_BLESSED
    from edgeval.hooks.onnxruntime import gate_onnx

    (tmp_path / BLESSED).write_text("stale")
    report_path = tmp_path / "r.json"
    with pytest.raises(DeploymentBlocked) as info:
        gate_onnx(tiny_llama_onnx, tiny_llama_onnx, policy=SAVINGS, validators=["size"], report_path=report_path,
                  bless_dir=tmp_path)
    assert info.value.report.check("size.savings").status == "fail"
    assert (tmp_path / NOT_BLESSED).is_file() and not (tmp_path / BLESSED).exists()
    recorded = gate_onnx(tiny_llama_onnx, tiny_llama_onnx, policy=SAVINGS, validators=["size"],
                         report_path=report_path, on_block="record")
    assert recorded.verdict == "blocked" and Report.load(report_path).verdict == "blocked"


def test_gate_onnx_planted_ratio_and_bad_on_block(int8_onnx, tiny_llama_onnx, tmp_path):
    from edgeval.hooks.onnxruntime import gate_onnx

    report = gate_onnx(int8_onnx, tiny_llama_onnx, policy=TOO_TIGHT, validators=["size"],
                       report_path=tmp_path / "r.json", on_block="record")
    assert report.check("size.ratio_to_baseline").status == "fail"
    with pytest.raises(UsageError):
        gate_onnx(int8_onnx, tiny_llama_onnx, on_block="warn")


# -- MLflow --------------------------------------------------------------------------------------------------------
@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A local file store in tmp_path (MLflow 3 refuses it unless MLFLOW_ALLOW_FILE_STORE is set)."""
    mlflow = pytest.importorskip("mlflow")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    yield mlflow
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def onnx_report(int8_onnx, tiny_llama_onnx, tmp_path_factory) -> tuple[Report, Path]:
    from edgeval.hooks.onnxruntime import gate_onnx

    path = tmp_path_factory.mktemp("mlflow-report") / "report.json"
    report = gate_onnx(int8_onnx, tiny_llama_onnx, policy={**SAVINGS, **FAST_LATENCY},
                       validators=["size", "latency"], report_path=path)
    return report, path


def test_log_report_new_run(mlflow_store, onnx_report):
    from edgeval.hooks.mlflow import log_report

    report, path = onnx_report
    run_id = log_report(report, path)
    client = mlflow_store.MlflowClient()
    run = client.get_run(run_id)
    metrics, params = run.data.metrics, run.data.params
    assert metrics["edgeval.size.bytes"] == report.results["size"]["bytes"]
    assert metrics["edgeval.size.ratio_to_baseline"] == pytest.approx(report.check("size.ratio_to_baseline").value)
    assert metrics["edgeval.latency.p50_ms"] == pytest.approx(report.results["latency"]["p50_ms"])
    assert metrics["edgeval.passed"] == 1.0 and metrics["edgeval.checks_failed"] == 0.0
    assert params["edgeval.verdict"] == "pass" and params["edgeval.candidate.sha256"] == report.candidate["sha256"]
    assert params["edgeval.policy.size.require_savings"] == "true" and params["edgeval.validators"] == "size,latency"
    # the measured sparsity is the size validator's metric (sinks name no validator, so no separate param)
    assert metrics["edgeval.size.weight_sparsity"] == pytest.approx(report.results["size"]["weight_sparsity"])
    assert run.data.tags["edgeval.verdict"] == "pass" and run.info.status == "FINISHED"
    artifacts = [a.path for a in client.list_artifacts(run_id, "edgeval")]
    assert artifacts == ["edgeval/report.json"]
    local = client.download_artifacts(run_id, "edgeval/report.json")
    assert Report.load(local).to_json() == report.to_json()


def test_log_report_active_run_and_env_run_id(mlflow_store, onnx_report, monkeypatch):
    from edgeval.hooks.mlflow import log_report

    report, _ = onnx_report
    with mlflow_store.start_run() as active:
        assert log_report(report) == active.info.run_id  # no path: the report is serialised for the artifact
    monkeypatch.setenv("MLFLOW_RUN_ID", active.info.run_id)
    assert log_report(report, prefix="second") == active.info.run_id
    client = mlflow_store.MlflowClient()
    data = client.get_run(active.info.run_id).data
    assert data.params["second.verdict"] == data.params["edgeval.verdict"] == "pass"
    assert [a.path for a in client.list_artifacts(active.info.run_id, "edgeval")] == ["edgeval/edgeval-report.json"]


def test_mlflow_sink_plugin_and_cli_flag(mlflow_store, onnx_report, int8_onnx, tiny_llama_onnx, tmp_path, capsys):
    from edgeval.api import announce
    from edgeval.cli import main
    from edgeval.hooks.mlflow import MlflowSink
    from edgeval.plugins import plugin_manager

    report, path = onnx_report
    client = mlflow_store.MlflowClient()
    run_id = client.create_run(client.get_experiment_by_name("Default").experiment_id).info.run_id
    pm = plugin_manager()
    pm.register(MlflowSink(run_id=run_id), name="test-mlflow-sink")
    try:
        assert announce(report, path) == []
    finally:
        pm.unregister(name="test-mlflow-sink")
    assert client.get_run(run_id).data.params["edgeval.verdict"] == "pass"
    with pytest.raises(SystemExit) as info:
        main(["check", str(int8_onnx), "--baseline", str(tiny_llama_onnx), "--validators", "size", "-q",
              "--report", str(tmp_path / "cli.json"), "--mlflow"])
    assert info.value.code == 0
    runs = client.search_runs([client.get_experiment_by_name("Default").experiment_id])
    cli_runs = [r for r in runs if r.info.run_id != run_id]  # the CLI, with no active run, started its own
    assert len(cli_runs) == 1 and cli_runs[0].data.params["edgeval.verdict"] == "pass"
    assert [a.path for a in client.list_artifacts(cli_runs[0].info.run_id, "edgeval")] == ["edgeval/cli.json"]


def test_report_metrics_flatten_bbq_and_skip_non_numbers():
    from edgeval.hooks.mlflow import report_metrics, report_params
    from edgeval.report import Check

    results = {"bbq": {"candidate": {"overall": {"srs": 0.4, "s_amb": float("nan"), "s_dis": None}},
                       "comparison": {"overall": {"delta_srs": 0.08, "cohens_h": 0.2}}}}
    checks = (Check("bbq.delta_srs", "bbq", "fail", "delta_srs", value=0.08, threshold=0.05),
              Check("bbq.race_x_ses.present", "bbq", "pass", "category_present", value=True))
    report = Report(candidate={"path": "m.onnx", "format": "onnx", "sha256": "0" * 64, "bytes": 1}, baseline=None,
                    policy={"bbq": {"alpha": 0.05, "categories": ["Age"]}}, checks=checks, results=results,
                    run={"validators": ["bbq"], "seed": 0, "duration_s": 1.0})
    metrics = report_metrics(report)
    assert metrics["edgeval.bbq.srs"] == 0.4 and metrics["edgeval.bbq.delta_srs"] == 0.08
    assert "edgeval.bbq.s_amb" not in metrics and "edgeval.bbq.race_x_ses.present" not in metrics
    assert metrics["edgeval.passed"] == 0.0 and metrics["edgeval.checks_failed"] == 1.0
    params = report_params(report)
    assert params["edgeval.verdict"] == "blocked" and params["edgeval.policy.bbq.categories"] == '["Age"]'
    assert "edgeval.baseline.sha256" not in params and "edgeval.sparsity" not in params


def test_missing_mlflow_names_the_extra(monkeypatch):
    from edgeval.hooks.mlflow import log_report

    monkeypatch.setitem(sys.modules, "mlflow", None)
    report = Report(candidate={"path": "m", "format": None, "sha256": None, "bytes": None}, baseline=None, policy={})
    with pytest.raises(MissingExtraError, match=r"edgeval\[mlflow\]"):
        log_report(report)


# -- examples ---------------------------------------------------------------------------------------------------
def _run_example(name: str, out: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_onnx_pipeline_example(tmp_path):
    pytest.importorskip("onnxruntime.quantization")
    stdout = _run_example("onnx_pipeline.py", tmp_path)
    assert "pruned ONNX, not quantized: verdict BLOCKED" in stdout and "(int8): verdict PASS" in stdout
    assert Report.load(tmp_path / "pruned-int8-onnx" / "model.edgeval-report.json").passed
    assert (tmp_path / "pruned-int8-onnx" / "BLESSED").is_file()


@pytest.mark.tf
def test_tflite_pipeline_example(tmp_path):
    pytest.importorskip("tensorflow_model_optimization")
    stdout = _run_example("tflite_pipeline.py", tmp_path)
    assert "verdicts: callback pass, dense layout blocked, sparse layout pass" in stdout
    assert (tmp_path / "pruned.tflite").is_file() and (tmp_path / "converter" / "sparse_layout.tflite").is_file()
    assert not (tmp_path / "converter" / "dense_layout.tflite").exists()
    assert Report.load(tmp_path / "converter" / "dense_layout.edgeval-report.json").verdict == "blocked"
