"""JSON-schema checks that name the offending key in one line: the policy's and each validator's settings.

Kept apart from :mod:`edgeval.policy` so that :mod:`edgeval.settings` (which the policy builds on) can use it
without importing the policy back.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any, Iterator

from .errors import PolicyError
from .suggest import suggestion


def _whole_number(_checker: Any, instance: Any) -> bool:
    """JSON Schema's ``integer`` as edgeval reads it: an int, not a bool, and not a float such as ``4.0`` (which
    the standard counts as an integer, and which would reach the code as a float)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@lru_cache(maxsize=64)
def checker(schema_text: str):
    import jsonschema

    schema = json.loads(schema_text)
    base = jsonschema.validators.validator_for(schema)
    base.check_schema(schema)
    cls = jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", _whole_number))
    return cls(schema)


def check_against(schema: dict[str, Any] | None, value: Any, where: str, compiled: Any = None) -> None:
    """Raise :class:`PolicyError` naming the first key of ``value`` (found at ``where``) that breaks ``schema``."""
    bad = next(non_finite(value, where), None)
    if bad is not None:
        raise PolicyError(f"'{bad[0] or '(top level)'}': {bad[1]!r} is not a finite number")
    compiled = compiled or checker(json.dumps(schema, sort_keys=True))
    errors = sorted(compiled.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        raise PolicyError(describe(errors[0], where))


def non_finite(value: Any, where: str) -> Iterator[tuple[str, float]]:
    """``(dotted key, value)`` of every NaN / infinite float anywhere in ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from non_finite(item, f"{where}[{index}]")


def describe(error, prefix: str = "") -> str:
    """One line for a jsonschema error: the dotted key (under ``prefix``) and what is wrong with it."""
    where = ".".join(str(p) for p in [*([prefix] if prefix else []), *error.absolute_path])
    if error.validator == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        key = unknown[0] if unknown else "?"
        name = f"{where}.{key}" if where else key
        return f"unknown key '{name}'{suggestion(key, allowed)}"
    if error.validator == "minItems" and where == "validators":
        return "'validators' is empty: name at least one validator to run (see `edgeval validators`)"
    return f"'{where or '(top level)'}': {error.message}"
