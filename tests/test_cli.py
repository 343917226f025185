"""`edgeval check` end to end on tiny ONNX models: pass, blocked and error reports, exit codes, bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from edgeval.cli import main
from edgeval.report import Report
from edgeval.schemas import load_schema

FAST = "latency: {runs: 5, warmup: 1, seq_len: 16, max_ratio_to_baseline: 5.0}\n" \
       "perplexity: {window: 64, stride: 32, max_tokens: 200, max_ratio_to_baseline: 100.0}\n"


def run_cli(*args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.fixture
def policy(tmp_path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(FAST)
    return path


def checked(path: Path) -> dict:
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, load_schema("report"))
    return doc


def test_pass_report(tiny_llama_pruned_onnx, tiny_llama_onnx, policy, tmp_path, capsys):
    report = tmp_path / "r.json"
    code, out, _ = run_cli("check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx, "--policy", policy,
                           "--validators", "size,latency,perplexity", "--report", report, capsys=capsys)
    doc = checked(report)
    assert code == 0 and doc["verdict"] == "pass" and doc["exit_code"] == 0, out
    assert doc["candidate"]["format"] == "onnx" and len(doc["candidate"]["sha256"]) == 64
    assert 0.1 < doc["results"]["size"]["weight_sparsity"] < 0.5  # the embedding (untouched) dominates
    assert doc["results"]["size"]["bytes"] == doc["results"]["size"]["baseline_bytes"]  # pruning saved nothing
    assert {c["validator"] for c in doc["checks"]} == {"size", "latency", "perplexity"}
    assert "PASS" in out and "size.ratio_to_baseline" in out


def test_blocked_report(tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text(FAST + "size: {max_bytes: 1000}\n")
    report = tmp_path / "r.json"
    code, out, _ = run_cli("check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx, "--policy", policy,
                           "--validators", "size", "--report", report, capsys=capsys)
    doc = checked(report)
    assert code == 1 and doc["verdict"] == "blocked"
    assert [c["id"] for c in doc["checks"] if c["status"] == "fail"] == ["size.bytes"]
    assert "BLOCKED" in out


def test_missing_tokenizer_is_an_error_report(tiny_llama_onnx, policy, tmp_path, capsys):
    lonely = tmp_path / "alone" / "model.onnx"
    lonely.parent.mkdir()
    shutil.copy(tiny_llama_onnx, lonely)
    report = tmp_path / "r.json"
    code, out, _ = run_cli("check", lonely, "--policy", policy, "--validators", "latency", "--report", report,
                           capsys=capsys)
    doc = checked(report)
    assert code == 3 and doc["verdict"] == "error" and doc["exit_code"] == 3
    assert "no tokenizer.json beside the model" in doc["checks"][0]["message"]


@pytest.mark.parametrize("content, message", [
    (b"\x08\x07garbage that is not an onnx protobuf\xff\xff", "not a readable ONNX model"),
    (None, "no such file"),
])
def test_bad_model_file_exit_3_with_report(tmp_path, capsys, content, message):
    model = tmp_path / "m.onnx"
    if content is not None:
        model.write_bytes(content)
    report = tmp_path / "r.json"
    code, _, err = run_cli("check", model, "--validators", "size", "--report", report, capsys=capsys)
    doc = checked(report)
    assert code == 3 and doc["verdict"] == "error" and message in doc["errors"][0]["message"]
    assert doc["checks"] == [] and str(model) in doc["errors"][0]["message"]


def test_truncated_onnx(tiny_llama_onnx, tmp_path, capsys):
    data = tiny_llama_onnx.read_bytes()
    model = tmp_path / "model.onnx"
    model.write_bytes(data[: len(data) // 2])
    for f in tiny_llama_onnx.parent.glob("tokenizer*"):
        shutil.copy(f, tmp_path)
    code, _, _ = run_cli("check", model, "--validators", "size,latency", "--report", tmp_path / "r.json",
                         capsys=capsys)
    assert code == 3 and checked(tmp_path / "r.json")["verdict"] == "error"


def test_policy_typo_names_the_key(tiny_llama_onnx, tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("latency:\n  run: 3\n")
    code, out, _ = run_cli("check", tiny_llama_onnx, "--policy", policy, "--validators", "size",
                           "--report", tmp_path / "r.json", capsys=capsys)
    doc = checked(tmp_path / "r.json")
    assert code == 3 and "unknown key 'latency.run' (did you mean 'runs'?)" in doc["errors"][0]["message"]


def test_unknown_validator_is_a_usage_error(tiny_llama_onnx, tmp_path, capsys):
    code, _, err = run_cli("check", tiny_llama_onnx, "--validators", "sise", "--report", tmp_path / "r.json",
                           capsys=capsys)
    assert code == 2 and "did you mean 'size'" in err and not (tmp_path / "r.json").exists()


def test_unknown_option_is_a_usage_error(capsys):
    code, _, err = run_cli("check", "x.onnx", "--frobnicate", capsys=capsys)
    assert code == 2 and "--frobnicate" in err


def test_crashing_validator_gives_exit_4_and_a_report(tiny_llama_onnx, tmp_path, capsys, monkeypatch):
    import edgeval.plugins as plugins

    class Boom:
        name, summary = "boom", "always crashes"

        def run(self, ctx, settings):
            raise ZeroDivisionError("planted bug")

    real = plugins.registered_validators
    monkeypatch.setattr(plugins, "registered_validators", lambda disabled=(): {**real(disabled), "boom": Boom()})
    code, _, _ = run_cli("check", tiny_llama_onnx, "--validators", "size,boom", "--report", tmp_path / "r.json",
                         capsys=capsys)
    doc = checked(tmp_path / "r.json")
    assert code == 4 and doc["verdict"] == "error"
    boom = [c for c in doc["checks"] if c["validator"] == "boom"][0]
    assert boom["error_kind"] == "internal" and "planted bug" in boom["message"]
    assert any(c["validator"] == "size" and c["status"] == "pass" for c in doc["checks"])  # others still ran


def test_unwritable_report_path_never_exits_0(tiny_llama_onnx, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli("check", tiny_llama_onnx, "--validators", "size", "--report", blocker / "r.json",
                           capsys=capsys)
    assert code == 3 and "cannot write the report" in err


def test_schema_and_policy_commands(capsys):
    code, out, _ = run_cli("schema", "report", capsys=capsys)
    assert code == 0 and json.loads(out) == load_schema("report")
    code, out, _ = run_cli("policy", "--default", capsys=capsys)
    from edgeval.policy import DEFAULTS

    assert code == 0 and yaml.safe_load(out) == DEFAULTS


def test_validators_command_lists_builtins(capsys):
    code, out, _ = run_cli("validators", capsys=capsys)
    assert code == 0 and all(name in out for name in ("size", "latency", "bbq", "perplexity", "parity"))


def test_help_documents_exit_codes(capsys):
    code, out, _ = run_cli("--help", capsys=capsys)
    assert code == 0 and "3  bad input" in out and "1  blocked" in out


def test_no_traceback_in_a_real_process(tmp_path):
    garbage = tmp_path / "g.tflite"
    garbage.write_bytes(b"garbage!" * 4)
    proc = subprocess.run([sys.executable, "-m", "edgeval", "check", str(garbage), "--validators", "size",
                           "--report", str(tmp_path / "r.json"), "-q"], capture_output=True, text=True)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert Report.load(tmp_path / "r.json").verdict == "error"


def test_bless_dir_markers(tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path, capsys):
    bless = tmp_path / "bless"
    bless.mkdir()
    (bless / "BLESSED").write_text("stale")
    garbage = tmp_path / "g.onnx"
    garbage.write_bytes(b"nope")
    code, _, _ = run_cli("check", garbage, "--validators", "size", "--report", tmp_path / "r.json",
                         "--bless-dir", bless, capsys=capsys)
    assert code == 3 and sorted(p.name for p in bless.iterdir()) == ["NOT_BLESSED"]
    code, _, _ = run_cli("check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx, "--validators", "size",
                         "--report", tmp_path / "r.json", "--bless-dir", bless, capsys=capsys)
    marker = json.loads((bless / "BLESSED").read_text())
    assert code == 0 and sorted(p.name for p in bless.iterdir()) == ["BLESSED"]
    assert marker["verdict"] == "pass" and marker["report"] == str(tmp_path / "r.json")
