"""Strict parsing and schema checks of BBQ prediction lines (sidecars and checkpoints).

JSON is parsed strictly (no NaN/Infinity, no duplicate keys). A record is checked against
``schemas/bbq-predictions.schema.json`` (``$defs/record``); a plain-Python check of the same rules runs first,
so that a good record costs microseconds (jsonschema takes about 1 ms a record: a minute for all of BBQ), and
jsonschema runs only to word the error of a bad one.
"""
from __future__ import annotations

import json
import math
from dataclasses import fields
from functools import lru_cache
from typing import Any

from ...errors import DataError
from .types import Prediction

_OPTION = (0, 1, 2)
_EXTRA_KEYS = frozenset({"order_logprobs", "tie", "shown_order"})


def _no_constants(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_line(line: str, where: str) -> dict[str, Any]:
    """One JSON object per line: strict (no NaN/Infinity, no duplicate keys)."""
    try:
        value = json.loads(line, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise DataError(f"{where}: invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def record_from_json(raw: dict[str, Any], where: str) -> Prediction:
    """A schema-checked record as a :class:`Prediction` (lists back to tuples)."""
    problem = record_problem(raw)
    if problem is not None:
        schema_check("record", raw, where)  # the schema's wording, when the schema sees the problem too
        raise DataError(f"{where}: {problem}")
    values = dict(raw)
    values["scores"] = tuple(float(s) for s in raw["scores"])
    values["order_letters"] = tuple(raw["order_letters"])
    if raw["margin"] is not None:
        values["margin"] = float(raw["margin"])
    return Prediction(**values)


@lru_cache(maxsize=None)
def _validator(part: str):
    """A jsonschema validator for the sidecar's ``header`` or ``record``."""
    import jsonschema

    from ...schemas import load_schema

    schema = load_schema("bbq-predictions")
    sub = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{part}"}
    cls = jsonschema.validators.validator_for(schema)
    return cls(sub)


def schema_check(part: str, value: dict[str, Any], where: str) -> None:
    """DataError ``where: field: what`` for the first error of ``value`` against ``$defs/<part>``."""
    validator = _validator(part)
    error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))), None)
    if error is not None:
        field = ".".join(str(p) for p in error.absolute_path) or part
        if error.validator == "oneOf" and error.context:
            message = f"{error.instance!r} is not valid here ({error.context[0].message})"
        else:
            message = error.message
        raise DataError(f"{where}: {field}: {message}")


def check_record_schema_matches_prediction() -> set[str]:
    """Field names in the record schema that differ from :class:`Prediction`'s (empty when in step)."""
    in_schema = set(_validator("record").schema["$defs"]["record"]["properties"])
    return in_schema ^ {f.name for f in fields(Prediction)}


def _option(value: Any, nullable: bool = False) -> bool:
    return (nullable and value is None) or (type(value) is int and value in _OPTION)


def _number(value: Any) -> bool:
    """An int or a finite float (JSON's 1e999 parses to inf; edgeval never writes one)."""
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _numbers(value: Any, max_items: int, exact: int | None = None) -> bool:
    return (type(value) is list and len(value) <= max_items and (exact is None or len(value) == exact)
            and all(_number(v) for v in value))


def _extra_ok(extra: Any) -> bool:
    if type(extra) is not dict or not set(extra) <= _EXTRA_KEYS:
        return False
    rows = extra.get("order_logprobs", [])
    return (("tie" not in extra or extra["tie"] is True) and type(rows) is list and len(rows) <= 3
            and ("shown_order" not in extra or _option(extra["shown_order"]))
            and all(_numbers(r, 3, exact=3) for r in rows))


_FIELD_RULES: tuple[tuple[str, Any, str], ...] = (
    ("category", lambda v: type(v) is str and v != "", "a non-empty string"),
    ("example_id", lambda v: type(v) is int and v >= 0, "an integer >= 0 (written without a fraction)"),
    ("question_index", lambda v: type(v) is str, "a string"),
    ("context_condition", lambda v: v in ("ambig", "disambig"), "'ambig' or 'disambig'"),
    ("question_polarity", lambda v: v in ("neg", "nonneg"), "'neg' or 'nonneg'"),
    ("label", _option, "0, 1 or 2"),
    ("unknown_idx", _option, "0, 1 or 2"),
    ("biased_idx", lambda v: _option(v, True), "0, 1, 2 or null"),
    ("pred", lambda v: _option(v, True), "0, 1, 2 or null"),
    ("scores", lambda v: _numbers(v, 3), "a list of at most 3 numbers"),
    ("margin", lambda v: v is None or _number(v), "a number or null"),
    ("order_letters", lambda v: type(v) is list and len(v) <= 3 and all(_option(x) for x in v),
     "a list of at most 3 of 0, 1, 2"),
    ("extra", _extra_ok,
     "an object with order_logprobs (rows of 3 numbers), tie (true) and shown_order (0, 1, 2) only"),
)


def record_problem(r: dict[str, Any]) -> str | None:
    """What is wrong with record ``r`` by the record schema's rules (checked in plain Python, stricter only in
    that an integer must be written as one: 2.0 is refused), or None when it is a valid record."""
    if set(r) != _RECORD_KEYS:
        extra, missing = sorted(set(r) - _RECORD_KEYS), sorted(_RECORD_KEYS - set(r))
        return f"record: unexpected field(s) {extra}" if extra else f"record: missing field(s) {missing}"
    for name, ok, wanted in _FIELD_RULES:
        if not ok(r[name]):
            return f"{name}: {r[name]!r} is not {wanted}"
    return None


def record_ok(r: dict[str, Any]) -> bool:
    return record_problem(r) is None


_RECORD_KEYS = frozenset(f.name for f in fields(Prediction))
