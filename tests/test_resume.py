"""Resume after a crash: BBQ predictions are checkpointed chunk by chunk as they are scored; a rerun after a kill
continues from the checkpoint and writes a byte-identical predictions sidecar and the same report."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bbq_fixture import FIXTURE_DIR as FIXTURE  # noqa: E402
from bbq_large import write_large_bbq  # noqa: E402

from edgeval.cli import main
from edgeval.validators.bbq import checkpoint as ck
from edgeval.validators.bbq.types import BBQItem, Prediction

REPO = Path(__file__).resolve().parents[1]
class Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing in edgeval turns it into a report."""


KEY = {"role": "candidate", "model_sha256": "a" * 64, "settings": {"orders": 3}}


def _item(cat: str, eid: int) -> BBQItem:
    return BBQItem(cat, eid, "1", "neg" if eid % 4 < 2 else "nonneg", "ambig" if eid % 2 == 0 else "disambig",
                   f"context {eid // 4}", "q?", ("x", "y", "Unknown"), 2, 2, 0)


def _pred(item: BBQItem, seed: int = 0) -> Prediction:
    rng = random.Random(f"{item.key}{seed}")
    scores = tuple(rng.uniform(-3, 0) for _ in range(3))
    return Prediction.for_item(item, max(range(3), key=scores.__getitem__), scores=scores, margin=rng.random(),
                               order_letters=(0, 1, 2), extra={"order_logprobs": [[rng.random()] * 3] * 3})


ITEMS = [_item(cat, eid) for cat in ("Age", "Religion") for eid in range(200)]


