"""``edgeval compress`` and :mod:`edgeval.converters.chain`: planning (impossible chains refused before any work),
running (one compression.json, no partial output), and the command line."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeval.converters import chain
from edgeval.converters.compressor import StepContext, StepResult, carry_tokenizer
from edgeval.converters.manifest import prune_record, read_manifest
from edgeval.errors import BadInputError, PolicyError, UsageError
from edgeval.schemas import side_file_problem
from edgeval.settings import Settings


@dataclass(frozen=True)
class _NoSettings(Settings):
    pass


class FakeOnnxQuantizer:
    """A quantizer that takes an ONNX file and copies it (enough to test the planner and the runner)."""

    name, kind, summary, Settings = "fake-q", "quantize", "copies", _NoSettings
    accepts, produces = ("onnx",), "onnx"

    def __init__(self, fail: bool = False):
        self.fail = fail

    def refuse(self, source: Path) -> str | None:
        return "already quantized" if "quantized" in source.name else None

    def apply(self, source: Path, out_dir: Path, settings, ctx: StepContext) -> StepResult:
        if self.fail:
            raise BadInputError("fake-q failed on purpose")
        (out_dir / source.name).write_bytes(source.read_bytes())
        carry_tokenizer(source, out_dir)
        return StepResult(out_dir / source.name, measured={"copied": True}, warnings=["a warning"])


@pytest.fixture
def with_fake(monkeypatch: pytest.MonkeyPatch):
    """Register FakeOnnxQuantizer beside the built-ins (returns the registry it patched in)."""
    from edgeval import plugins

    real = plugins.registered_compressors

    def patched(disabled=(), fail=False):
        return {**real(disabled), "fake-q": FakeOnnxQuantizer(fail=with_fake.fail)}

    with_fake.fail = False
    monkeypatch.setattr(plugins, "registered_compressors", patched)
    return with_fake


# -- planning ----------------------------------------------------------------------------------------------
def test_plan_inserts_an_export_where_a_step_needs_one(with_fake) -> None:
    steps = chain.plan("hf", [("wanda", {"sparsity": 0.5}), ("fake-q", {})])
    assert [(s.method, s.kind, s.input_format, s.output_format) for s in steps] == [
        ("wanda", "prune", "hf", "hf"), ("export-onnx", "export", "hf", "onnx"), ("fake-q", "quantize", "onnx", "onnx")]
    assert steps[0].settings.sparsity == 0.5 and steps[0].settings.n_samples == 128
    assert [s.method for s in chain.plan("gguf", [("magnitude", {"sparsity": 0.2})], to="onnx")] == [
        "magnitude", "export-onnx"]
    assert [s.method for s in chain.plan("onnx", [("fake-q", {})])] == ["fake-q"]


@pytest.mark.parametrize(("fmt", "methods", "to", "needle"), [
    ("hf", [("wandx", {})], None, "unknown compression method 'wandx' (did you mean 'wanda'?"),
    ("hf", [("fake-q", {}), ("magnitude", {"sparsity": 0.5})], None, "pruning after quantization is not possible"),
    ("onnx", [("fake-q", {}), ("fake-q", {})], None, "a model is quantized once"),
    ("onnx", [("magnitude", {"sparsity": 0.5})], None, "takes a hf or a gguf model, but the chain has an onnx"),
    ("tflite", [("fake-q", {})], None, "fake-q takes an onnx model, but the chain has a tflite"),
    ("hf", [("fake-q", {})], "tflite", "--to tflite, but the chain ends with an onnx model (made by fake-q)"),
    ("hf", [("magnitude", {"sparsity": 0.3, "pattern": "2:4"})], None, "pattern 2:4 implies sparsity 0.5"),
])
def test_impossible_chains_are_refused_in_one_line(with_fake, fmt, methods, to, needle) -> None:
    with pytest.raises(BadInputError) as err:
        chain.plan(fmt, methods, to)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_plan_refuses_bad_settings_and_empty_chains(with_fake) -> None:
    with pytest.raises(PolicyError, match="'wanda.n_samples'"):
        chain.plan("hf", [("wanda", {"sparsity": 0.5, "n_samples": 0})])
    with pytest.raises(PolicyError, match="'magnitude.sparsity'"):
        chain.plan("hf", [("magnitude", {"sparsity": 1.0})])
    with pytest.raises(PolicyError, match="bogus"):
        chain.plan("hf", [("magnitude", {"sparsity": 0.5, "bogus": 1})])
    with pytest.raises(UsageError, match="nothing to do"):
        chain.plan("hf", [])
    with pytest.raises(UsageError, match="ONNX export options"):
        chain.plan("hf", [("magnitude", {"sparsity": 0.5})], "tflite", chain.ExportOptions(kv_cache=True))


# -- running -----------------------------------------------------------------------------------------------
def test_prune_export_quantize_chain_writes_one_manifest(with_fake, tiny_llama_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines: list[str] = []
    result = chain.compress(tiny_llama_dir, out, [("magnitude", {"sparsity": 0.5}), ("fake-q", {})],
                            export=chain.ExportOptions(legacy=True), progress=lines.append)
    assert result.path == out.resolve() / "model.onnx" and result.path.is_file()
    assert {"model.onnx", "tokenizer.json", "compression.json"} <= {p.name for p in out.iterdir()}
    doc = read_manifest(out)
    assert side_file_problem("compression", doc) is None and doc == result.manifest
    assert doc["chain"] == ["magnitude", "export-onnx", "fake-q"] and doc["warnings"] == ["a warning"]
    prune, export, quant = doc["steps"]
    assert prune["measured"]["measured_sparsity"] == pytest.approx(0.5) and len(prune["layers"]) == 14
    assert export["measured"]["parity"]["letter_agreement"] == 1.0 and export["settings"]["legacy"] is True
    assert quant["measured"] == {"copied": True} and doc["output"]["sha256"] and doc["source"]["format"] == "hf"
    assert any("[3/3] fake-q" in line for line in lines)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no work or staging folder left behind


def test_a_failing_step_leaves_no_output(with_fake, tiny_llama_dir: Path, tmp_path: Path) -> None:
    with_fake.fail = True
    with pytest.raises(BadInputError, match="failed on purpose"):
        chain.compress(tiny_llama_dir, tmp_path / "out", [("magnitude", {"sparsity": 0.5}), ("fake-q", {})],
                       export=chain.ExportOptions(legacy=True, parity=False))
    assert list(tmp_path.iterdir()) == []


def test_refused_input_fails_before_any_work(with_fake, tiny_llama_onnx: Path, tmp_path: Path) -> None:
    quantized = tmp_path / "in" / "model.quantized.onnx"
    quantized.parent.mkdir()
    quantized.write_bytes(tiny_llama_onnx.read_bytes())
    with pytest.raises(BadInputError, match="fake-q cannot compress this model: already quantized"):
        chain.compress(quantized, tmp_path / "out", [("fake-q", {})])
    assert not (tmp_path / "out").exists()


def test_overwrite_only_replaces_an_edgeval_output(tiny_llama_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an edgeval output"):
        chain.compress(tiny_llama_dir, other, [("magnitude", {"sparsity": 0.3})], overwrite=True)
    out = tmp_path / "out"
    chain.compress(tiny_llama_dir, out, [("magnitude", {"sparsity": 0.3})])
    with pytest.raises(UsageError, match="exists and is not empty"):
        chain.compress(tiny_llama_dir, out, [("random", {"sparsity": 0.3})])
    chain.compress(tiny_llama_dir, out, [("random", {"sparsity": 0.3})], overwrite=True)
    assert prune_record(read_manifest(out))["method"] == "random" and (other / "keep.txt").read_text() == "mine"


def test_legacy_pruning_json_is_still_read(tmp_path: Path) -> None:
    from test_side_files import PRUNING

    (tmp_path / "pruning.json").write_text(json.dumps(PRUNING))
    doc = read_manifest(tmp_path)
    assert doc["legacy"] is True and doc["chain"] == [PRUNING["method"]]
    assert prune_record(doc)["measured_sparsity"] == PRUNING["measured_sparsity"]
    assert side_file_problem("compression", doc) is None
    (tmp_path / "pruning.json").write_text("{}")
    with pytest.raises(BadInputError, match="pruning.json"):
        read_manifest(tmp_path)


# -- the command line --------------------------------------------------------------------------------------
def run_cli(cwd: Path, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeval", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_cli_compress_and_its_bad_input(tiny_llama_dir: Path, tmp_path: Path) -> None:
    ok = run_cli(tmp_path, "compress", tiny_llama_dir, "--method", "magnitude", "--sparsity", "0.5", "--to", "onnx",
                 "--legacy", "--out", tmp_path / "out")
    assert ok.returncode == 0, ok.stderr
    assert "compressed (magnitude -> export-onnx)" in ok.stdout and "measured sparsity 0.5000" in ok.stdout
    cases = [(("--method", "wandx"), 3, "unknown compression method 'wandx'"),
             (("--method", "magnitude", "--sparsity", "0.5", "--set", "int4.block_size=64"), 2,
              "'int4' is not a method of this chain"),
             (("--method", "magnitude", "--sparsity", "2"), 3, "'magnitude.sparsity'"),
             (("--method", "magnitude", "--calibration", "x.txt"), 2, "--calibration does not apply"),
             (("--method", "magnitude", "--sparsity", "0.5", "--set", "magnitude.seed"), 2, "METHOD.KEY=VALUE")]
    for args, code, needle in cases:
        proc = run_cli(tmp_path, "compress", tiny_llama_dir, *args, "--out", tmp_path / "bad")
        assert proc.returncode == code and needle in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not (tmp_path / "bad").exists()


def test_cli_lists_compressors_with_their_settings(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, "compressors", "-v")
    assert proc.returncode == 0, proc.stderr
    assert "wanda.n_samples = 128" in proc.stdout and proc.stdout.splitlines()[0].startswith("random")


def test_cli_quantizer_bad_input_leaves_nothing(tiny_llama_onnx: Path, tmp_path: Path) -> None:
    """A missing or empty calibration file, or quantizing an already-quantized model: exit 3, one line, no --out."""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    quantized = tmp_path / "int8"
    first = run_cli(tmp_path, "compress", tiny_llama_onnx, "--method", "int8", "--out", quantized)
    assert first.returncode == 0, first.stderr
    cases = [(("--method", "int8-static", "--calibration", tmp_path / "missing.txt"), "missing.txt"),
             (("--method", "int8-static", "--calibration", empty), "empty.txt"),
             (("--method", "int4"), "already")]
    for args, needle in cases:
        source = quantized / "model.onnx" if needle == "already" else tiny_llama_onnx
        proc = run_cli(tmp_path, "compress", source, *args, "--out", tmp_path / "bad")
        assert proc.returncode == 3 and needle in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_out_never_replaces_or_nests_in_the_source(tiny_llama_dir: Path, tmp_path: Path, where: str) -> None:
    """--overwrite of a previous output must not delete the model being compressed (--out equal to the source, or a
    folder holding it), and --out inside an HF source would change the source's identity while reading it."""
    pruned = tmp_path / "run" / "pruned"
    chain.compress(tiny_llama_dir, pruned, [("magnitude", {"sparsity": 0.3})])
    (tmp_path / "run" / "compression.json").write_text((pruned / "compression.json").read_text())
    out = {"same": pruned, "parent": tmp_path / "run", "inside": pruned / "again"}[where]
    before = sorted(p.name for p in pruned.iterdir())
    with pytest.raises(UsageError, match="source"):
        chain.compress(pruned, out, [("random", {"sparsity": 0.5})], overwrite=True)
    assert sorted(p.name for p in pruned.iterdir()) == before
    assert prune_record(read_manifest(pruned))["method"] == "magnitude"


