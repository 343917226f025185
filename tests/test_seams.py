"""The joins between the parts (issue 12): typed, declared validator inputs checked before a run; policy settings
from the command line (``--set`` and its aliases); exits only in ``cli.main``; one publishing step; renderers and
sinks that know no validator by name."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import registered_plugin

from edgeval.api import CheckOptions, outputs_for
from edgeval.cli import main
from edgeval.cli.options import parse_value
from edgeval.plugins import hookimpl
from edgeval.policy import Policy
from edgeval.render import render
from edgeval.report import Check, Report
from edgeval.validators.base import Outcome, RunContext

PACKAGE = Path(__file__).resolve().parents[1] / "edgeval"


def run_cli(tmp_path: Path, capsys, *args: Any) -> tuple[int, dict | None, str]:
    report = tmp_path / "r.json"
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in (*args, "--report", report, "-q")])
    err = capsys.readouterr().err
    return info.value.code, json.loads(report.read_text()) if report.exists() else None, err


# -- typed options and declared inputs --------------------------------------------------------------------------
def test_run_context_side_files_and_inputs(tmp_path):
    ctx = RunContext(None, None, Policy(), outputs=outputs_for(tmp_path / "out" / "gate.report.json"),
                     inputs={"bbq.baseline_predictions": tmp_path / "b.gz"})
    assert ctx.side_file(".bbq-candidate.jsonl.gz") == tmp_path / "out" / "gate.report.bbq-candidate.jsonl.gz"
    assert ctx.input("bbq", "baseline_predictions") == tmp_path / "b.gz" and ctx.input("bbq", "other") is None
    assert RunContext(None, None, Policy()).side_file(".x") is None
    assert ctx.state("bbq") is ctx.state("bbq") and ctx.state("bbq") is not ctx.state("size")
    assert not hasattr(CheckOptions(), "extra") and not hasattr(ctx, "options")


@pytest.mark.parametrize("args, expected", [
    (("--input", "bbq.baseline_predictoins={file}", "--validators", "bbq"),
     "unknown input 'bbq.baseline_predictoins' (did you mean 'bbq.baseline_predictions'?"),
    (("--input", "size.anything={file}", "--validators", "size"), "unknown input 'size.anything'"),
    (("--baseline-predictions", "{missing}", "--validators", "bbq"),
     "{missing}: input 'bbq.baseline_predictions': file not found"),
    (("--input", "bbq.baseline_predictions={dir}", "--validators", "bbq"), "not a file"),
    (("--baseline-predictions", "{file}", "--validators", "size"),
     "input 'bbq.baseline_predictions' is for validator 'bbq', which this run does not include"),
], ids=["misspelt", "undeclared", "missing file", "a folder", "validator not run"])
def test_bad_declared_input_is_exit_3_before_the_run(args, expected, tiny_llama_onnx, tmp_path, capsys):
    given = tmp_path / "saved.jsonl.gz"
    given.write_bytes(b"not read")
    names = {"file": given, "missing": tmp_path / "nowhere.gz", "dir": tmp_path}
    args = [a.format(**names) for a in args]
    code, doc, err = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, *args)
    expected = expected.format(**names)
    assert code == 3 and doc["verdict"] == "error" and doc["checks"] == [], doc and doc["checks"]
    assert [e["source"] for e in doc["errors"]] == ["inputs"] and expected in doc["errors"][0]["message"]
    assert err.strip().splitlines() == [f"edgeval: error: {doc['errors'][0]['message']}"]


def test_input_option_is_the_same_as_the_alias(tiny_llama_onnx, tmp_path, capsys):
    missing = tmp_path / "gone.gz"
    _, by_alias, _ = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "bbq",
                             "--baseline-predictions", missing)
    _, by_input, _ = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "bbq",
                             "--input", f"bbq.baseline_predictions={missing}")
    assert by_alias["errors"] == by_input["errors"] and "not found" in by_input["errors"][0]["message"]


# -- --set and its aliases ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("600", 600), ("1e-3", 0.001), ("0.05", 0.05), ("null", None), ("", None),
                                         ("true", True), ("[Age, Race]", ["Age", "Race"]), ('["Age"]', ["Age"]),
                                         ("letter", "letter"), ("data/bbq", "data/bbq"), ("{oops", "{oops")])
def test_set_values_are_read_as_json_or_yaml(text, value):
    assert parse_value(text) == value


def test_set_changes_the_applied_policy(tiny_llama_onnx, tmp_path, capsys):
    code, doc, _ = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size",
                           "--set", "size.max_bytes=1000", "--set", "bbq.limit=7", "--set", "bbq.categories=[Age]")
    assert doc["policy"]["size"]["max_bytes"] == 1000 and doc["policy"]["bbq"]["limit"] == 7
    assert doc["policy"]["bbq"]["categories"] == ["Age"]
    assert code == 1 and {c["id"]: c["status"] for c in doc["checks"]}["size.bytes"] == "fail"  # the gate used it


def test_aliases_are_the_same_as_set(tiny_llama_onnx, tmp_path, capsys):
    data = tmp_path / "bbq-data"
    _, by_alias, _ = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size", "--bbq-limit", "9",
                             "--orders", "1", "--bbq-mode", "loglik", "--early-stop", "3", "--bbq-data", data)
    _, by_set, _ = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size", "--set", "bbq.limit=9",
                           "--set", "bbq.orders=1", "--set", "bbq.mode=loglik", "--set", "bbq.early_stop_looks=3",
                           "--set", f"bbq.data_dir={data}")
    assert by_alias["policy"] == by_set["policy"]
    assert by_set["policy"]["bbq"] | {"limit": 9, "orders": 1, "mode": "loglik", "early_stop_looks": 3,
                                      "data_dir": str(data)} == by_set["policy"]["bbq"]
    _, later, _ = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size", "--bbq-limit", "9",
                          "--set", "bbq.limit=11")
    assert later["policy"]["bbq"]["limit"] == 11  # --set is applied after the aliases


@pytest.mark.parametrize("setting, expected", [
    ("bbq.limt=5", "unknown key 'bbq.limt' (did you mean 'limit'?)"),
    ("bqq.limit=5", "unknown policy section 'bqq' in 'bqq.limit' (did you mean 'bbq'?"),
    ("bbq.limit=0", "'bbq.limit'"),
    ("bbq.mode=letters", "'bbq.mode'"),
    ("bbq.alpha=NaN", "'bbq.alpha': nan is not a finite number"),
], ids=["unknown key", "unknown section", "out of range", "not a choice", "NaN"])
def test_bad_set_is_one_line_and_exit_3(setting, expected, tmp_path, capsys):
    (tmp_path / "BLESSED").write_text("stale")
    code, doc, err = run_cli(tmp_path, capsys, "check", tmp_path / "model.onnx", "--set", setting,
                             "--bless-dir", tmp_path)
    assert code == 3 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("edgeval: error: --set: ") and expected in err, err
    assert doc is None and not (tmp_path / "BLESSED").exists()  # refused before the run, the old pass revoked


@pytest.mark.parametrize("setting", ["bbq", "bbq.limit", "limit=5", ".limit=5", "bbq.=5"])
def test_malformed_set_is_a_usage_error(setting, tmp_path, capsys):
    code, _, err = run_cli(tmp_path, capsys, "check", tmp_path / "model.onnx", "--set", setting)
    assert code == 2 and "SECTION.KEY=VALUE" in err and len(err.strip().splitlines()) == 1


# -- exits and publishing are written once ----------------------------------------------------------------------
def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))]


def test_only_cli_main_exits():
    exits = re.compile(r"\bsys\.exit\(|\braise SystemExit\b|\bos\._exit\(|\bexceptions\.Exit\(|\bctx\.exit\(")
    found = [f"{p.relative_to(PACKAGE)}:{n}" for p, text in _sources()
             for n, line in enumerate(text.splitlines(), 1) if exits.search(line)]
    assert len(found) == 1 and found[0].startswith("cli/__init__.py:"), found


def test_only_publish_writes_blesses_and_announces():
    """revoke/bless/announce and writing the final report happen in edgeval.api (prepare/publish) only."""
    steps = re.compile(r"(?<![\w.])(?:revoke|bless|announce)\(|\breport\.write\(")
    allowed = {"api.py", "hooks/blessing.py", "hooks/mlflow.py"}  # the definitions; MLflow's temp copy of a report
    found = [f"{p.relative_to(PACKAGE)}:{n}: {line.strip()}" for p, text in _sources()
             if str(p.relative_to(PACKAGE)) not in allowed
             for n, line in enumerate(text.splitlines(), 1) if steps.search(line)]
    assert found == []


# -- renderers and sinks ask the validators ---------------------------------------------------------------------
class Echo:
    """A validator renderers have never heard of, with its own views."""

    name, title, summary = "echo", "Echo chamber", "echoes a number"
    side_files = (".echo.txt",)

    def run(self, ctx, settings) -> Outcome:
        side = ctx.side_file(".echo.txt")
        if side is not None:
            side.write_text("echo")
        return Outcome((Check("echo.value", "echo", "pass", "value", value=1.0),),
                       {"value": 0.25, "side_file": None if side is None else str(side)})

    def describe(self, results: dict) -> list[str]:
        return [f"The echo came back at {results['value']}."]

    def warnings(self, results: dict) -> list[str]:
        return ["Echoes fade."]

    def metrics(self, results: dict) -> dict[str, float]:
        return {"loudness": results["value"] * 2}


class Broken(Echo):
    name, title = "broken", "Broken"

    def describe(self, results: dict) -> list[str]:
        raise RuntimeError("no words")


class EchoPlugin:
    @hookimpl
    def edgeval_validators(self):
        return [Echo(), Broken()]


@pytest.fixture
def echo_plugin():
    with registered_plugin(EchoPlugin(), "test-echo"):
        yield


def _report() -> Report:
    results = {"echo": {"value": 0.25, "nested": {"x": 3}}, "broken": {"value": 1},
               "unknown": {"a": {"b": 2, "flag": True, "nan": float("nan")}, "list": [1, 2], "c": 4}}
    checks = (Check("echo.value", "echo", "pass", "value", value=1.0),)
    return Report(candidate={"path": "m.onnx", "format": "onnx", "sha256": "0" * 64, "bytes": 1}, baseline=None,
                  policy={}, checks=checks, results=results, run={"validators": ["echo", "broken", "unknown"]})


def test_a_new_validator_shows_in_the_summaries_without_renderer_changes(echo_plugin):
    md = render(_report(), "markdown")
    assert "**Echo chamber:** The echo came back at 0.25." in md and "> **Echoes fade.**" in md
    assert "**Broken:** (the broken validator could not describe its results: RuntimeError: no words)" in md
    assert "**unknown" not in md  # no views: its checks table is all there is
    page = render(_report(), "html")
    assert "<h2>Echo chamber</h2>" in page and "The echo came back at 0.25." in page


def test_a_new_validator_gives_mlflow_its_metrics(echo_plugin):
    from edgeval.hooks.mlflow import report_metrics

    metrics = report_metrics(_report())
    assert metrics["edgeval.echo.loudness"] == 0.5 and "edgeval.echo.nested.x" not in metrics
    assert metrics["edgeval.unknown.a.b"] == 2.0 and metrics["edgeval.unknown.c"] == 4.0  # the generic fallback
    assert not any(k.startswith(("edgeval.unknown.a.flag", "edgeval.unknown.a.nan", "edgeval.unknown.list"))
                   for k in metrics)


def test_the_cli_summary_prints_a_validators_warnings(echo_plugin, capsys):
    from edgeval.cli.summary import print_summary

    print_summary(_report(), None)
    assert "warning echo: Echoes fade." in " ".join(capsys.readouterr().out.split())


def test_built_in_validators_describe_themselves():
    """Every built-in has describe() and metrics(); they read an empty or odd result without failing."""
    from edgeval.plugins import registered_validators

    for name, validator in registered_validators().items():
        for junk in ({}, {"candidate": "x", "p50_ms": "slow", "bytes": None}):
            assert isinstance(validator.describe(junk), list), name
            assert all(isinstance(v, float) for v in validator.metrics(junk).values()), name


def test_side_files_go_where_the_report_will_be_and_are_removed_before_a_run(echo_plugin, tiny_llama_onnx, tmp_path):
    from edgeval.api import check, prepare

    report = tmp_path / "out" / "gate.json"
    report.parent.mkdir()
    stale = tmp_path / "out" / "gate.echo.txt"
    stale.write_text("last run")
    prepare(report)
    assert not stale.exists()  # a side file the validator declares is stale once a run starts
    done = check(tiny_llama_onnx, options=CheckOptions(validators=["echo"], outputs=outputs_for(report)))
    assert done.results["echo"]["side_file"] == str(stale) and stale.read_text() == "echo"
    assert check(tiny_llama_onnx, options=CheckOptions(validators=["echo"])).results["echo"]["side_file"] is None
