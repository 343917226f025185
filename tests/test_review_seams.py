"""Hostile review of the seams (issue 12): what a careless user or a buggy plugin can do to a run. Each test is a
bug that was found: a malformed validator outcome, ``--set`` with a disabled plugin's section, a typo'd section
with plugins off, a plugin Settings class edgeval cannot use, and ``--report`` naming a file the run reads."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from plugin_helpers import registered_plugin

from edgeval.api import CheckOptions, check
from edgeval.cli import main
from edgeval.errors import PolicyError, UsageError
from edgeval.plugin import Settings, setting
from edgeval.plugins import AUTOLOAD_ENV, hookimpl, registered_validators
from edgeval.policy import Policy
from edgeval.report import Check
from edgeval.validators.base import Outcome


def run_cli(tmp_path: Path, capsys, *args: Any, report: Path | None = None) -> tuple[int, dict | None, str]:
    report = report or tmp_path / "r.json"
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in (*args, "--report", report, "-q")])
    err = capsys.readouterr().err
    return info.value.code, json.loads(report.read_text()) if report.exists() else None, err


class Odd:
    """A plugin validator whose ``run`` returns what ``make`` gives (a bug of its author, each time different)."""

    summary = "returns odd things"

    def __init__(self, name: str, make) -> None:
        self.name, self._make = name, make

    def run(self, ctx, settings) -> Any:
        return self._make(self.name)


ODD = {
    "skipped_status": lambda n: Outcome((Check(f"{n}.x", n, "skipped", "m", value=1.0),)),
    "returns_none": lambda n: None,
    "dict_checks": lambda n: Outcome(({"id": f"{n}.x", "status": "pass"},)),
    "list_results": lambda n: Outcome((Check(f"{n}.x", n, "pass", "m", value=1.0),), [1, 2]),
    "object_value": lambda n: Outcome((Check(f"{n}.x", n, "pass", "m", value=object()),)),
    "object_results": lambda n: Outcome((Check(f"{n}.x", n, "pass", "m", value=1.0),), {"a": object()}),
    "bare_tuple": lambda n: (Check(f"{n}.x", n, "pass", "m", value=1.0),),
}


class OddPlugin:
    @hookimpl
    def edgeval_validators(self):
        return [Odd(name, make) for name, make in ODD.items()]


@pytest.fixture
def odd_plugin():
    with registered_plugin(OddPlugin(), "test-odd"):
        yield


@pytest.mark.parametrize("name", list(ODD))
def test_a_malformed_outcome_is_an_error_check_and_the_report_is_written(name, odd_plugin, tiny_llama_onnx,
                                                                         tmp_path, capsys):
    """Was: a check with status 'skipped' made check() say verdict 'pass' (the write then failed, no report);
    None / a tuple / dict checks crashed the run with no report; odd values or results lost the report."""
    report = check(tiny_llama_onnx, options=CheckOptions(validators=[name]))
    assert report.verdict == "error" and not report.passed and report.exit_code == 4
    assert [c.id for c in report.checks] == [f"{name}.run"] and name in report.checks[0].message
    code, doc, _ = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", f"size,{name}")
    assert code == 4 and doc is not None and doc["verdict"] == "error"  # the report is kept, size's checks in it
    assert {c["id"]: c["status"] for c in doc["checks"]}[f"{name}.run"] == "error"


def test_an_unknown_status_never_reads_as_a_pass():
    odd = Check("x.y", "x", "skipped", "m")  # type: ignore[arg-type]
    from edgeval.report import Report

    report = Report(candidate={"path": "m"}, baseline=None, policy={}, checks=(odd,))
    assert report.verdict == "error" and report.exit_code == 4


def test_set_keeps_a_disabled_plugins_section(tiny_llama_onnx, tmp_path, capsys):
    """Was: with --disable-plugin, any --set re-validated the policy as if nothing were disabled, so the disabled
    plugin's section (accepted without --set) became 'unknown key' and exit 3."""
    policy = tmp_path / "p.yaml"
    policy.write_text("toxicity:\n  max: 0.1\n")
    code, doc, err = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size", "--policy", policy,
                             "--disable-plugin", "toxicity", "--set", "size.max_bytes=1", "--set", "toxicity.max=0.2")
    assert code == 1, err  # size.max_bytes=1 applied: blocked, not refused
    assert doc["policy"]["toxicity"] == {"max": 0.2} and doc["policy"]["size"]["max_bytes"] == 1