class _Outside(FakeOnnxQuantizer):
    """A plugin quantizer that returns a path outside its out_dir (here: its own input)."""

    def apply(self, source: Path, out_dir: Path, settings, ctx: StepContext) -> StepResult:
        return StepResult(source)


def test_a_step_returning_a_path_outside_its_folder_is_one_line(monkeypatch, tiny_llama_onnx: Path,
                                                                   tmp_path: Path) -> None:
    from edgeval import plugins

    real = plugins.registered_compressors
    monkeypatch.setattr(plugins, "registered_compressors", lambda disabled=(): {**real(disabled), "fake-q": _Outside()})
    src = tmp_path / "src" / "model.onnx"
    src.parent.mkdir()
    src.write_bytes(tiny_llama_onnx.read_bytes())
    with pytest.raises(BadInputError, match="did not return the artifact it wrote"):
        chain.compress(src, tmp_path / "out", [("fake-q", {})])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"] and [p.name for p in src.parent.iterdir()] == \
        ["model.onnx"]


@pytest.mark.parametrize("fmt, methods, to, options, needle", [
    ("hf", [("tflite-int8", {})], None, {"seq_len": 64}, "--set tflite-int8.seq_len"),
    ("hf", [("magnitude", {"sparsity": 0.5})], "onnx", {"batch": 2}, "--batch"),
])
def test_export_options_no_step_uses_are_refused(fmt, methods, to, options, needle) -> None:
    """--seq-len/--batch configure a TFLite export step; with none in the chain they were silently dropped (a
    tflite-int8 run with --seq-len 64 got the 256-token bucket). The ONNX flags may go with any chain."""
    with pytest.raises(UsageError, match=re.escape(needle)):
        chain.plan(fmt, methods, to, chain.ExportOptions(**options))
    assert chain.plan("onnx", [("int8", {})], None, chain.ExportOptions(legacy=True, kv_cache=True))


