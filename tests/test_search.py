"""`edgeval search` end to end on the tiny Llama: the bisection's answers, the front, the recommendation with its
own passing report, the outputs and their schema, blessing, the plugin hook, the cache, BBQ reuse, failures."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from edgeval.errors import BadInputError, UsageError
from edgeval.plugins import hookimpl
from edgeval.policy import Policy
from edgeval.report import Report

#: parity's max |Δlogit| grows with sparsity on the tiny Llama: a monotone gate that passes low sparsities
POLICY = {"validators": ["size", "parity"],
          "parity": {"mode": "exact", "max_abs_logit_diff": 0.17, "min_top1_agreement": None,
                     "min_letter_agreement": None}}
WANDA = {"wanda": {"n_samples": 4, "seq_len": 32}}
SPARSITY = (0.1, 0.9, 0.1)


class Hook:
    def __init__(self) -> None:
        self.calls: list[tuple[object, str]] = []

    @hookimpl
    def edgeval_search_done(self, result, path):
        self.calls.append((result, path))


def run_search(model, out, **kwargs):
    from edgeval import search

    options = {"methods": ("magnitude", "wanda"), "sparsity": SPARSITY, "settings": WANDA,
               "policy": Policy.from_dict(POLICY), "workers": 1, **kwargs}
    return search(model, out, **options)


@pytest.fixture(scope="module")
def searched(tiny_llama_dir, tmp_path_factory):
    from plugin_helpers import registered_plugin

    hook, root = Hook(), tmp_path_factory.mktemp("search")
    with registered_plugin(hook, "search-hook"):
        result = run_search(tiny_llama_dir, root / "out", bless_dir=root / "bless")
    return result, hook, root


def test_each_method_gets_its_highest_passing_sparsity(searched):
    result, _, _ = searched
    assert result.exit_code == 0
    for method, best in result.highest_passing.items():
        points = {round(p["sparsity"], 6): p for p in result.points if p["axis"] == method}
        assert best is not None and points[best]["verdict"] == "pass"
        above = round(best + SPARSITY[2], 6)
        assert points[above]["verdict"] != "pass"  # the answer is exact: the next grid point was tried, failed
        assert all(p["verdict"] == "pass" for s, p in points.items() if s < best)
        assert all(p["verdict"] != "pass" for s, p in points.items() if s > best)
        assert len(points) <= 4  # ceil(log2(9 + 1)) evaluations of 9 grid points


def test_the_recommendation_is_the_most_compressed_pass_with_its_own_report(searched):
    result, _, root = searched
    best = result.recommended
    passing = [p for p in result.points if p["verdict"] == "pass"]
    assert best["metrics"]["zlib"] == min(p["metrics"]["zlib"] for p in passing)
    path = result.out_dir / best["report"]["path"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == best["report"]["sha256"]
    assert Report.load(path).verdict == "pass"  # the gate's own verdict, not the search's
    marker = json.loads((root / "bless" / "BLESSED").read_text())
    assert marker["report_sha256"] == best["report"]["sha256"] and not (root / "bless" / "NOT_BLESSED").exists()


def test_the_front_holds_the_non_dominated_points(searched):
    result, _, _ = searched
    measured = [p for p in result.points if p["status"] == "done"]

    def vec(p):
        return (p["metrics"]["zlib"], p["metrics"].get("delta_srs"), p["metrics"]["perplexity_ratio"])

    def dominated(p):  # this policy has no BBQ and no perplexity: the objective alone decides
        return any(vec(q)[0] < vec(p)[0] for q in measured)

    assert {p["key"] for p in result.front} == {p["key"] for p in measured if not dominated(p)}
    assert result.front and all(p["on_front"] for p in result.front)


def test_outputs_schema_and_files(searched):
    from edgeval.search.outputs import check_document, load_schema

    result, hook, _ = searched
    doc = json.loads(result.path.read_text())
    check_document(doc, result.path)
    assert load_schema()["properties"]["schema"]["const"] == doc["schema"] == "edgeval.search/1"
    assert len(doc["decisions"]) == len(doc["points"]) and doc["decisions"][0]["step"] == 1
    for point in doc["points"]:
        artifact = result.out_dir / point["artifact"]["path"]
        assert artifact.is_file() and point["status"] == "done"
    md = (result.out_dir / "summary.md").read_text()
    assert "Recommended: **" in md and "| magnitude |" in md
    assert "data:image/png;base64," in (result.out_dir / "search.html").read_text()
    assert (result.out_dir / "recommended-report.html").read_text().startswith("<!doctype html>")
    assert [(r.document["recommended"], p) for r, p in hook.calls] == [(doc["recommended"], str(result.path))]
    bad = {**doc, "points": [{**doc["points"][0], "verdict": "maybe"}]}
    with pytest.raises(Exception, match="does not match its schema"):
        check_document(bad, result.path)


class FailingHook:
    @hookimpl
    def edgeval_search_done(self, result, path):
        raise RuntimeError("the tracking server is down")


def test_a_failing_search_done_plugin_means_exit_4_and_no_blessing(searched, tiny_llama_dir, tmp_path):
    """A consumer of the front that fails is a failed step: the search's files stay, nothing is blessed."""
    from plugin_helpers import registered_plugin

    result, _, _ = searched
    assert result.exit_code == 0  # the same search, cached, passes when every plugin succeeds
    lines: list[str] = []
    with registered_plugin(FailingHook(), "failing-hook"):
        again = run_search(tiny_llama_dir, result.out_dir, bless_dir=tmp_path / "bless", progress=lines.append)
    assert again.exit_code == 4 and again.marker is None
    assert not (tmp_path / "bless" / "BLESSED").exists()
    assert any("failed on search_done" in line for line in lines)
    assert json.loads(again.path.read_text())["exit_code"] == 4


