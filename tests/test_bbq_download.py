"""BBQ upstream files: target_loc metadata, the pinned URLs and checksums, and the verified, cached download."""
from __future__ import annotations

import hashlib
import http.server
import re
import shutil
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from bbq_fixture import FIXTURE_DIR as FIXTURES  # noqa: E402

from edgeval.errors import DataError
from edgeval.validators.bbq import data, download

COMMIT = "bea11bd97d79217245b5871acd247b9d6eb24598"
CSV_HEADER = "example_id,question_index,category,target_loc,label_type\n"


# -- target_loc from additional_metadata.csv --------------------------------------------------------------------
def _with_csv(tmp_path: Path, rows: str, where: str = "data") -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(FIXTURES / "Religion.jsonl", data_dir)
    csv_dir = data_dir if where == "data" else tmp_path / "supplemental"
    csv_dir.mkdir(exist_ok=True)
    (csv_dir / "additional_metadata.csv").write_text(CSV_HEADER + rows)
    return data_dir


def test_target_loc_overrides_derivation(tmp_path: Path) -> None:
    rows = "".join(f"{i},3,Religion,{loc},label\n" for i, loc in [(16, 0), (17, 0), (18, 1), (19, 1)])
    rows += "20,4,Religion,,label\n21,4,Religion,NA,label\n0,1,Religion,1,label\n5,1,Other,2,label\n"
    d = data.load_bbq(_with_csv(tmp_path, rows, where="supplemental"))
    items = {i.key: i for i in d.items}
    assert [items[("Religion", i)].biased_idx for i in range(16, 20)] == [0, 0, 1, 1]
    assert items[("Religion", 0)].biased_idx == 1                   # derived would be 0 (the Quaker option)
    assert d.excluded == {"no_biased_answer": 4, "two_biased_answers": 0}   # blank target_loc: derivation
    assert d.target_loc_file == tmp_path / "supplemental" / "additional_metadata.csv"
    assert d.target_loc_used == 5
    assert d.target_loc_disagreements == (("Religion", 0),) + tuple(("Religion", i) for i in range(16, 20))


def test_target_loc_csv_next_to_data(tmp_path: Path) -> None:
    d = data.load_bbq(_with_csv(tmp_path, "2,1,Religion,0,label\n"))
    assert d.target_loc_file == tmp_path / "data" / "additional_metadata.csv" and d.target_loc_used == 1