# -- chunks -----------------------------------------------------------------------------------------------------
def test_chunks_are_whole_groups_and_do_not_depend_on_where_a_run_stopped():
    parts = ck.chunks(ITEMS)
    assert [len(p) for p in parts] == [128, 128, 128, 16]
    assert [it for p in parts for it in p] == ITEMS
    groups = [{(it.category, it.example_id // 4) for it in p} for p in parts]
    assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1:])
    assert ck.chunks(ITEMS[:256]) == parts[:2]  # the first chunks are the same whatever follows
    assert ck.chunk_id(parts[0]) != ck.chunk_id(parts[1]) and ck.chunk_id(parts[0]) == ck.chunk_id(list(parts[0]))
    edited = [BBQItem(**{**it.__dict__, "label": 0}) if i == 0 else it for i, it in enumerate(parts[0])]
    assert ck.chunk_id(edited) != ck.chunk_id(parts[0])  # other data, other chunk


# -- the checkpoint file ----------------------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGEVAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "checkpoints" / "bbq"


def _fill(book: ck.Checkpoint, n_chunks: int) -> list[list[BBQItem]]:
    parts = ck.chunks(ITEMS)[:n_chunks]
    for part in parts:
        book.append(ck.chunk_id(part), [_pred(it) for it in part])
    return parts


def test_checkpoint_round_trips_predictions_exactly(cache):
    book = ck.Checkpoint.open(KEY, print)
    parts = _fill(book, 2)
    again = ck.Checkpoint.open(KEY, print)
    for part in parts:
        assert again.get(part, ck.chunk_id(part)) == [_pred(it) for it in part]
    assert again.get(ck.chunks(ITEMS)[2], ck.chunk_id(ck.chunks(ITEMS)[2])) is None
    assert ck.Checkpoint.open({**KEY, "model_sha256": "b" * 64}, print).done == {}  # other model: its own file
    assert len(list(cache.glob("*.ckpt"))) == 2


def test_saved_predictions_of_other_items_are_never_taken_for_a_chunk(cache):
    book = ck.Checkpoint.open(KEY, print)
    first, second = ck.chunks(ITEMS)[:2]
    book.append(ck.chunk_id(first), [_pred(it) for it in second])  # a record under the wrong chunk id
    again = ck.Checkpoint.open(KEY, print)
    assert again.get(first, ck.chunk_id(first)) is None
    calls = []
    out = ck.score_in_chunks(first, lambda c: calls.append(c) or [_pred(it) for it in c], again, "candidate", print)
    assert calls == [first] and out == [_pred(it) for it in first]


@pytest.mark.parametrize("damage", ["torn last line", "half a line", "bad checksum", "garbage tail"])
def test_a_torn_or_damaged_tail_is_dropped_and_the_file_stays_appendable(cache, damage):
    book = ck.Checkpoint.open(KEY, print)
    parts = _fill(book, 3)
    raw = book.path.read_bytes()
    last = raw.rstrip(b"\n").rfind(b"\n") + 1
    damaged = {"torn last line": raw[:-1], "half a line": raw[: last + (len(raw) - last) // 2],
               "bad checksum": raw[:last] + b"0" + raw[last + 1:], "garbage tail": raw + b"\x00\x01 {"}[damage]
    book.path.write_bytes(damaged)
    messages: list[str] = []
    again = ck.Checkpoint.open(KEY, messages.append)
    kept = 3 if damage == "garbage tail" else 2
    assert [again.get(p, ck.chunk_id(p)) is not None for p in parts] == [True] * kept + [False] * (3 - kept)
    assert any("dropped a torn or damaged tail" in m for m in messages)
    assert book.path.read_bytes() == raw[: last if kept == 2 else len(raw)]  # truncated back to whole records
    again.append(ck.chunk_id(parts[2]), [_pred(it) for it in parts[2]])
    third = ck.Checkpoint.open(KEY, print)
    assert all(third.get(p, ck.chunk_id(p)) is not None for p in parts)


def test_a_checkpoint_of_another_key_or_a_broken_header_starts_afresh(cache):
    book = ck.Checkpoint.open(KEY, print)
    _fill(book, 1)
    raw = book.path.read_bytes()
    book.path.write_bytes(raw.replace(b'"a', b'"b', 1))  # header no longer matches its checksum
    assert ck.Checkpoint.open(KEY, print).done == {}
    assert book.path.read_bytes().count(b"\n") == 1  # just the new header


def test_no_resume_discards_and_discard_removes(cache):
    book = ck.Checkpoint.open(KEY, print)
    _fill(book, 2)
    assert len(ck.Checkpoint.open(KEY, print).done) == 2
    fresh = ck.Checkpoint.open(KEY, print, resume=False)
    assert fresh.done == {} and len(ck.Checkpoint.open(KEY, print).done) == 0
    fresh.discard()
    assert not list(cache.glob("*.ckpt"))


def test_an_unwritable_cache_turns_checkpoints_off_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("EDGEVAL_CACHE_DIR", str(blocker))
    messages: list[str] = []
    assert ck.Checkpoint.open(KEY, messages.append) is None
    assert "checkpoints off" in messages[0]
    scored = ck.score_in_chunks(ITEMS[:8], lambda chunk: [_pred(it) for it in chunk], None, "candidate", print)
    assert scored == [_pred(it) for it in ITEMS[:8]]


def test_score_in_chunks_resumes_finished_chunks_only(cache):
    book = ck.Checkpoint.open(KEY, print)
    _fill(book, 2)
    calls: list[int] = []
    messages: list[str] = []

    def score(chunk):
        calls.append(len(chunk))
        return [_pred(it) for it in chunk]

    out = ck.score_in_chunks(ITEMS, score, ck.Checkpoint.open(KEY, print), "candidate", messages.append)
    assert out == [_pred(it) for it in ITEMS] and calls == [128, 16]
    assert "bbq: resuming candidate from checkpoint: 256/400 items already scored" in messages


# -- end to end: a crash in the middle of a check, then the rerun -------------------------------------------------
POLICY = "bbq: {limit: 56, bootstrap: 100}\n"


def _check(tmp: Path, model: Path, data: Path, *extra) -> tuple[int | None, dict | None]:
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in ("check", model, "--validators", "bbq", "--policy", policy, "--bbq-data", data,
                               "--report", tmp / "r.json", "--threads", 1, *extra)])
    return info.value.code, json.loads((tmp / "r.json").read_text())


def comparable(doc: dict, root: Path) -> str:
    """The report without what may differ between an uninterrupted and a resumed run: timing, the date, the cost
    accounting (tokens run, items taken from the checkpoint), and the folder it was written to."""
    doc = json.loads(json.dumps(doc))
    doc.pop("created_at")
    doc["run"].pop("duration_s")
    doc["results"]["bbq"].pop("compute")
    return json.dumps(doc, sort_keys=True).replace(str(root), "<dir>")


