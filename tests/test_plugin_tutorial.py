"""docs/plugins.md is true: its tutorial's files, installed as they are written, give a working plugin in the
number of lines the page claims (under 60), and the tutorial's own tests pass against a tiny model."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_helpers import env_with, pip_install_target

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
BLOCK = re.compile(r"```(toml|python)\n# (\S+)\n(.*?)```", re.S)


def tutorial_files() -> dict[str, str]:
    """``{path: text}`` of the doc's code blocks that open with a ``# path`` line."""
    return {path: body for _lang, path, body in BLOCK.findall(DOC.read_text(encoding="utf-8"))}


def test_the_tutorial_is_under_60_lines_as_claimed():
    files = tutorial_files()
    assert set(files) == {"pyproject.toml", "edgeval_drift/__init__.py", "tests/test_drift.py"}
    lines = sum(1 for body in files.values() for line in body.splitlines() if line.strip())
    claimed = int(re.search(r"(\d+) lines of code in all", DOC.read_text(encoding="utf-8")).group(1))
    assert lines == claimed and lines < 60


@pytest.fixture(scope="module")
def tutorial_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source folder, pip --target site) of the tutorial's plugin, built from the doc."""
    src = tmp_path_factory.mktemp("drift") / "edgeval-drift"
    for path, body in tutorial_files().items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(body, encoding="utf-8")
    return src, pip_install_target(src, src.parent)


def test_the_tutorial_plugin_passes_its_own_tests(tutorial_package, tiny_llama_onnx: Path):
    src, site = tutorial_package
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(src),
                           str(src / "tests" / "test_drift.py")], capture_output=True, text=True, timeout=300,
                          cwd=tiny_llama_onnx.parent, env=env_with(site))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout


def test_the_tutorial_policy_section_is_checked(tutorial_package, tmp_path: Path):
    _src, site = tutorial_package
    policy = tmp_path / "edgeval.yaml"
    policy.write_text("validators: [size, drift]\ndrift:\n  max_mean_abs_dif: 0.3\n")
    proc = subprocess.run([sys.executable, "-m", "edgeval", "policy", "--check", str(policy)], capture_output=True,
                          text=True, timeout=300, env=env_with(site))
    assert proc.returncode == 3
    assert "unknown key 'drift.max_mean_abs_dif' (did you mean 'max_mean_abs_diff'?)" in proc.stderr