def test_a_rerun_evaluates_nothing_again(searched, tiny_llama_dir):
    result, _, _ = searched
    journal = (result.out_dir / "journal.json").read_bytes()
    lines: list[str] = []
    again = run_search(tiny_llama_dir, result.out_dir, progress=lines.append)
    assert (result.out_dir / "journal.json").read_bytes() == journal
    assert not [line for line in lines if "building and gating" in line]
    assert again.document["front"] == result.document["front"]
    assert again.document["recommended"] == result.document["recommended"]


def test_bbq_scores_the_dense_model_once_and_every_candidate_reuses_it(tiny_llama_dir, tmp_path):
    from bbq_fixture import FIXTURE_DIR

    policy = Policy.from_dict({"validators": ["size", "bbq"],
                               "bbq": {"limit": 12, "bootstrap": 100, "data_dir": str(FIXTURE_DIR)}})
    result = run_search(tiny_llama_dir, tmp_path / "out", methods=("magnitude",), sparsity=(0.3, 0.5, 0.2), settings={},
                        policy=policy, bless_dir=tmp_path / "bless")
    dense = result.document["baseline"]["predictions"]
    assert dense is not None and len(result.points) >= 1
    for point in result.points:
        bbq = Report.load(result.out_dir / point["report"]["path"]).results["bbq"]
        assert bbq["baseline_predictions"]["source"] == "saved"
        assert Path(bbq["baseline_predictions"]["path"]) == result.out_dir / dense["path"]
        assert point["metrics"]["bbq_items_scored"] == 12 and point["metrics"]["delta_srs"] is not None
    assert result.exit_code == 1 and result.recommended is None  # the tiny model's BBQ signal is too weak to pass
    marker = json.loads((tmp_path / "bless" / "NOT_BLESSED").read_text())  # names the most compressed gated point
    most = min(result.points, key=lambda p: p["metrics"]["zlib"])
    assert marker["report_sha256"] == most["report"]["sha256"] and not (tmp_path / "bless" / "BLESSED").exists()