def test_a_quantized_gguf_is_not_quantized_again(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """A Q8_0 GGUF is dequantized on load; exporting and quantizing it again would stack two quantizations under a
    manifest that names one. Pruning it stays possible (no quantize step)."""
    pytest.importorskip("gguf")
    from tiny_gguf import write_tiny_llama_gguf

    q8 = write_tiny_llama_gguf(tiny_llama_dir, tmp_path / "tiny.q8_0.gguf", qtype="Q8_0")
    with pytest.raises(BadInputError, match="Q8_0"):
        chain.compress(q8, tmp_path / "out", [("int8", {})], export=chain.ExportOptions(legacy=True, parity=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.q8_0.gguf"]


def test_set_on_a_method_named_twice_in_the_chain_is_refused() -> None:
    """--set magnitude.sparsity=... with magnitude twice in the chain went to the last one only, silently."""
    import click

    from edgeval.cli.compress_cmd import ChainSpec

    spec = ChainSpec("magnitude", ("magnitude",), None, None, None, (("magnitude.sparsity", 0.5),))
    with pytest.raises(click.UsageError, match="twice"):
        spec.methods()
    once = ChainSpec("magnitude", ("int8",), None, None, None, (("magnitude.sparsity", 0.5),))
    assert once.methods() == [("magnitude", {"sparsity": 0.5}), ("int8", {})]


def test_an_unwritable_out_is_one_usage_line(tiny_llama_onnx: Path, tmp_path: Path) -> None:
    """--out under a folder that cannot be written was an internal error (FileNotFoundError/PermissionError)."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="cannot write"):
        chain.compress(tiny_llama_onnx, blocker / "out", [("int8", {})])


class _Raises(FakeOnnxQuantizer):
    """A plugin quantizer with a bug: it writes half its output, then raises a plain exception."""

    def apply(self, source: Path, out_dir: Path, settings, ctx: StepContext) -> StepResult:
        (out_dir / "half.onnx").write_bytes(b"half")
        raise KeyError("boom")


def test_a_step_raising_a_plain_exception_is_one_line_naming_it(monkeypatch, tiny_llama_onnx: Path,
                                                                  tmp_path: Path) -> None:
    from edgeval import plugins
    from edgeval.errors import ModelError

    real = plugins.registered_compressors
    monkeypatch.setattr(plugins, "registered_compressors", lambda disabled=(): {**real(disabled), "fake-q": _Raises()})
    with pytest.raises(ModelError, match=r"compressor 'fake-q' \(test_compress\) failed: KeyError: 'boom'"):
        chain.compress(tiny_llama_onnx, tmp_path / "out", [("fake-q", {})])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe\x00bin"])
def test_wanda_calibration_is_checked_by_the_planner(content, tmp_path: Path) -> None:
    """A missing, empty or binary Wanda calibration file fails at planning (before the model is loaded), as
    int8-static's does; it used to fail only once the pruner was reading it."""
    from edgeval.errors import DataError

    calib = tmp_path / "calib.txt"
    if content is not None:
        calib.write_bytes(content)
    with pytest.raises(DataError, match="calib.txt"):
        chain.plan("hf", [("wanda", {"sparsity": 0.5, "calibration": str(calib)})])


def test_manifest_names_the_identity_edgeval_measures(tiny_llama_dir: Path, tiny_llama_onnx: Path,
                                                      tmp_path: Path) -> None:
    """The output's sha256 and bytes in compression.json are what load_artifact reads from the output (an HF
    folder's own compression.json is not part of the model), for a folder and for a file."""
    from edgeval.artifacts import load_artifact

    for source, methods, out in ((tiny_llama_dir, [("magnitude", {"sparsity": 0.3})], tmp_path / "hf"),
                                 (tiny_llama_onnx, [("int8", {})], tmp_path / "onnx")):
        result = chain.compress(source, out, methods)
        measured = load_artifact(result.path)
        assert (result.manifest["output"]["sha256"], result.manifest["output"]["bytes"]) == (measured.sha256,
                                                                                            measured.bytes)
