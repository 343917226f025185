"""The report contract: derived verdict, exit codes, schema validation, atomic writes, round trip."""
from __future__ import annotations

import json
import math

import jsonschema
import pytest

from edgeval import DeploymentBlocked, Report
from edgeval.environment import environment
from edgeval.errors import BadInputError, MeasurementError, SchemaViolation
from edgeval.ids import CHECK_ID_PATTERN, slug
from edgeval.policy import Policy
from edgeval.report import Check, InputError, error_check, threshold_check
from edgeval.schemas import load_schema

ART = {"path": "m.onnx", "format": "onnx", "sha256": "0" * 64, "bytes": 10}


def make(checks=(), errors=()) -> Report:
    return Report(candidate=ART, baseline=None, policy=Policy.default().to_json(), checks=tuple(checks),
                  results={"size": {"bytes": 10}}, errors=tuple(errors), environment=environment(),
                  run={"validators": ["size"], "seed": 0, "duration_s": 0.1})


def ok(i="a.b"):
    return Check(i, "size", "pass", "m", 1.0)


def test_verdicts_and_exit_codes():
    assert (make([ok()]).verdict, make([ok()]).exit_code) == ("pass", 0)
    blocked = make([ok(), Check("a.c", "size", "fail", "m", 2.0, threshold=1.0)])
    assert (blocked.verdict, blocked.exit_code) == ("blocked", 1)
    bad = make([ok(), error_check("a.d", "size", MeasurementError("NaN logits"))])
    assert (bad.verdict, bad.exit_code) == ("error", 3)
    crash = make([ok(), error_check("a.d", "size", ZeroDivisionError("x"))])
    assert (crash.verdict, crash.exit_code) == ("error", 4)


def test_no_check_never_passes():
    empty = make([])
    assert empty.verdict == "error" and empty.exit_code == 4 and not empty.passed


def test_error_outranks_failure():
    report = make([Check("a.c", "size", "fail", "m", 2.0), error_check("a.d", "size", BadInputError("x"))])
    assert report.verdict == "error"


def test_input_error_makes_error_verdict_even_with_passing_checks():
    report = make([ok()], [InputError.from_exception("policy", BadInputError("bad key"))])
    assert (report.verdict, report.exit_code) == ("error", 3)


@pytest.mark.parametrize("value", [None, math.nan, math.inf])
def test_threshold_check_fails_closed_on_missing_values(value):
    check = threshold_check("x.y", "v", "metric", value, 1.0)
    assert check.status == "error"


def test_threshold_check_directions():
    assert threshold_check("x.y", "v", "m", 1.0, 1.0).status == "pass"
    assert threshold_check("x.y", "v", "m", 1.01, 1.0).status == "fail"
    assert threshold_check("x.y", "v", "m", 0.5, 0.9, direction="higher_is_better").status == "fail"
    assert threshold_check("x.y", "v", "m", 123.0, None).status == "pass"  # reported, not gated


def test_report_is_schema_valid_and_round_trips(tmp_path):
    report = make([ok(), Check("a.c", "size", "fail", "m", 2.0, 1.5, 1.0, "too big", "lower_is_better")])
    path = report.write(tmp_path / "sub" / "r.json")
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, load_schema("report"))  # independent of our own validator
    assert doc["verdict"] == "blocked" and doc["exit_code"] == 1
    again = Report.load(path)
    assert again.verdict == "blocked" and again.check("a.c").threshold == 1.0
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp files left behind


@pytest.mark.parametrize("bad_id", ["Bad Id!", "size.", "", "a..b", "size.p50-ms", None])
def test_bad_check_id_fails_when_the_check_is_built(bad_id):
    with pytest.raises(ValueError) as info:
        Check(bad_id, "myval", "pass", "m", 1.0)
    assert repr(bad_id) in str(info.value) and "'myval'" in str(info.value)


def test_check_id_pattern_is_the_report_schemas():
    pattern = load_schema("report")["$defs"]["check"]["properties"]["id"]["pattern"]
    assert pattern == CHECK_ID_PATTERN
    assert slug("Race_x_SES") == "race_x_ses" and Check(f"v.{slug('Disability status!')}", "v", "pass", "m")


def test_invalid_report_is_never_written(tmp_path):
    bad = make([Check("a.b", "size", "maybe", "m", 1.0)])  # type: ignore[arg-type]  (a status the schema refuses)
    with pytest.raises(SchemaViolation):
        bad.write(tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_load_rejects_tampered_verdict(tmp_path):
    path = make([Check("a.c", "size", "fail", "m", 2.0)]).write(tmp_path / "r.json")
    doc = json.loads(path.read_text())
    doc["verdict"], doc["exit_code"] = "pass", 0
    path.write_text(json.dumps(doc))
    with pytest.raises(BadInputError, match="verdict"):
        Report.load(path)


def test_load_rejects_non_report(tmp_path):
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(BadInputError, match="x.json"):
        Report.load(tmp_path / "x.json")


def test_numpy_and_nan_results_are_serialised_safely():
    import numpy as np

    report = make([ok()]).replace(results={"v": {"a": np.float32(1.5), "b": float("nan"), "c": np.arange(3)}})
    doc = json.loads(report.dumps())
    assert doc["results"]["v"] == {"a": 1.5, "b": None, "c": [0, 1, 2]}


def test_raise_for_verdict():
    assert make([ok()]).raise_for_verdict().passed
    with pytest.raises(DeploymentBlocked) as info:
        make([Check("a.c", "size", "fail", "m", 2.0)]).raise_for_verdict()
    assert info.value.report.verdict == "blocked" and "a.c" in str(info.value)
