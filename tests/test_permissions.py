"""Every file edgeval writes (report, predictions sidecars, HTML page, pruned model with compression.json, export
with .parity.json) gets the mode a plain ``open`` gives under the umask, never the 0600 of a temp file."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from bbq_fixture import FIXTURE_DIR  # noqa: E402

from edgeval.cli import main
from edgeval.schemas import read_side_file

POLICY = "bbq: {limit: 16, bootstrap: 50}\n"


@pytest.fixture(params=[(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)], ids=["umask022", "umask077"])
def umask(request):
    """Set the process umask for one test; yields (file mode, folder mode) expected under it."""
    mask, file_mode, dir_mode = request.param
    old = os.umask(mask)
    try:
        yield file_mode, dir_mode
    finally:
        os.umask(old)


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    return info.value.code


def modes(root: Path) -> dict[str, int]:
    """Permission bits of every file and folder under ``root`` (itself excluded), by relative path."""
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in sorted(root.rglob("*"))}


def assert_modes(root: Path, file_mode: int, dir_mode: int) -> None:
    found = modes(root)
    assert found, f"nothing was written under {root}"
    wrong = {name: oct(mode) for name, mode in found.items()
             if mode != (dir_mode if (root / name).is_dir() else file_mode)}
    assert not wrong, f"expected files {oct(file_mode)}, folders {oct(dir_mode)}: {wrong}"


def test_report_sidecars_and_html_follow_the_umask(umask, tiny_llama_pruned_onnx, tiny_llama_onnx, tmp_path):
    file_mode, dir_mode = umask
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    out = tmp_path / "out"
    out.mkdir()
    report = out / "r.json"
    code = run_cli("check", tiny_llama_pruned_onnx, "--baseline", tiny_llama_onnx, "--validators", "bbq",
                   "--policy", policy, "--bbq-data", FIXTURE_DIR, "--report", report, "-q")
    assert code in (0, 1, 5) and report.is_file()
    assert run_cli("report", report, "--format", "html", "--out", out / "r.html") == 0
    names = set(modes(out))
    assert {"r.json", "r.html"} <= names and any(n.endswith(".jsonl.gz") for n in names), names  # sidecars too
    assert_modes(out, file_mode, dir_mode)


def test_pruned_model_and_export_with_parity_follow_the_umask(umask, tiny_llama_dir, tmp_path):
    file_mode, dir_mode = umask
    pruned = tmp_path / "pruned"
    assert run_cli("prune", tiny_llama_dir, "--method", "magnitude", "--sparsity", "0.5", "--out", pruned) == 0
    assert read_side_file("compression", pruned / "compression.json")["chain"] == ["magnitude"]  # valid vs its schema
    assert_modes(pruned, file_mode, dir_mode)
    exported = tmp_path / "onnx"
    exported.mkdir()
    code = run_cli("export", tiny_llama_dir, "--to", "onnx", "--legacy", "--out", exported / "model.onnx")
    assert code == 0 and read_side_file("parity", exported / "model.onnx.parity.json")["checks"]
    assert_modes(exported, file_mode, dir_mode)


def test_bbq_checkpoint_follows_the_umask(umask, tmp_path, monkeypatch):
    from edgeval.validators.bbq.checkpoint import Checkpoint

    file_mode, _ = umask
    monkeypatch.setenv("EDGEVAL_CACHE_DIR", str(tmp_path))
    book = Checkpoint.open({"model": "m"}, emit=lambda _m: None)
    assert book is not None and book.path.is_file()
    book.append("0", [])
    assert stat.S_IMODE(book.path.stat().st_mode) == file_mode