@pytest.mark.parametrize("early_stop", [False, True], ids=["plain", "early-stop looks with a baseline"])
def test_interrupted_check_resumes_to_the_same_sidecar_and_report(early_stop, tiny_llama_dir, tiny_llama_onnx,
                                                                  tmp_path, monkeypatch, capsys):
    """In-process: the third scoring call dies (as under kill -9 mid-chunk) after a torn write; the rerun takes
    the two finished chunks from the checkpoint and ends byte-identical to an uninterrupted run. With early stop
    the calls are look 1's candidate chunks, then its baseline chunks: the one that dies is the baseline's."""
    from edgeval.validators.bbq.validator import BBQValidator

    monkeypatch.setattr(ck, "CHUNK_GROUPS", 4)  # 14 groups: chunks of 4 groups (a look of 7 groups: 4 + 3)
    args = ("--baseline", tiny_llama_onnx, "--early-stop", "2") if early_stop else ()
    (tmp_path / "ref").mkdir()
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("EDGEVAL_CACHE_DIR", str(tmp_path / "ref-cache"))
    code, reference = _check(tmp_path / "ref", tiny_llama_dir, FIXTURE, *args)
    monkeypatch.setenv("EDGEVAL_CACHE_DIR", str(tmp_path / "cache"))
    real = BBQValidator._score_items
    calls = []

    def dies_on_third(self, ctx, role, items, settings):
        calls.append(len(items))
        if len(calls) == 3:
            with open(ctx.state("bbq")["checkpoints"][role].path, "ab") as fh:
                fh.write(b"deadbeef {\"chunk\": \"torn")  # a write cut short
            raise Killed
        return real(self, ctx, role, items, settings)

    monkeypatch.setattr(BBQValidator, "_score_items", dies_on_third)
    with pytest.raises(Killed):
        _check(tmp_path / "run", tiny_llama_dir, FIXTURE, *args)
    monkeypatch.setattr(BBQValidator, "_score_items", real)
    capsys.readouterr()
    code_again, resumed = _check(tmp_path / "run", tiny_llama_dir, FIXTURE, *args)
    err = capsys.readouterr().err
    done = sum(calls[:2])
    assert code_again == code and f"bbq: resuming candidate from checkpoint: {done}/{28 if early_stop else 56} " \
        "items already scored" in err
    assert "dropped a torn or damaged tail" in err
    assert resumed["results"]["bbq"]["compute"]["candidate"]["items_from_checkpoint"] == done
    assert reference["results"]["bbq"]["compute"]["candidate"]["items_from_checkpoint"] == 0
    for side in ("candidate", "baseline") if early_stop else ("candidate",):
        sidecar = f"r.bbq-{side}.jsonl.gz"
        assert (tmp_path / "run" / sidecar).read_bytes() == (tmp_path / "ref" / sidecar).read_bytes()
    assert comparable(resumed, tmp_path / "run") == comparable(reference, tmp_path / "ref")
    assert not list((tmp_path / "cache").rglob("*.ckpt"))  # a completed run removes its checkpoints


def test_no_resume_scores_everything_again(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ck, "CHUNK_GROUPS", 4)
    monkeypatch.setenv("EDGEVAL_CACHE_DIR", str(tmp_path / "cache"))
    from edgeval.validators.bbq.validator import BBQValidator

    real = BBQValidator._score_items
    calls = []

    def dies_on_second(self, ctx, role, items, settings):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(self, ctx, role, items, settings)

    monkeypatch.setattr(BBQValidator, "_score_items", dies_on_second)
    with pytest.raises(Killed):  # leaves a checkpoint with one chunk
        _check(tmp_path, tiny_llama_dir, FIXTURE)
    assert len(list((tmp_path / "cache").rglob("*.ckpt"))) == 1
    monkeypatch.setattr(BBQValidator, "_score_items", real)
    capsys.readouterr()
    code, doc = _check(tmp_path, tiny_llama_dir, FIXTURE, "--no-resume")
    assert code in (0, 5) and "resuming" not in capsys.readouterr().err
    assert doc["results"]["bbq"]["compute"]["candidate"]["items_from_checkpoint"] == 0