class Broken:
    """A pruning plugin that fails at 50 % and above (magnitude below)."""

    def __init__(self) -> None:
        from edgeval.plugins import registered_compressors

        self.inner = registered_compressors()["magnitude"]
        for name in ("kind", "summary", "Settings", "accepts", "produces"):
            setattr(self, name, getattr(self.inner, name))
        self.name = "broken"

    def apply(self, source, out_dir, settings, ctx):
        from edgeval.errors import ModelError

        if settings.sparsity >= 0.5:
            raise ModelError("broken on purpose")
        return self.inner.apply(source, out_dir, settings, ctx)


class BrokenPlugin:
    def __init__(self) -> None:
        self.compressor = Broken()  # built before registering: it looks magnitude up in the registry

    @hookimpl
    def edgeval_compressors(self):
        return [self.compressor]


def test_a_failed_candidate_is_recorded_and_treated_as_unknown(tiny_llama_dir, tmp_path):
    from plugin_helpers import registered_plugin

    with registered_plugin(BrokenPlugin(), "broken-compressor"):
        result = run_search(tiny_llama_dir, tmp_path / "out", methods=("broken",), settings={},
                            sparsity=(0.3, 0.7, 0.1), bless_dir=tmp_path / "bless")
    failed = [p for p in result.points if p["status"] == "failed"]
    assert failed and all(p["verdict"] == "error" and "broken on purpose" in p["error"] for p in failed)
    assert all(p["sparsity"] >= 0.5 for p in failed) and all(p["sparsity"] < 0.5 for p in result.points
                                                            if p["status"] == "done")
    answer = result.document["methods"][0]
    assert answer["highest_passing_sparsity"] == 0.4 and answer["unresolved"]  # 0.5 errored: a lower bound
    assert result.recommended["sparsity"] == 0.4 and (tmp_path / "bless" / "BLESSED").is_file()


def test_bad_search_spaces_are_one_line_errors(tiny_llama_dir, tmp_path):
    from edgeval.search.space import build_space

    with pytest.raises(UsageError, match="empty search space"):
        build_space(["magnitude"], (0.5, 0.4, 0.1))
    with pytest.raises(UsageError, match="empty search space"):
        build_space([" ", ""])
    with pytest.raises(UsageError, match="int8 cannot take a sparsity"):
        build_space(["int8"], (0.1, 0.5, 0.1))
    with pytest.raises(BadInputError, match="unknown key 'int8.bits'"):
        build_space(["int8"], None, {"int8": {"bits": 4}})
    with pytest.raises(BadInputError, match="unknown compression method 'magnitud'.*magnitude"):
        build_space(["magnitud"])
    space = build_space(["magnitude", "wanda+int8", "int8"], (0.2, 0.3, 0.05))
    assert [(a.name, a.grid) for a in space.axes] == [("magnitude", (0.2, 0.25, 0.3)),
                                                      ("wanda+int8", (0.2, 0.25, 0.3)), ("int8", (None,))]
    assert space.axes[1].methods(2, {}) == [("wanda", {"sparsity": 0.3}), ("int8", {})]


def test_patterns_and_bit_widths_are_searched_as_methods_with_their_own_settings():
    from edgeval.search.space import build_space, split_methods

    names = split_methods("magnitude, magnitude[pattern=2:4],wanda[pattern=4:8,seed=1]+int8,int4[block_size=64]")
    assert names == ["magnitude", "magnitude[pattern=2:4]", "wanda[pattern=4:8,seed=1]+int8", "int4[block_size=64]"]
    axes = {a.name: a for a in build_space(names, (0.2, 0.3, 0.1)).axes}
    assert axes["magnitude"].grid == (0.2, 0.3) and axes["magnitude"].prunes
    assert axes["magnitude[pattern=2:4]"].grid == (None,) and not axes["magnitude[pattern=2:4]"].prunes  # implied
    assert axes["magnitude[pattern=2:4]"].methods(0, {"magnitude": {"seed": 2}}) == [
        ("magnitude", {"seed": 2, "pattern": "2:4"})]  # the step's own settings over the compressor's fixed ones
    assert axes["wanda[pattern=4:8,seed=1]+int8"].methods(0, {}) == [("wanda", {"pattern": "4:8", "seed": 1}),
                                                                     ("int8", {})]
    assert axes["int4[block_size=64]"].methods(0, {}) == [("int4", {"block_size": 64})]
    with pytest.raises(UsageError, match="cannot take a sparsity"):
        build_space(["magnitude[pattern=2:4]"], (0.2, 0.3, 0.1))
    for bad, message in (("magnitude[pattern]", "not KEY=VALUE"), ("magnitude[sparsity=0.5]", "searched axis"),
                         ("magnitude[pattern=2:4", "NAME\\[KEY=VALUE"), ("[seed=1]", "NAME\\[KEY=VALUE")):
        with pytest.raises(UsageError, match=message):
            build_space([bad])
    with pytest.raises(BadInputError, match="unknown key 'magnitude.nope'"):
        build_space(["magnitude[nope=1]"])


