"""Plugins: built-ins come through the plugin manager; a third-party plugin installed with pip is found through the
``edgeval`` entry-point group, runs its validator and its report_ready hook, and can be turned off.

The demo plugin (tests/plugin_pkg) is installed with pip into a private ``--target`` directory that only the
subprocesses of these tests put on their path: the (possibly shared) virtual environment is never changed, so
other test sessions do not see ``demo_plugin``, and nothing has to be uninstalled. Entry points are read when
edgeval starts, hence subprocesses.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from plugin_helpers import env_with, pip_install_target

from edgeval import builtin
from edgeval.plugins import AUTOLOAD_ENV, BUILTIN, ENTRY_POINT_GROUP, plugin_manager, registered_validators

PLUGIN_SRC = Path(__file__).parent / "plugin_pkg"
MARKER_ENV = "EDGEVAL_DEMO_MARKER"


# -- built-ins, in process -------------------------------------------------------------------------------------
def test_builtins_come_through_the_plugin_manager() -> None:
    pm = plugin_manager()
    assert pm.get_plugin(BUILTIN) is builtin
    impls = {impl.plugin_name for impl in pm.hook.edgeval_validators.get_hookimpls()}
    assert BUILTIN in impls
    validators = registered_validators()
    assert {"size", "latency", "bbq", "perplexity"} <= set(validators)
    assert ("onnx", "onnxruntime") in {(spec.format, spec.name) for specs in pm.hook.edgeval_runtimes()
                                       for spec in specs}


def test_builtin_is_declared_as_an_entry_point() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps.get(BUILTIN) == "edgeval.builtin"


def test_builtins_load_with_autoload_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    pm = plugin_manager()
    assert [name for name, _ in pm.list_name_plugin()] == [BUILTIN]
    assert "size" in registered_validators()


# -- a pip-installed plugin, in subprocesses ---------------------------------------------------------------
@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/plugin_pkg installed by pip into a private directory (a copy is built, so the source tree stays clean)."""
    site = pip_install_target(PLUGIN_SRC, tmp_path_factory.mktemp("demo_plugin"))
    assert any(site.glob("edgeval_demo_plugin-*.dist-info/entry_points.txt"))
    return site