@pytest.mark.parametrize("rows, message", [
    ("0,1,Religion,7,label\n", r"additional_metadata\.csv:2: target_loc must be 0, 1, 2 or blank, got '7'"),
    ("x,1,Religion,0,label\n", r"additional_metadata\.csv:2: example_id must be an integer"),
    ("0,1,Religion,1,l\n0,1,Religion,0,l\n", r"additional_metadata\.csv:3: conflicting target_loc"),
    ("0,1,Religion,2,label\n", r"Religion\.jsonl:1: target_loc 2 points at the unknown option"),
])
def test_bad_target_loc(tmp_path: Path, rows: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        data.load_bbq(_with_csv(tmp_path, rows))


def test_target_loc_csv_missing_column(tmp_path: Path) -> None:
    data_dir = _with_csv(tmp_path, "")
    (data_dir / "additional_metadata.csv").write_text("category,example_id\nReligion,0\n")
    with pytest.raises(DataError, match=r"additional_metadata\.csv: missing column\(s\): target_loc"):
        data.load_bbq(data_dir)


# -- pins -------------------------------------------------------------------------------------------------------
def test_pins() -> None:
    assert data.UPSTREAM_COMMIT == COMMIT and len(data.CATEGORIES) == 11
    assert set(data.SHA256) == {f"data/{c}.jsonl" for c in data.CATEGORIES} | {"supplemental/additional_metadata.csv"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in data.SHA256.values())
    assert data.raw_url("Age") == f"https://raw.githubusercontent.com/nyu-mll/BBQ/{COMMIT}/data/Age.jsonl"
    assert sum(data.EXPECTED_COUNTS.values()) == 58_492


# -- download against a local server ----------------------------------------------------------------------------
class _Server:
    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:  # noqa: N802
                log.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/bbq"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    upstream = tmp_path / "upstream" / "bbq"
    (upstream / "data").mkdir(parents=True)
    (upstream / "supplemental").mkdir()
    for name in ("Age", "Religion"):
        shutil.copy(FIXTURES / f"{name}.jsonl", upstream / "data")
    (upstream / "supplemental" / "additional_metadata.csv").write_text(CSV_HEADER + "0,1,Age,0,label\n")
    for rel in ("data/Age.jsonl", "data/Religion.jsonl", "supplemental/additional_metadata.csv"):
        monkeypatch.setitem(download.SHA256, rel, hashlib.sha256((upstream / rel).read_bytes()).hexdigest())
    for var in ("EDGEVAL_BBQ_DIR", "EDGEVAL_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    srv = _Server(upstream.parent)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_download_verifies_caches_and_reuses(server: _Server, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    got = data.ensure_bbq(categories=["Age", "Religion"], cache_dir=cache, base_url=server.url)
    root = cache / "bbq" / COMMIT
    assert got == root / "data"
    assert _files(root) == ["data/Age.jsonl", "data/Religion.jsonl", "supplemental/additional_metadata.csv"]
    assert len(server.requests) == 3
    err = capsys.readouterr().err
    assert "downloading BBQ data/Age.jsonl" in err and "sha256 ok" in err
    loaded = data.load_bbq(got)
    assert loaded.categories == ("Age", "Religion") and loaded.target_loc_file == root / "supplemental" / \
        "additional_metadata.csv"
    assert data.ensure_bbq(categories=["Religion", "Age"], cache_dir=cache, base_url=server.url) == got
    assert len(server.requests) == 3                                   # cache reused: no request


def test_progress_callback_and_no_metadata(server: _Server, tmp_path: Path) -> None:
    lines: list[str] = []
    data.ensure_bbq(categories=["Age"], cache_dir=tmp_path / "c", base_url=server.url, metadata=False,
                    progress=lines.append)
    assert server.requests == ["/bbq/data/Age.jsonl"] and len(lines) == 2


def test_checksum_mismatch_leaves_nothing(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(download.SHA256, "data/Age.jsonl", "0" * 64)
    actual = hashlib.sha256((FIXTURES / "Age.jsonl").read_bytes()).hexdigest()
    with pytest.raises(DataError, match=f"sha256 mismatch for BBQ data/Age.jsonl: expected {'0' * 64}, got {actual}"):
        data.ensure_bbq(categories=["Age"], cache_dir=tmp_path / "cache", base_url=server.url, metadata=False)
    assert _files(tmp_path / "cache") == []


def test_http_404_names_the_url(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"HTTP 404 File not found for {server.url}/data/Nationality.jsonl")):
        data.ensure_bbq(categories=["Nationality"], cache_dir=tmp_path / "cache", base_url=server.url)
    assert _files(tmp_path / "cache") == []


def test_unreachable_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "*")
    with pytest.raises(DataError, match="download failed for http://127.0.0.1:9/data/Age.jsonl: .*EDGEVAL_BBQ_DIR"):
        data.ensure_bbq(categories=["Age"], cache_dir=tmp_path, base_url="http://127.0.0.1:9", timeout=5)


def test_corrupt_cache_file_is_downloaded_again(server: _Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    data.ensure_bbq(categories=["Age"], cache_dir=cache, base_url=server.url, metadata=False)
    cached = cache / "bbq" / COMMIT / "data" / "Age.jsonl"
    cached.write_text("tampered\n")
    data.ensure_bbq(categories=["Age"], cache_dir=cache, base_url=server.url, metadata=False)
    assert len(server.requests) == 2 and cached.read_bytes() == (FIXTURES / "Age.jsonl").read_bytes()


def test_env_data_dir_wins(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEVAL_BBQ_DIR", str(FIXTURES))
    assert data.ensure_bbq(categories=["Age"], base_url=server.url) == FIXTURES
    assert data.ensure_bbq(FIXTURES.parent, base_url=server.url) == FIXTURES.parent   # explicit beats env
    assert server.requests == []


def test_explicit_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="BBQ data folder does not exist"):
        data.ensure_bbq(tmp_path / "missing")


def test_cache_dir_from_env(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEVAL_CACHE_DIR", str(tmp_path / "envcache"))
    got = data.ensure_bbq(categories=["Age"], base_url=server.url, metadata=False)
    assert got == tmp_path / "envcache" / "bbq" / COMMIT / "data" and (got / "Age.jsonl").is_file()


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG layout")
def test_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEVAL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert download.bbq_cache_root() == tmp_path / "edgeval" / "bbq" / COMMIT


def test_unknown_category_for_download(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="did you mean 'Sexual_orientation'"):
        data.ensure_bbq(categories=["sexual orientation"], cache_dir=tmp_path)