def test_an_n_m_pattern_is_one_gated_point(tiny_llama_dir, tmp_path):
    result = run_search(tiny_llama_dir, tmp_path / "out", methods=("magnitude[pattern=2:4]",), settings={},
                        sparsity=None, policy=Policy.from_dict({"validators": ["size"]}))
    (point,) = result.points
    assert point["axis"] == "magnitude[pattern=2:4]" and point["sparsity"] is None
    assert point["methods"] == [["magnitude", {"pattern": "2:4"}]] and point["verdict"] == "pass"
    assert point["metrics"]["weight_sparsity"] > 0.1  # half of every block linear (embeddings untouched)
    assert result.document["screen"][0] == {**result.document["screen"][0], "applied": False,
                                            "reason": "a single point: nothing to order"}


def test_an_objective_the_dense_check_cannot_measure_is_bad_input(tiny_llama_dir, tmp_path):
    from edgeval.api import check
    from edgeval.search.baseline import Baseline
    from edgeval.search.runner import _objective_measured
    from edgeval.search.space import build_space

    report = check(tiny_llama_dir, None, Policy.from_dict({"validators": ["size"]}))
    base = Baseline(tiny_llama_dir, "0" * 64, tmp_path / "dense.json", report, None, None)
    _objective_measured(base, build_space(["magnitude"], objective="zlib"))
    with pytest.raises(BadInputError, match="objective 'latency'.*cannot be measured"):
        _objective_measured(base, build_space(["magnitude"], objective="latency"))


