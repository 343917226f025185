"""The public contract: JSON Schemas of the report and the policy, versioned with ``schema_version``."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

SCHEMA_NAMES = ("report", "policy", "bbq-predictions")
REPORT_SCHEMA_VERSION = "1.1"
POLICY_SCHEMA_VERSION = "1.0"


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """The parsed schema ``name`` (one of :data:`SCHEMA_NAMES`)."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def validator_for(name: str):
    """A cached jsonschema validator for schema ``name`` (with date-time format checking)."""
    import jsonschema

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)