@pytest.mark.parametrize("how", ["disable", "autoload"])
def test_a_typo_section_is_refused_even_with_plugins_off(how, tiny_llama_onnx, tmp_path, capsys, monkeypatch):
    """Was: with plugins off (EDGEVAL_DISABLE_PLUGIN_AUTOLOAD=1 or any --disable-plugin) every unknown section
    passed unchecked, so ``sise: {max_bytes: 1}`` was ignored and the run passed (exit 0)."""
    policy = tmp_path / "p.yaml"
    policy.write_text("sise:\n  max_bytes: 1\n")
    flags = ["--disable-plugin", "nothing_installed"] if how == "disable" else []
    if how == "autoload":
        monkeypatch.setenv(AUTOLOAD_ENV, "1")
    code, doc, err = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size", "--policy", policy,
                             *flags)
    assert code == 3 and "unknown key 'sise' (did you mean 'size'?)" in err, err
    with pytest.raises(PolicyError, match="did you mean 'bbq'"):
        Policy.from_dict({"BBQ": {"max_delta_srs": 0.01}}, disabled=("x",))
    assert Policy.from_dict({"toxicity": {"max": 0.1}}, disabled=("x",)).section("toxicity") == {"max": 0.1}


@dataclasses.dataclass(frozen=True)
class DictSettings(Settings):
    weights: dict = setting({})  # not a type a policy schema can hold


@dataclasses.dataclass(frozen=True)
class NoDefaultSettings(Settings):
    limit: int


@dataclasses.dataclass(frozen=True)
class PlainSettings:  # not derived from edgeval.plugin.Settings
    limit: int = 1


@pytest.mark.parametrize("cls, expected", [(DictSettings, "unsupported type"), (NoDefaultSettings, "missing 1"),
                                           (PlainSettings, "does not derive")])
def test_a_plugin_settings_class_edgeval_cannot_use_is_named(cls, expected, tiny_llama_onnx, tmp_path, capsys):
    """Was: a plugin with such a Settings class broke every run (even --validators size) with 'internal error:
    TypeError ...' that did not say which validator or how to skip it."""
    validator = Odd("badsettings", ODD["returns_none"])
    validator.Settings = cls

    class Plugin:
        @hookimpl
        def edgeval_validators(self):
            return [validator]

    with registered_plugin(Plugin(), "test-badsettings"):
        with pytest.raises(UsageError, match=f"validator 'badsettings'.*{expected}.*--disable-plugin"):
            registered_validators()
        code, doc, err = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "validator 'badsettings'" in err, err
    assert "internal error" not in err


def test_report_path_that_is_a_model_or_the_policy_is_refused_not_deleted(tiny_llama_onnx, tmp_path, capsys):
    """Was: ``--report model.onnx`` deleted the candidate (or baseline, or policy file) in prepare(), then wrote
    the report over it."""
    model = tmp_path / "m" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(tiny_llama_onnx.read_bytes())
    policy = tmp_path / "p.yaml"
    policy.write_text("size:\n  max_bytes: 100000000\n")
    before = model.read_bytes()
    for args, target in (((model,), model), ((tiny_llama_onnx, "--baseline", model), model),
                         ((tiny_llama_onnx, "--policy", policy), policy)):
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in ("check", *args, "--validators", "size", "--report", target, "-q")])
        code, err = info.value.code, capsys.readouterr().err
        assert code == 3 and "the report would overwrite" in err and len(err.strip().splitlines()) == 1, err
    assert model.read_bytes() == before and "max_bytes" in policy.read_text()


def test_a_huge_integer_in_results_does_not_break_the_mlflow_metrics():
    """Was: the generic metrics of a validator without ``metrics()`` called math.isfinite(10**400), which raises
    OverflowError: the MLflow sink failed and an otherwise passing run ended in exit 4."""
    from edgeval.hooks.mlflow import report_metrics
    from edgeval.render.views import finite
    from edgeval.report import Report

    assert not finite(10**400) and finite(10**30) and not finite(True) and not finite(float("nan"))
    report = Report(candidate={"path": "m"}, baseline=None, policy={},
                    checks=(Check("nometrics.x", "nometrics", "pass", "m", value=1.0),),
                    results={"nometrics": {"count": 10**400, "ok": 3}})
    metrics = report_metrics(report)
    assert metrics["edgeval.nometrics.ok"] == 3.0 and "edgeval.nometrics.count" not in metrics


def test_a_validator_named_twice_is_a_usage_error(tiny_llama_onnx, tmp_path, capsys):
    """Was: ``--validators size,size`` (which a policy's ``validators`` refuses) ran size twice: every check id
    twice in the report, and ``bbq,bbq`` would score BBQ twice."""
    code, doc, err = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size,size")
    assert code == 2 and doc is None and "validator 'size' is named twice" in err, err
    with pytest.raises(UsageError, match="named twice"):
        check(tiny_llama_onnx, options=CheckOptions(validators=["size", "latency", "size"]))


