"""Cache keys that must not outlive the code: a search's cached artifacts, evaluations, dense export and screen
forecasts are keyed by edgeval's source, package and plugin versions (``environment.build_fingerprint``), so a
development build whose compressor or validator changed without a version bump never answers from the cache."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeval import environment


def test_the_source_digest_follows_code_and_data_and_ignores_compiled_caches(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "sub" / "s.json").write_text("{}\n")
    first = environment.source_digest(tmp_path / "pkg")
    (tmp_path / "pkg" / "sub" / "a.cpython-311.pyc").write_bytes(b"\0compiled")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.opt-1.pyc").write_bytes(b"\0compiled")
    assert environment.source_digest(tmp_path / "pkg") == first
    (tmp_path / "pkg" / "perplexity.txt").write_text("the text a shipped validator scores\n")  # data changes results
    assert environment.source_digest(tmp_path / "pkg") != first
    (tmp_path / "pkg" / "perplexity.txt").unlink()
    assert environment.source_digest(tmp_path / "pkg") == first
    (tmp_path / "pkg" / "sub" / "s.json").write_text('{"changed": 1}\n')
    assert environment.source_digest(tmp_path / "pkg") != first
    (tmp_path / "pkg" / "sub" / "s.json").write_text("{}\n")
    (tmp_path / "pkg" / "sub" / "s.json").rename(tmp_path / "pkg" / "s.json")  # same bytes, another file
    assert environment.source_digest(tmp_path / "pkg") != first


def test_the_fingerprint_covers_edgevals_own_source_packages_and_plugins():
    found = environment.build_fingerprint()
    assert found["source"] == environment.source_digest(Path(environment.__file__).resolve().parent)
    assert found["packages"] == environment.package_versions()
    assert any(entry.startswith("builtin=edgeval==") for entry in found["plugins"])


@pytest.fixture
def other_code(monkeypatch):
    """A build whose code differs from this one's (as after an edit without a version bump)."""
    def switch():
        monkeypatch.setattr(environment, "build_fingerprint", lambda: {"source": "0" * 64, "packages": {},
                                                                       "plugins": []})
    return switch


def test_search_keys_change_with_the_code(other_code):
    from edgeval.search.candidate import keys

    args = ("5" * 64, [("magnitude", {"sparsity": 0.5})], {"legacy": True, "kv_cache": True}, {"seed": 0})
    evaluation, artifact = keys(*args)
    assert keys(*args) == (evaluation, artifact)  # stable within one build
    other_code()
    changed_evaluation, changed_artifact = keys(*args)
    assert changed_artifact != artifact and changed_evaluation != evaluation


def test_the_dense_exports_folder_changes_with_the_code(other_code, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from edgeval.converters import export as export_module
    from edgeval.search.baseline import dense_model

    written: list[Path] = []

    def fake_export(source, target, **_):  # records where the dense model would be written
        written.append(Path(target).parent)
        Path(target).write_bytes(b"onnx")

    monkeypatch.setattr(export_module, "export_onnx", fake_export)
    source = SimpleNamespace(format="hf", sha256="7" * 64, path=tmp_path / "model")
    settings = {"legacy": True, "kv_cache": True, "next_token_output": True}
    first = dense_model(source, tmp_path / "out", settings, say=lambda _: None)
    other_code()
    second = dense_model(source, tmp_path / "out", settings, say=lambda _: None)
    assert first.parent != second.parent and len(written) == 2


def test_the_dense_checks_cached_report_is_keyed_by_the_code(other_code, tmp_path, monkeypatch):
    from edgeval import api, artifacts
    from edgeval.policy import Policy
    from edgeval.search import baseline

    model = tmp_path / "dense.onnx"
    model.write_bytes(b"not read: the check is replaced below")
    paths: list[Path] = []

    def stop_at_prepare(path, *_, **__):  # the cache path is computed before the check starts
        paths.append(Path(path))
        raise RuntimeError("stop here")

    monkeypatch.setattr(api, "prepare", stop_at_prepare)
    monkeypatch.setattr(artifacts, "load_artifact", lambda _: type("A", (), {"sha256": "9" * 64})())
    for _ in range(2):
        with pytest.raises(RuntimeError, match="stop here"):
            baseline.score_baseline(model, Policy.from_dict({"validators": ["size"]}), tmp_path / "out", None,
                                    {"disabled": []}, say=lambda _: None)
        other_code()
    assert len(paths) == 2 and paths[0] != paths[1]
