"""Policy files: YAML, JSON, pyproject; defaults; unknown keys named with a suggestion."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pytest

from edgeval.errors import PolicyError
from edgeval.plugins import hookimpl, plugin_manager
from edgeval.policy import DEFAULTS, Policy, PolicyDeprecationWarning, find_project_policy, policy_schema
from edgeval.settings import Settings, schema_of, setting


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


# -- validator settings: every registered validator's Settings is a section of the merged policy schema ----------
@dataclass(frozen=True)
class ToySettings(Settings):
    limit: int | None = setting(10, "items", minimum=1)
    color: Literal["red", "blue"] = setting("red")
    tags: list[str] = setting([])


class ToyValidator:
    name = "toy"
    summary = "a validator registered by this test"
    Settings = ToySettings

    def run(self, ctx, settings):  # pragma: no cover - never run here
        raise AssertionError


class _ToyPlugin:
    @hookimpl
    def edgeval_validators(self):
        return [ToyValidator()]


@pytest.fixture()
def toy():
    """The toy validator registered with the (cached) plugin manager for one test."""
    pm = plugin_manager()
    plugin = pm.register(_ToyPlugin(), name="toy-test-plugin")
    yield plugin
    pm.unregister(name="toy-test-plugin")


def _load(tmp_path, text):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return Policy.load(path)


def test_plugin_settings_are_merged_into_the_policy_schema(toy):
    assert policy_schema()["properties"]["toy"] == schema_of(ToySettings)
    assert policy_schema()["properties"]["toy"]["additionalProperties"] is False
    assert Policy.default().section("toy") == {"limit": 10, "color": "red", "tags": []}


@pytest.mark.parametrize("text, expected", [
    ("toy:\n  colour: red\n", "unknown key 'toy.colour' (did you mean 'color'?)"),
    ("toy:\n  limit: 0\n", "'toy.limit': 0 is less than the minimum of 1"),
    ("toy:\n  color: green\n", "'toy.color': 'green' is not one of ['red', 'blue']"),
    ("toy:\n  tags: [1]\n", "'toy.tags.0': 1 is not of type 'string'"),
    ("plugins:\n  toy: {limit: -1}\n", "'plugins.toy.limit': -1 is less than the minimum of 1"),
    ("plugins:\n  toxicity: {}\n", "unknown key 'plugins.toxicity'"),
])
def test_plugin_sections_are_checked_like_builtins(toy, tmp_path, text, expected):
    with pytest.raises(PolicyError) as info:
        _load(tmp_path, text)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_plugin_defaults_are_filled_in_and_parsed(toy, tmp_path):
    policy = _load(tmp_path, "toy:\n  limit: 3\n")
    assert policy.section("toy") == {"limit": 3, "color": "red", "tags": []}
    assert policy.to_json()["toy"] == {"limit": 3, "color": "red", "tags": []}  # the report shows it as applied
    settings = policy.settings_for(ToyValidator())
    assert isinstance(settings, ToySettings) and settings.limit == 3 and settings["color"] == "red"


def test_legacy_plugins_table_is_read_with_a_warning(toy, tmp_path):
    with pytest.warns(PolicyDeprecationWarning, match=r"'plugins.toy' is deprecated.*top level"):
        policy = _load(tmp_path, "plugins:\n  toy: {color: blue}\n")
    assert policy.section("toy") == {"limit": 10, "color": "blue", "tags": []}
    assert "plugins" not in policy.to_json()
    with pytest.raises(PolicyError, match="'toy' is given twice"):
        _load(tmp_path, "toy: {limit: 2}\nplugins:\n  toy: {limit: 3}\n")


def test_sections_of_disabled_plugins_pass_unchecked():
    with pytest.raises(PolicyError, match="unknown key 'toxicity'"):
        Policy.from_dict({"toxicity": {"max": 0.1}})
    policy = Policy.from_dict({"toxicity": {"max": 0.1}}, disabled=("toxicity_plugin",))
    assert policy.section("toxicity") == {"max": 0.1}
    with pytest.raises(PolicyError, match="'latency.runs'"):  # built-ins are still checked
        Policy.from_dict({"latency": {"runs": 1}}, disabled=("toxicity_plugin",))


def test_builtin_settings_reach_validators_as_instances():
    from edgeval.validators.latency import LatencySettings, LatencyValidator

    settings = Policy.default().settings_for(LatencyValidator())
    assert isinstance(settings, LatencySettings) and settings.runs == DEFAULTS["latency"]["runs"]
    assert dict(settings) == DEFAULTS["latency"] and {**settings} == DEFAULTS["latency"]


@pytest.mark.parametrize(("text", "expected"), [
    ("size: &s {nested: *s}\n", r"a YAML alias refers to itself \(line 1\)"),
    ("a: &a [*a]\n", "a YAML alias refers to itself"),
    ("".join([f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" if i else "l0: &l0 [x, x, x, x, x, x, x, x, x]\n"
              for i in range(9)]), "aliases expand it beyond 10,000 values"),
])
def test_recursive_and_exploding_yaml_aliases_are_one_line_policy_errors(tmp_path, text, expected):
    """A self-referencing alias used to end in RecursionError (exit 4) and a 9-level alias bomb ran without end."""
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=expected) as info:
        Policy.load(path)
    assert str(path) in str(info.value)


def test_plain_yaml_anchors_still_work(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("validators: [size]\nsize: &s {max_bytes: 1000}\n")
    assert Policy.load(path).section("size")["max_bytes"] == 1000


def test_a_recursive_alias_in_a_set_value_is_a_one_line_error():
    from edgeval.cli.options import parse_value

    with pytest.raises(PolicyError, match=r"--set value '&a \[\*a\]': a YAML alias refers to itself"):
        parse_value("&a [*a]")
    assert parse_value("[Age, Race]") == ["Age", "Race"]