@pytest.mark.parametrize("suffix", ["/etc/x", "", 7])
def test_a_side_file_suffix_that_is_not_a_file_name_is_named(suffix, tiny_llama_onnx, tmp_path, capsys):
    """Was: a plugin declaring ``side_files = ("/etc/x",)`` made every run die in prepare() with 'internal error:
    ValueError: Invalid name'; an empty suffix named the report itself."""
    validator = Odd("badside", ODD["returns_none"])
    validator.side_files = (suffix,)

    class Plugin:
        @hookimpl
        def edgeval_validators(self):
            return [validator]

    with registered_plugin(Plugin(), "test-badside"):
        code, doc, err = run_cli(tmp_path, capsys, "check", tiny_llama_onnx, "--validators", "size")
    assert code == 2 and "validator 'badside' declares the side file" in err and "internal error" not in err, err


def test_report_path_that_is_a_declared_input_is_refused(tiny_llama_onnx, tmp_path, capsys):
    """Was: the input was kept in prepare() (inputs may be side files) and then overwritten by the report."""
    saved = tmp_path / "saved.jsonl.gz"
    saved.write_bytes(b"predictions")
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in ("check", tiny_llama_onnx, "--validators", "bbq", "--baseline-predictions", saved,
                               "--bbq-data", tmp_path / "no-bbq", "--report", saved, "-q")])
    assert info.value.code == 3 and "the report would overwrite" in capsys.readouterr().err
    assert saved.read_bytes() == b"predictions"


def test_a_view_that_returns_one_text_is_one_sentence():
    """Was: a plugin's ``describe`` returning a string (not a list) was rendered one letter per sentence."""
    from edgeval.render.views import ValidatorView

    class Says:
        def describe(self, results):
            return "All quiet."

    assert ValidatorView("says", Says(), {}).sentences() == ["All quiet."]


def test_a_run_that_gated_nothing_is_inconclusive_not_a_pass(tiny_llama_onnx, tmp_path, capsys):
    """Every check report-only (no baseline, no limits): exit 5 and no BLESSED; one threshold makes it a claim."""
    def run(*extra):
        with pytest.raises(SystemExit) as info:
            main(["check", str(tiny_llama_onnx), "--validators", "size", "-q", "--report",
                  str(tmp_path / "r.json"), "--bless-dir", str(tmp_path / "b"), *extra])
        return info.value.code, json.loads((tmp_path / "r.json").read_text())

    code, doc = run()
    assert code == 5 and doc["verdict"] == "inconclusive" and doc["schema_version"] == "1.2"
    assert [c["id"] for c in doc["checks"] if c["status"] == "inconclusive"] == ["run.gated"]
    assert all(c.get("gated") is False for c in doc["checks"] if c["id"] != "run.gated")
    assert (tmp_path / "b" / "NOT_BLESSED").exists() and not (tmp_path / "b" / "BLESSED").exists()
    code, doc = run("--set", "size.max_bytes=1000000000")
    assert code == 0 and doc["verdict"] == "pass" and (tmp_path / "b" / "BLESSED").exists()
    assert next(c for c in doc["checks"] if c["id"] == "size.bytes").get("gated", True) is True


@pytest.mark.parametrize("text, value", [("2024-01-01", "2024-01-01"), ("yes", "yes"), ("true", True),
                                         ("600", 600), ("null", None), ("[Age, Race]", ["Age", "Race"])])
def test_set_values_are_not_read_as_dates_or_yaml_11_booleans(text, value):
    from edgeval.cli.options import parse_value

    assert parse_value(text) == value


def test_check_options_take_one_validator_name_as_a_string():
    assert CheckOptions(validators="size").validators == ["size"]
    assert CheckOptions(validators="size, bbq", disabled_plugins="x").validators == ["size", "bbq"]


def test_a_decisive_bbq_signal_alone_claims_nothing():
    """Without a baseline BBQ only reports figures; its signal check is a precondition, so such a run gates nothing."""
    from edgeval.api import nothing_gated
    from edgeval.validators.bbq.gate import absolute_checks, signal_check

    signal = signal_check({"candidate": {"weak": False, "median_margin": 2.0}})
    assert signal.status == "pass" and signal.gated is False
    checks = [signal, *absolute_checks("bbq", {"srs": 0.3}, ["srs"])]
    assert [c.id for c in nothing_gated(checks)] == ["run.gated"]
    assert nothing_gated([*checks, Check("bbq.delta_srs", "bbq", "pass", "delta_srs", 0.0, threshold=0.05)]) == []
