"""Conformance: every built-in validator satisfies the validator protocol and every built-in runtime the runtime
protocol, checked the way a plugin's would be (so a new built-in, e.g. a second bias lens, is covered by adding it
to the registry, with no test of its own needed for the contract)."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import json

import jsonschema
import pytest

from edgeval.builtin import BUILTIN_VALIDATORS
from edgeval.ids import is_check_id
from edgeval.policy import DEFAULTS, policy_schema
from edgeval.runtimes import BUILTIN_RUNTIMES, Runtime
from edgeval.settings import Settings, defaults_of, parse, schema_of
from edgeval.validators.base import Validator

OPTIONAL_HOOKS = ("describe", "metrics")  # validators may summarise their results for renderers and sinks


def _resolve(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.fixture(params=sorted(BUILTIN_VALIDATORS), scope="module")
def validator(request):
    return _resolve(BUILTIN_VALIDATORS[request.param])()


def test_validator_has_the_protocols_attributes(validator):
    assert isinstance(validator, Validator)
    assert validator.name in BUILTIN_VALIDATORS and is_check_id(validator.name) and "." not in validator.name
    assert isinstance(validator.summary, str) and validator.summary.strip() and "\n" not in validator.summary


def test_validator_run_takes_context_and_settings(validator):
    params = list(inspect.signature(validator.run).parameters.values())
    assert [p.name for p in params] == ["ctx", "settings"]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
    for hook in OPTIONAL_HOOKS:
        if hasattr(validator, hook):
            assert list(inspect.signature(getattr(validator, hook)).parameters) == ["results"]


def test_settings_is_a_frozen_dataclass_with_a_valid_schema(validator):
    cls = validator.Settings
    assert issubclass(cls, Settings) and dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    schema = schema_of(cls)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(cls)}
    assert all("type" in prop or "enum" in prop for prop in schema["properties"].values())


def test_settings_defaults_validate_and_are_the_policy_defaults(validator):
    cls = validator.Settings
    defaults = defaults_of(cls)
    jsonschema.validate(json.loads(json.dumps(defaults)), schema_of(cls))
    assert DEFAULTS[validator.name] == defaults
    assert policy_schema()["properties"][validator.name] == schema_of(cls)
    assert parse(cls, {}, validator.name) == cls() and parse(cls, defaults, validator.name) == cls()
    assert dict(cls()) == defaults  # instances read like the policy's dicts


# -- runtimes ---------------------------------------------------------------------------------------------------
# Every registered runtime is driven through the protocol on a tiny model in tests/test_runtime_conformance.py;
# here only the class-level contract of each built-in: the protocol's methods with its signatures, built as
# ``Cls(artifact, tokenizer_path=None, options=None)``.
PROTOCOL_METHODS = {name: inspect.signature(getattr(Runtime, name)) for name in
                    ("forward", "next_token_logits", "sequence_logits", "describe", "next_token_logits_many",
                     "close", "kv_seq_axes")}


@pytest.fixture(params=[f"{fmt}:{name}" for fmt, name, _ in BUILTIN_RUNTIMES], scope="module")
def runtime_cls(request):
    target = {f"{fmt}:{name}": t for fmt, name, t in BUILTIN_RUNTIMES}[request.param]
    try:
        return _resolve(target)
    except ImportError as exc:  # a backend whose extra is not installed here
        pytest.skip(f"{request.param}: {exc}")


def test_runtime_class_has_the_protocols_methods(runtime_cls):
    for name, expected in PROTOCOL_METHODS.items():
        method = getattr(runtime_cls, name, None)
        assert callable(method), f"{runtime_cls.__name__} has no {name}()"
        got = inspect.signature(method)
        assert list(got.parameters) == list(expected.parameters), f"{runtime_cls.__name__}.{name}{got}"
        assert [p.kind for p in got.parameters.values()] == [p.kind for p in expected.parameters.values()]


def test_runtime_class_is_built_the_documented_way(runtime_cls):
    params = inspect.signature(runtime_cls).parameters
    assert list(params)[:1] == ["artifact"]
    assert params["tokenizer_path"].default is None and params["options"].default is None
