"""edgeval.api.publish: the one publishing step (report -> sinks -> plugins -> blessing, last) of the CLI and the
hooks; prepare() (stale report, sidecars and markers removed at start); the atomic writers."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgeval.api import prepare, publish
from edgeval.report import Check, Report


def passing() -> Report:
    from sample_reports import bare_report

    report = bare_report(checks=(Check("size.bytes", "size", "pass", "bytes", 1, None, 2, "ok"),))
    assert report.verdict == "pass"
    return report


def test_order_report_then_sinks_then_blessing(tmp_path):
    events = []
    path, bless = tmp_path / "r.json", tmp_path / "bless"

    def sink(report, written):
        events.append(("sink", written.is_file(), (bless / "BLESSED").exists(), report.verdict))

    done = publish(passing(), path, bless_dir=bless, sinks={"probe": sink}, progress=events.append)
    # the report exists when the sink runs, the blessing does not yet
    assert done.problems == () and events[0] == ("sink", True, False, "pass")
    assert done.exit_code == 0 and (bless / "BLESSED").is_file() and done.problems == ()
    assert json.loads((bless / "BLESSED").read_text())["report"] == str(path)


def test_a_failing_sink_rewrites_the_report_and_blocks_the_blessing(tmp_path):
    later = []

    def broken(report, written):
        raise RuntimeError("tracking server down")

    done = publish(passing(), tmp_path / "r.json", bless_dir=tmp_path / "b",
                   sinks={"first": broken, "second": lambda r, p: later.append(r.exit_code)})
    doc = json.loads((tmp_path / "r.json").read_text())
    assert done.exit_code == 4 and doc["verdict"] == "error" and doc["exit_code"] == 4
    assert later == [4]  # a later sink sees the failure, not a pass
    assert "the first sink failed" in done.problems[0] and len(done.problems) == 1
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["NOT_BLESSED"]


def test_an_unwritable_report_is_exit_3_for_sinks_and_marker(tmp_path, monkeypatch):
    seen = []

    def refuse(self, path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Report, "write", refuse)
    done = publish(passing(), tmp_path / "r.json", bless_dir=tmp_path / "b",
                   sinks={"probe": lambda r, p: seen.append((r.verdict, r.exit_code, p))})
    assert done.exit_code == 3 and done.path is None and seen == [("error", 3, None)]
    assert "cannot write the report: Permission denied" in done.problems[0]
    assert (tmp_path / "b" / "NOT_BLESSED").is_file() and not (tmp_path / "b" / "BLESSED").exists()


def test_prepare_removes_the_previous_report_sidecars_and_markers_but_keeps_inputs(tmp_path):
    report = tmp_path / "run.json"
    for name in ("run.json", "run.bbq-candidate.jsonl.gz", "run.bbq-baseline.jsonl.gz", "other.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "BLESSED").write_text("x")
    prepare(report, tmp_path / "b", keep=[tmp_path / "run.bbq-baseline.jsonl.gz"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "other.json", "run.bbq-baseline.jsonl.gz"]
    assert list((tmp_path / "b").iterdir()) == []


def test_gate_file_hook_publishes_the_same_way(tiny_llama_onnx, tmp_path):
    from edgeval.hooks.onnxruntime import gate_onnx
    from edgeval.plugins import hookimpl, plugin_manager

    class Broken:
        @hookimpl
        def edgeval_report_ready(self, report, path):
            raise RuntimeError("sink down")

    pm = plugin_manager()
    pm.register(Broken(), name="broken-hook-sink")
    try:
        with pytest.warns(RuntimeWarning, match="sink down"):
            report = gate_onnx(tiny_llama_onnx, tiny_llama_onnx, validators=["size"], bless_dir=tmp_path / "b",
                               report_path=tmp_path / "r.json", on_block="record")
    finally:
        pm.unregister(name="broken-hook-sink")
    assert report.verdict == "error" and report.exit_code == 4
    assert json.loads((tmp_path / "r.json").read_text())["exit_code"] == 4
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["NOT_BLESSED"]


def test_atomic_writers_keep_umask_permissions(tmp_path):
    from edgeval.atomic import atomic_dir, atomic_write_text

    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d") as folder:
            (folder / "f").write_text("y")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750 and (tmp_path / "d" / "f").read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "d"]  # no temp files left


def test_atomic_dir_leaves_the_target_alone_when_the_block_fails(tmp_path):
    from edgeval.atomic import atomic_dir

    target = tmp_path / "out"
    target.mkdir()
    (target / "keep").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as folder:
            (folder / "half").write_text("new")
            raise RuntimeError("crash while writing")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "keep").read_text() == "old"


def test_save_pruned_failure_keeps_the_previous_output(tmp_path, monkeypatch):
    from edgeval.converters.pruning import io

    previous = tmp_path / "pruned"
    previous.mkdir()
    (previous / "compression.json").write_text("{}")

    class Model:
        def save_pretrained(self, folder, safe_serialization=True):
            (Path(folder) / "model.safetensors").write_bytes(b"w")

    def no_tokenizer(source, folder):
        raise OSError("disk full")

    monkeypatch.setattr("edgeval.converters._torch_model.write_tokenizer", no_tokenizer)
    manifest = {"schema": "edgeval.pruning/1", "method": "magnitude", "pattern": "unstructured",  # schema-valid
                "requested_sparsity": 0.5, "measured_sparsity": 0.5, "pruned_params": 0, "pruned_zeros": 0,
                "warnings": [], "layers_included": [], "layers": {}, "edgeval_version": "0"}
    with pytest.raises(OSError):
        io.save_pruned(Model(), tmp_path, io.check_output(previous, overwrite=True), manifest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]
    assert [p.name for p in previous.iterdir()] == ["compression.json"]
