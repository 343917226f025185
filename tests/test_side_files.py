"""pruning.json and OUT.parity.json have schemas: checked when written (a bad document is an edgeval bug) and
when read (a bad file is a one-line DataError naming it)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeval.errors import DataError, SchemaViolation
from edgeval.schemas import SCHEMA_NAMES, check_side_file, load_schema, read_side_file, validator_for

LAYER = {"shape": [4, 4], "numel": 16, "zeros": 8, "requested_sparsity": 0.5, "measured_sparsity": 0.5}
PRUNING = {"schema": "edgeval.pruning/1", "method": "magnitude", "pattern": "unstructured",
           "requested_sparsity": 0.5, "measured_sparsity": 0.5, "pruned_params": 16, "pruned_zeros": 8,
           "warnings": [], "layers_included": ["l0"], "layers": {"l0": LAYER}, "edgeval_version": "0.1.0"}
CHECK = {"id": "parity.top1_agreement", "validator": "parity", "status": "pass", "metric": "top-1",
         "message": "top-1 = 1 >= 0.99", "value": 1.0, "threshold": 0.99}
PARITY = {"schema": "edgeval.parity/1", "checks": [CHECK], "threads": None,
          "results": {"n_prompts": 48, "max_abs_logit_diff": 1e-6, "top1_agreement": 1.0, "letter_agreement": 1.0,
                      "option_agreement": 1.0, "tokenizer_agreement": 1.0, "candidate": {}, "reference": {}}}


@pytest.mark.parametrize("name", ["pruning", "parity"])
def test_side_file_schemas_are_registered_and_valid(name):
    assert name in SCHEMA_NAMES and load_schema(name)["$schema"].endswith("2020-12/schema")
    validator_for(name)  # check_schema passes


@pytest.mark.parametrize("name, doc", [("pruning", PRUNING), ("parity", PARITY)])
def test_good_side_files_read_back(name, doc, tmp_path):
    path = tmp_path / f"{name}.json"
    check_side_file(name, doc, path)
    path.write_text(json.dumps(doc))
    assert read_side_file(name, path) == doc


@pytest.mark.parametrize("name, doc, needle", [
    ("pruning", {**PRUNING, "measured_sparsity": 1.5}, "at measured_sparsity: 1.5 is greater than the maximum"),
    ("pruning", {k: v for k, v in PRUNING.items() if k != "layers"}, "'layers' is a required property"),
    ("pruning", {**PRUNING, "layers": {"l0": {**LAYER, "zeros": -1}}}, "at layers.l0.zeros"),
    ("pruning", {**PRUNING, "schema": "edgeval.pruning/9"}, "at schema"),
    ("parity", {**PARITY, "checks": []}, "at checks"),
    ("parity", {**PARITY, "checks": [{**CHECK, "status": "maybe"}]}, "at checks.0.status"),
    ("parity", {**PARITY, "results": {**PARITY["results"], "top1_agreement": None}}, "at results.top1_agreement"),
])
def test_bad_side_files_are_one_line_data_errors_naming_the_file(name, doc, needle, tmp_path):
    path = tmp_path / "side.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError) as info:
        read_side_file(name, path)
    message = str(info.value)
    assert message.startswith(str(path)) and needle in message and "\n" not in message
    with pytest.raises(SchemaViolation, match=needle.split(":")[0]):   # the writer refuses it too
        check_side_file(name, doc, path)


@pytest.mark.parametrize("content, needle", [("{not json", "not JSON"), ("", "not JSON"), (b"\xff\xfe", "cannot read")])
def test_unreadable_side_files(content, needle, tmp_path):
    path = tmp_path / "pruning.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=needle) as info:
        read_side_file("pruning", path)
    assert str(path) in str(info.value)


def test_demo_refuses_a_broken_cached_pruning_manifest(tmp_path):
    from edgeval.demo import DemoConfig, _prune

    out = tmp_path / "pruned"
    out.mkdir()
    (out / "pruning.json").write_text(json.dumps({**PRUNING, "pruned_zeros": "many"}))
    with pytest.raises(DataError, match=r"pruning\.json: not a valid pruning file .*at pruned_zeros"):
        _prune(Path("src"), out, "magnitude", 0.5, DemoConfig(out_dir=tmp_path), log=None)