def edgeval(site: Path, cwd: Path, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m edgeval ARGS`` with the plugin's directory on the path (autoload on unless ``env`` says)."""
    full = env_with(site, drop=(MARKER_ENV,), **(env or {}))
    return subprocess.run([sys.executable, "-m", "edgeval", *map(str, args)], capture_output=True, text=True,
                          env=full, cwd=cwd, timeout=300)


def test_validators_lists_the_plugin(plugin_site: Path, tmp_path: Path) -> None:
    proc = edgeval(plugin_site, tmp_path, "validators")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert "demo_plugin" in names and "size" in names and "bbq" in names


def test_check_runs_the_plugin_and_fires_report_ready(plugin_site: Path, tiny_llama_onnx: Path,
                                                      tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("demo_plugin: {greeting: hello}\n")  # a plugin's section is top-level, like a built-in's
    report, marker = tmp_path / "report.json", tmp_path / "marker.json"
    proc = edgeval(plugin_site, tmp_path, "check", tiny_llama_onnx, "--validators", "size,demo_plugin",
                   "--policy", policy, "--report", report, "-q", env={MARKER_ENV: str(marker)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(report.read_text())
    check = next(c for c in doc["checks"] if c["id"] == "demo_plugin.ok")
    assert check["status"] == "pass" and check["validator"] == "demo_plugin"
    assert doc["results"]["demo_plugin"] == {"format": "onnx", "settings": {"greeting": "hello", "repeat": 1},
                                             "answer": 42}
    assert doc["policy"]["demo_plugin"] == {"greeting": "hello", "repeat": 1}  # as applied, defaults filled in
    assert {c["validator"] for c in doc["checks"]} == {"size", "demo_plugin"}
    fired = json.loads(marker.read_text())
    assert fired["verdict"] == "pass" and Path(fired["path"]) == report and "demo_plugin.ok" in fired["checks"]


@pytest.mark.parametrize("how", ["--disable-plugin", AUTOLOAD_ENV])
def test_plugin_can_be_turned_off(how: str, plugin_site: Path, tiny_llama_onnx: Path, tmp_path: Path) -> None:
    flag, env = (["--disable-plugin", "demo"], None) if how == "--disable-plugin" else ([], {AUTOLOAD_ENV: "1"})
    listed = edgeval(plugin_site, tmp_path, "validators", *flag, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "demo_plugin" not in listed.stdout and "size" in listed.stdout and "bbq" in listed.stdout
    marker = tmp_path / "marker.json"
    env = {**(env or {}), MARKER_ENV: str(marker)}
    unknown = edgeval(plugin_site, tmp_path, "check", tiny_llama_onnx, "--validators", "size,demo_plugin", *flag,
                      "--report", tmp_path / "r1.json", "-q", env=env)
    assert unknown.returncode == 2, unknown.stderr
    assert "unknown validator 'demo_plugin'" in unknown.stderr and not (tmp_path / "r1.json").exists()
    builtins_only = edgeval(plugin_site, tmp_path, "check", tiny_llama_onnx, "--validators", "size", *flag,
                            "--set", "size.max_bytes=1000000000", "--report", tmp_path / "r2.json", "-q", env=env)
    assert builtins_only.returncode == 0, builtins_only.stderr
    assert json.loads((tmp_path / "r2.json").read_text())["verdict"] == "pass"
    assert not marker.exists()  # the plugin's report_ready hook did not run either


def test_plugin_policy_section_is_checked_by_its_settings(plugin_site: Path, tiny_llama_onnx: Path,
                                                          tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("demo_plugin: {repeat: 7}\n")
    proc = edgeval(plugin_site, tmp_path, "policy", "--check", policy)
    assert proc.returncode == 3 and "'demo_plugin.repeat': 7 is greater than the maximum of 3" in proc.stderr
    schema = json.loads(edgeval(plugin_site, tmp_path, "schema", "policy").stdout)
    assert schema["properties"]["demo_plugin"]["properties"]["repeat"]["maximum"] == 3
    policy.write_text("plugins:\n  demo_plugin: {greeting: hello}\n")  # the legacy table: read, with a warning
    proc = edgeval(plugin_site, tmp_path, "policy", "--check", policy, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["demo_plugin"] == {"greeting": "hello", "repeat": 1}
    assert "'plugins.demo_plugin' is deprecated" in proc.stderr


# -- a plugin that fails to import --------------------------------------------------------------------------
def _broken_plugin_site(root: Path) -> Path:
    """A directory with an installed distribution whose ``edgeval`` entry point raises on import."""
    site = root / "broken_site"
    info = site / "edgeval_broken_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edgeval-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[edgeval]\nbroken = edgeval_broken_plugin\n")
    (site / "edgeval_broken_plugin.py").write_text("raise ImportError('No module named torchvision')\n")
    return site


def test_a_plugin_that_fails_to_import_names_itself(tiny_llama_onnx: Path, tmp_path: Path) -> None:
    site = _broken_plugin_site(tmp_path)
    proc = edgeval(site, tmp_path, "validators")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "plugin 'broken' (edgeval_broken_plugin) failed to import" in line
    assert "No module named torchvision" in line and "--disable-plugin broken" in line
    check = edgeval(site, tmp_path, "check", tiny_llama_onnx, "--validators", "size", "--report",
                    tmp_path / "r.json", "-q")
    assert check.returncode == 2 and "plugin 'broken'" in check.stderr and "Traceback" not in check.stderr
    skipped = edgeval(site, tmp_path, "check", tiny_llama_onnx, "--validators", "size", "--disable-plugin", "broken",
                      "--set", "size.max_bytes=1000000000", "--report", tmp_path / "r.json", "-q")
    assert skipped.returncode == 0, skipped.stderr


# -- a plugin compressor ---------------------------------------------------------------------------------
def test_plugin_compressor_is_listed_chained_and_recorded(plugin_site: Path, tiny_llama_dir: Path,
                                                          tmp_path: Path) -> None:
    listed = edgeval(plugin_site, tmp_path, "compressors")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines() if line.strip()}
    assert rows["demo-fp16"] == "quantize" and rows["wanda"] == "prune"
    out = tmp_path / "out"
    proc = edgeval(plugin_site, tmp_path, "compress", tiny_llama_dir, "--method", "magnitude", "--sparsity", "0.5",
                   "--then", "demo-fp16", "--set", "demo-fp16.skip_embeddings=true", "--out", out)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "compression.json").read_text())
    assert doc["chain"] == ["magnitude", "demo-fp16"]
    step = doc["steps"][1]
    assert step["kind"] == "quantize" and step["settings"] == {"skip_embeddings": True}
    assert step["measured"]["values_changed"] > 0 and doc["output"]["format"] == "hf"
    bad = edgeval(plugin_site, tmp_path, "compress", tiny_llama_dir, "--method", "demo-fp16", "--set",
                  "demo-fp16.skip_embeddings=7", "--out", tmp_path / "o2")
    assert bad.returncode == 3 and "demo-fp16.skip_embeddings" in bad.stderr and not (tmp_path / "o2").exists()
    off = edgeval(plugin_site, tmp_path, "compress", tiny_llama_dir, "--method", "demo-fp16", "--disable-plugin",
                  "demo", "--out", tmp_path / "o3")
    assert off.returncode == 3 and "unknown compression method 'demo-fp16'" in off.stderr


# -- a plugin's runtimes and formats ---------------------------------------------------------------------------
RUNTIME_LOG_ENV = "EDGEVAL_DEMO_RUNTIME_LOG"


def _latency_run(plugin_site: Path, tmp_path: Path, model: Path, name: str, *flags: object):
    """``edgeval check MODEL --validators latency FLAGS``: (process, report or None, lines of the runtime log)."""
    log, report = tmp_path / f"{name}.log", tmp_path / f"{name}.json"
    proc = edgeval(plugin_site, tmp_path, "check", model, "--validators", "latency", "--set", "latency.runs=3",
                   "--set", "latency.warmup=0", *flags, "--report", report, "-q", env={RUNTIME_LOG_ENV: str(log)})
    doc = json.loads(report.read_text()) if report.exists() else None
    return proc, doc, log.read_text().splitlines() if log.exists() else []


def test_a_plugin_runtime_for_onnx_is_chosen_over_the_builtin(plugin_site: Path, tiny_llama_onnx: Path,
                                                             tmp_path: Path) -> None:
    proc, doc, log = _latency_run(plugin_site, tmp_path, tiny_llama_onnx, "plugin")
    assert doc is not None and doc["verdict"] != "error", proc.stderr  # latency without limits: inconclusive
    assert doc["run"]["runtimes"]["candidate"]["runtime"] == "demo-onnx"
    assert doc["run"]["runtimes"]["candidate"]["plugin"] == "demo"
    assert doc["results"]["latency"]["runtime"]["runtime"] == "demo-onnx"
    assert log and all(line.startswith("demo-onnx ") for line in log)  # its forward really ran


@pytest.mark.parametrize("flags", [("--runtime", "onnxruntime"), ("--disable-plugin", "demo")])
def test_the_builtin_runs_when_chosen_or_the_plugin_is_disabled(flags: tuple[str, str], plugin_site: Path,
                                                                tiny_llama_onnx: Path, tmp_path: Path) -> None:
    proc, doc, log = _latency_run(plugin_site, tmp_path, tiny_llama_onnx, "builtin", *flags)
    assert doc is not None, proc.stderr
    assert doc["run"]["runtimes"]["candidate"] == {**doc["run"]["runtimes"]["candidate"], "runtime": "onnxruntime",
                                                   "plugin": "builtin"}
    assert log == []  # the plugin's runtime never ran


def _bigram(folder: Path, tokenizer_dir: Path, seed: int) -> Path:
    """A ``.bigram`` model over the tiny tokenizer's vocabulary, tokenizer beside it."""
    folder.mkdir()
    shutil.copy(tokenizer_dir / "tokenizer.json", folder / "tokenizer.json")
    vocab = max(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"].values()) + 1
    table = np.random.default_rng(seed).normal(size=(vocab, vocab)).astype(np.float32)
    with (folder / "m.bigram").open("wb") as fh:
        np.save(fh, table, allow_pickle=False)
    return folder / "m.bigram"


def test_a_plugin_adds_a_format_with_its_runtime(plugin_site: Path, tiny_llama_onnx: Path, tmp_path: Path) -> None:
    model = _bigram(tmp_path / "cand", tiny_llama_onnx.parent, seed=1)
    base = _bigram(tmp_path / "base", tiny_llama_onnx.parent, seed=1)
    listed = edgeval(plugin_site, tmp_path, "runtimes")
    assert listed.returncode == 0 and "bigram" in listed.stdout and "demo-onnx" in listed.stdout, listed.stderr
    report, log = tmp_path / "r.json", tmp_path / "log"
    proc = edgeval(plugin_site, tmp_path, "check", model, "--baseline", base, "--validators", "perplexity,latency",
                   "--set", "latency.runs=3", "--set", "latency.max_ratio_to_baseline=null", "--report", report,
                   "-q", env={RUNTIME_LOG_ENV: str(log)})
    doc = json.loads(report.read_text())
    assert doc["candidate"]["format"] == "bigram" and doc["verdict"] == "pass", proc.stderr  # same table twice
    assert {r["runtime"] for r in doc["run"]["runtimes"].values()} == {"bigram"}
    assert doc["results"]["perplexity"]["candidate"]["perplexity"] > 1
    assert any(line.startswith("bigram ") for line in log.read_text().splitlines())
    off = edgeval(plugin_site, tmp_path, "check", model, "--validators", "latency", "--disable-plugin", "demo",
                  "--report", tmp_path / "off.json", "-q")
    assert off.returncode == 3 and "unknown model format '.bigram'" in off.stderr, off.stderr
