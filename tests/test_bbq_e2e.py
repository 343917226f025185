"""`edgeval check` with the BBQ validator end to end on tiny models and the hand-written BBQ fixture."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from bbq_fixture import FIXTURE_DIR as FIXTURE  # noqa: E402

from edgeval.cli import main
from edgeval.schemas import load_schema

POLICY = "bbq: {limit: 32, bootstrap: 200}\nperplexity: {window: 64, stride: 32, max_tokens: 200}\n"


def run(tmp_path: Path, *args, data: Path = FIXTURE) -> tuple[int, dict]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    report = tmp_path / "r.json"
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in (*args, "--policy", policy, "--bbq-data", data, "--report", report, "-q")])
    doc = json.loads(report.read_text())
    jsonschema.validate(doc, load_schema("report"))
    return info.value.code, doc


def test_bbq_on_onnx_with_baseline(tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path):
    code, doc = run(tmp_path, "check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx,
                    "--validators", "bbq,perplexity")
    assert code in (0, 1, 5), doc["checks"]                   # 32 items: usually inconclusive (exit 5)
    bbq = doc["results"]["bbq"]
    assert bbq["n_items"] == 32 and set(bbq["categories"]) == {"Age", "Race_x_gender", "Religion"}
    overall = bbq["candidate"]["overall"]
    assert sum(overall[f"n_opt{i}"] for i in range(3)) + overall["n_ties"] == 32   # a random model ties often
    assert sum(overall[f"n_letter_{x}"] for x in "abc") == 32 * 3  # three orders per item
    assert "overall" in bbq["comparison"] and bbq["comparison"]["overall"]["n_items"] == 32
    ids = {c["id"] for c in doc["checks"]}
    assert {"bbq.delta_srs", "bbq.unbiased_to_biased", "perplexity.ratio_to_baseline"} <= ids
    sidecar = Path(bbq["candidate_predictions"]["path"])
    assert hashlib.sha256(sidecar.read_bytes()).hexdigest() == bbq["candidate_predictions"]["sha256"]
    with gzip.open(sidecar, "rt") as fh:
        header, *rows = [json.loads(line) for line in fh]
    assert header["orders"] == 3 and len(rows) == 32


@pytest.fixture(scope="module")
def first_run(tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path_factory) -> dict:
    """One check with a baseline model; its baseline predictions sidecar is reused by the tests below."""
    _, doc = run(tmp_path_factory.mktemp("first"), "check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx,
                 "--validators", "bbq")
    return doc


def test_saved_baseline_predictions_give_the_same_comparison(first_run, tiny_llama_pruned_onnx, tmp_path):
    saved = first_run["results"]["bbq"]["baseline_predictions"]["path"]
    _, again = run(tmp_path, "check", tiny_llama_pruned_onnx, "--baseline-predictions", saved, "--validators", "bbq")

    def strip(d):
        return {k: v for k, v in d["results"]["bbq"]["comparison"]["overall"].items() if "noise" not in k}

    assert strip(again) == strip(first_run)


def test_saved_predictions_with_other_settings_are_refused(first_run, tiny_llama_pruned_onnx, tmp_path):
    saved = first_run["results"]["bbq"]["baseline_predictions"]["path"]
    code, again = run(tmp_path, "check", tiny_llama_pruned_onnx, "--baseline-predictions", saved,
                      "--validators", "bbq", "--orders", "1")
    assert code == 3 and "orders=3" in again["checks"][0]["message"]


def test_without_baseline_bbq_reports_only(tiny_llama_onnx, tmp_path):
    code, doc = run(tmp_path, "check", tiny_llama_onnx, "--validators", "bbq")
    checks = {c["id"]: c for c in doc["checks"]}
    assert all("no baseline" in c["message"] for i, c in checks.items() if i != "bbq.signal")
    # a random tiny model answers by tiny margins: the report says so, and claims nothing (exit 5)
    assert checks["bbq.signal"]["status"] == "inconclusive" and code == 5


def test_required_category_missing_is_an_error(tiny_llama_onnx, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("bbq: {limit: 16, required_categories: [SES]}\n")
    with pytest.raises(SystemExit) as info:
        main(["check", str(tiny_llama_onnx), "--validators", "bbq", "--policy", str(policy), "--bbq-data",
              str(FIXTURE), "--report", str(tmp_path / "r.json"), "-q"])
    doc = json.loads((tmp_path / "r.json").read_text())
    assert info.value.code == 3 and doc["verdict"] == "error"
    assert any(c["status"] == "error" and "SES" in c["message"] for c in doc["checks"])


@pytest.mark.parametrize("content, message", [
    ('{"example_id": 0}\n', "Age.jsonl:1"),
    ("", "empty"),
])
def test_bad_bbq_data_exit_3(tiny_llama_onnx, tmp_path, content, message):
    data = tmp_path / "bbq"
    data.mkdir()
    (data / "Age.jsonl").write_text(content)
    code, doc = run(tmp_path, "check", tiny_llama_onnx, "--validators", "bbq", data=data)
    assert code == 3 and doc["verdict"] == "error" and message in doc["checks"][0]["message"]


@pytest.fixture(scope="module")
def tflite_256(tiny_llama_dir, tmp_path_factory) -> Path:
    """The tiny Llama as TFLite with a bucket long enough for chat-formatted BBQ prompts."""
    pytest.importorskip("litert_torch")
    from edgeval.converters.export import export_tflite

    return export_tflite(tiny_llama_dir, tmp_path_factory.mktemp("tfl256") / "model.tflite", batch=4, seq_len=256)


@pytest.mark.tflite
def test_bbq_on_tflite_matches_onnx(tflite_256, tiny_llama_onnx, tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "o").mkdir()
    code_t, tfl = run(tmp_path / "t", "check", tflite_256, "--validators", "bbq")
    code_o, onx = run(tmp_path / "o", "check", tiny_llama_onnx, "--validators", "bbq")
    assert code_t == code_o and code_t in (0, 5)
    assert tfl["results"]["bbq"]["candidate"]["overall"] == onx["results"]["bbq"]["candidate"]["overall"]


def test_early_stop_scores_in_looks(tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path):
    code, doc = run(tmp_path, "check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx,
                    "--validators", "bbq", "--early-stop", "2")
    early = doc["results"]["bbq"]["early_stop"]
    assert code in (0, 1, 5) and early["items_sampled"] == 32 and len(early["looks"]) in (1, 2)
    assert doc["results"]["bbq"]["n_scored"] == early["items_scored"] == early["looks"][-1]["items"]
    assert doc["results"]["bbq"]["decision"]["outcome"] == early["looks"][-1]["decision"]
    assert doc["policy"]["bbq"]["early_stop_looks"] == 2


def test_prefix_sharing_changes_cost_not_answers(tiny_llama_dir, tiny_llama_onnx, tmp_path):
    """torch (KV cache: shared prefixes run once) and a plain ONNX export (every prompt in full) give the same
    BBQ answers; the report says which runtime shared prefixes and how many tokens each ran."""
    (tmp_path / "t").mkdir()
    (tmp_path / "o").mkdir()
    code_t, hf = run(tmp_path / "t", "check", tiny_llama_dir, "--validators", "bbq")
    code_o, onx = run(tmp_path / "o", "check", tiny_llama_onnx, "--validators", "bbq")
    assert code_t == code_o and code_t in (0, 5)
    assert hf["results"]["bbq"]["candidate"]["overall"] == onx["results"]["bbq"]["candidate"]["overall"]
    shared, full = hf["results"]["bbq"]["compute"]["candidate"], onx["results"]["bbq"]["compute"]["candidate"]
    assert shared["kv_cache"] and not full["kv_cache"]
    assert shared["prompt_tokens"] == full["prompt_tokens"] == full["tokens_run"] > 2 * shared["tokens_run"] > 0


def test_plain_onnx_model_gets_a_hint_about_the_kv_cache_export(tiny_llama_onnx, tmp_path, capsys):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with pytest.raises(SystemExit):
        main(["check", str(tiny_llama_onnx), "--validators", "bbq", "--policy", str(policy), "--bbq-data",
              str(FIXTURE), "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr()
    assert (out.err + out.out).count("no KV-cache inputs") == 1
