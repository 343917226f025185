"""Policy files: YAML, JSON, pyproject; defaults; unknown keys named with a suggestion."""
from __future__ import annotations

import json

import pytest

from edgeval.errors import PolicyError
from edgeval.policy import DEFAULTS, Policy, find_project_policy


def test_defaults_are_valid_and_complete():
    policy = Policy.from_dict(json.loads(json.dumps(DEFAULTS)), "defaults")
    assert policy.section("latency")["runs"] == DEFAULTS["latency"]["runs"]
    assert "bbq" in policy.validators


def test_yaml_merges_over_defaults(tmp_path):
    path = tmp_path / "edgeval.yaml"
    path.write_text("latency:\n  runs: 5\nsize:\n  max_bytes: 1000\n")
    policy = Policy.load(path)
    assert policy.section("latency")["runs"] == 5
    assert policy.section("latency")["warmup"] == DEFAULTS["latency"]["warmup"]
    assert policy.section("size")["max_bytes"] == 1000 and policy.source == str(path)


def test_json_and_pyproject(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"bbq": {"limit": 50}}))
    assert Policy.load(tmp_path / "p.json").section("bbq")["limit"] == 50
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n[tool.edgeval.bbq]\nalpha = 0.01\n")
    assert find_project_policy(tmp_path) == tmp_path / "pyproject.toml"
    assert Policy.load(tmp_path / "pyproject.toml").section("bbq")["alpha"] == 0.01


@pytest.mark.parametrize("text, expected", [
    ("latency:\n  run: 5\n", "unknown key 'latency.run' (did you mean 'runs'?)"),
    ("sise: {}\n", "unknown key 'sise' (did you mean 'size'?)"),
    ("latency:\n  runs: many\n", "'latency.runs': 'many' is not of type 'integer'"),
    ("bbq:\n  orders: 2\n", "'bbq.orders'"),
    ("- a\n- b\n", "a policy must be a mapping"),
    ("latency: [\n", "not valid YAML"),
])
def test_bad_policies_name_the_problem(tmp_path, text, expected):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_missing_policy_file(tmp_path):
    with pytest.raises(PolicyError, match="not found"):
        Policy.load(tmp_path / "nope.yaml")


def test_pyproject_without_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    assert find_project_policy(tmp_path) is None
    with pytest.raises(PolicyError, match=r"\[tool.edgeval\]"):
        Policy.load(tmp_path / "pyproject.toml")


def test_plugin_settings_live_under_plugins():
    policy = Policy.from_dict({"plugins": {"toxicity": {"max": 0.1}}})
    assert policy.section("toxicity") == {"max": 0.1}