@pytest.mark.slow  # a subprocess that imports torch, plus the resumed search: 1-4 min on two shared cores
def test_kill_9_then_resume_gives_the_same_front_without_evaluating_twice(searched, tiny_llama_dir, tmp_path):
    """A real ``edgeval search`` process killed with SIGKILL after its first journaled candidate; the rerun
    evaluates only what the journal lacks and ends with the uninterrupted search's points and front."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    result, _, _ = searched
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "edgeval", "search", str(tiny_llama_dir), "--methods", "magnitude,wanda",
           "--sparsity", "0.1:0.9", "--resolution", "0.1", "--method-set", "wanda.n_samples=4", "--method-set",
           "wanda.seq_len=32", "--policy", str(tmp_path / "policy.yaml"), "--workers", "1", "--out", str(out), "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.json"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not (
            journal.is_file() and json.loads(journal.read_text())["records"]):
        time.sleep(0.2)
    assert proc.poll() is None, "the search finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["key"]: r for r in json.loads(journal.read_text())["records"]}
    assert 1 <= len(before) < len(result.points)
    lines: list[str] = []
    resumed = run_search(tiny_llama_dir, out, progress=lines.append)
    rerun = [line for line in lines if "building and gating" in line]
    assert len(rerun) == len(result.points) - len(before)  # each missing candidate once, none of the done ones
    after = {r["key"]: r for r in json.loads(journal.read_text())["records"]}
    assert all(after[k] == r for k, r in before.items())
    assert sorted(after) == sorted(p["key"] for p in result.points)
    assert resumed.document["front"] == result.document["front"]
    assert resumed.document["recommended"] == result.document["recommended"]


def test_quantizers_are_points_and_chains_are_searched(tiny_llama_dir, tmp_path):
    """int8 is one point; magnitude+int8 prunes, exports and quantizes at each sparsity; under a size-only gate
    every candidate passes and the most compressed one (by zlib bytes) is recommended."""
    policy = Policy.from_dict({"validators": ["size"]})
    result = run_search(tiny_llama_dir, tmp_path / "out", methods=("int8", "magnitude+int8"), settings={},
                        sparsity=(0.5, 0.8, 0.3), policy=policy)
    by_axis = {(p["axis"], p["sparsity"]): p for p in result.points}
    assert set(by_axis) == {("int8", None), ("magnitude+int8", 0.5), ("magnitude+int8", 0.8)}
    assert by_axis[("magnitude+int8", 0.8)]["methods"] == [["magnitude", {"sparsity": 0.8}], ["int8", {}]]
    assert all(p["verdict"] == "pass" for p in result.points)
    zlib = {k: p["metrics"]["zlib"] for k, p in by_axis.items()}
    assert result.recommended["metrics"]["zlib"] == min(zlib.values())
    assert result.recommended["axis"] == "magnitude+int8"
    assert result.document["methods"][0]["highest_passing_key"] == by_axis[("int8", None)]["key"]


def test_a_chain_whose_quantizer_alone_fails_is_settled_without_gating_it(tiny_llama_dir, tmp_path):
    """int8 alone fails a strict exact parity gate, so magnitude+int8 can pass at no sparsity (monotone):
    bisection gates none of its candidates and says why; the grid still gates them all (and they fail)."""
    strict = Policy.from_dict({**POLICY, "parity": {**POLICY["parity"], "max_abs_logit_diff": 0.001}})
    result = run_search(tiny_llama_dir, tmp_path / "out", methods=("int8", "magnitude+int8"), settings={},
                        sparsity=(0.2, 0.6, 0.2), policy=strict)
    int8 = next(p for p in result.points if p["axis"] == "int8")
    assert int8["verdict"] != "pass"
    assert not [p for p in result.points if p["axis"] == "magnitude+int8"]
    chain = next(m for m in result.document["methods"] if m["axis"] == "magnitude+int8")
    assert chain["settled_by"] == "int8" and chain["highest_passing_sparsity"] is None
    assert "int8 alone failed" in (result.out_dir / "summary.md").read_text()
    grid = run_search(tiny_llama_dir, tmp_path / "grid", methods=("int8", "magnitude+int8"), settings={},
                      sparsity=(0.2, 0.6, 0.2), strategy="grid", policy=strict)
    chain_points = [p for p in grid.points if p["axis"] == "magnitude+int8"]
    assert len(chain_points) == 3 and all(p["verdict"] != "pass" for p in chain_points)  # the rule's premise held


def test_a_tampered_journal_cannot_make_a_failed_candidate_the_recommendation(searched, tiny_llama_dir, tmp_path):
    """A journal edited by hand (a failed point turned into a pass that names another candidate's passing report)
    is not trusted: the point is gated again and the recommendation keeps its own passing report."""
    import shutil

    result, _, _ = searched
    out = tmp_path / "out"
    shutil.copytree(result.out_dir, out)
    journal = out / "journal.json"
    doc = json.loads(journal.read_text())
    best = result.recommended
    victim = next(r for r in doc["records"] if r["axis"] == best["axis"] and r["verdict"] != "pass"
                  and r["sparsity"] > best["sparsity"])
    victim.update(outcome="pass", verdict="pass", status="done", report=dict(best["report"]),
                  metrics={**victim["metrics"], "zlib": 1})
    journal.write_text(json.dumps(doc))
    again = run_search(tiny_llama_dir, out, bless_dir=tmp_path / "bless")
    chosen = again.recommended
    assert chosen["key"] == best["key"]
    assert Report.load(out / chosen["report"]["path"]).candidate["sha256"] == chosen["artifact"]["sha256"]
    redone = next(p for p in again.points if p["key"] == victim["key"])
    assert redone["verdict"] != "pass"