# -- end to end in a subprocess, killed with SIGKILL ----------------------------------------------------------
def _command(model: Path, data: Path, report: Path, baseline: Path | None) -> list[str]:
    policy = report.parent / "policy.yaml"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("bbq: {limit: 1200, bootstrap: 100}\n")
    cmd = [sys.executable, "-m", "edgeval", "check", str(model), "--validators", "bbq", "--policy", str(policy),
           "--bbq-data", str(data), "--report", str(report), "--threads", "1"]
    return cmd + (["--baseline", str(baseline)] if baseline else [])


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "EDGEVAL_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _chunks_done(cache: Path, role: str) -> int:
    for path in cache.rglob("*.ckpt"):
        lines = path.read_bytes().split(b"\n")
        if f'"role":"{role}"'.encode() in lines[0]:
            return len(lines) - 2  # header, chunks, and what follows the last newline
    return 0


def _kill_after(cmd: list[str], cache: Path, role: str, chunks: int, extra_s: float) -> None:
    """Start the check; SIGKILL it ``extra_s`` seconds after ``role`` has ``chunks`` chunks checkpointed."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while _chunks_done(cache, role) < chunks:
            assert proc.poll() is None, "the check ended before the kill point"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(extra_s)
        assert proc.poll() is None, "the check ended before the kill point"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _finish(cmd: list[str], cache: Path) -> tuple[int, str]:
    done = subprocess.run(cmd, cwd=REPO, env=_env(cache), capture_output=True, text=True, timeout=600)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.returncode, done.stderr


def _kill_and_resume(tmp: Path, model: Path, data: Path, baseline: Path | None, n_items: int, points) -> None:
    ref = tmp / "ref" / "r.json"
    code, _ = _finish(_command(model, data, ref, baseline), tmp / "ref-cache")
    reference = json.loads(ref.read_text())
    assert code in (0, 1, 5) and reference["results"]["bbq"]["n_scored"] == n_items
    for n, (role, chunks, extra_s) in enumerate(points):
        out, cache = tmp / f"run{n}" / "r.json", tmp / f"cache{n}"
        cmd = _command(model, data, out, baseline)
        _kill_after(cmd, cache, role, chunks, extra_s)
        assert not out.exists()
        code_again, err = _finish(cmd, cache)
        resumed = json.loads(out.read_text())
        compute = resumed["results"]["bbq"]["compute"]
        assert code_again == code and compute[role]["items_from_checkpoint"] >= 128 * chunks, (role, chunks)
        assert f"bbq: resuming {role} from checkpoint: " in err
        for side in ("candidate", "baseline") if baseline else ("candidate",):
            name = f"r.bbq-{side}.jsonl.gz"
            assert (out.parent / name).read_bytes() == (ref.parent / name).read_bytes(), (side, role, chunks)
        assert comparable(resumed, out.parent) == comparable(reference, ref.parent)
        assert not list(cache.rglob("*.ckpt"))


@pytest.fixture(scope="module")
def other_llama_dir(tmp_path_factory) -> Path:
    from tinymodels import save_tiny_model

    return save_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama-seed1"), seed=1)


@pytest.mark.slow
def test_kill_9_during_a_1200_item_check_then_rerun(tiny_llama_dir, other_llama_dir, tmp_path):
    """1,200 items, candidate and baseline; SIGKILL at three seeded points (during the candidate's and the
    baseline's scoring, part-way into a chunk); each rerun resumes and ends as the uninterrupted run did."""
    data = write_large_bbq(tmp_path / "bbq")
    rng = random.Random(10)
    points = [("candidate", rng.randint(1, 8), rng.uniform(0, 0.3)), ("candidate", rng.randint(1, 8), 0.0),
              ("baseline", rng.randint(1, 8), rng.uniform(0, 0.3))]
    _kill_and_resume(tmp_path, tiny_llama_dir, data, other_llama_dir, 1200, points)


@pytest.mark.slow
def test_kill_9_during_a_240_item_check_then_rerun(tiny_llama_dir, tmp_path):
    """The same on 240 items (two chunks), candidate only, killed once after the first chunk (~30 s: three
    processes that import torch; the in-process test above is the default suite's variant)."""
    data = write_large_bbq(tmp_path / "bbq", groups_per_category=20)
    _kill_and_resume(tmp_path, tiny_llama_dir, data, None, 240, [("candidate", 1, 0.0)])
