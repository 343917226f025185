"""Validator settings as frozen dataclasses: one class per validator, its fields the keys of its policy section.

A field's default is the policy default; ``field(metadata={"schema": {...}})`` carries the JSON-schema keywords
for its value (``minimum``, ``enum``, …) and ``metadata={"help": "..."}`` one line for the docs. Instances also
read like the mapping they replace (``settings["limit"]``, ``settings.get("limit")``) so older code keeps working.

:func:`schema_of` turns a settings class into the JSON-schema fragment of its policy section (the policy schema is
the static core plus one such fragment per registered validator); :func:`parse` checks a section against it and
builds the instance, defaults filled in.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Union

from .schemacheck import check_against

#: Python type -> JSON-schema type name, for the field types a policy can hold
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


@dataclasses.dataclass(frozen=True)
class Settings(Mapping[str, Any]):
    """Base class of every validator's settings (subclass it with ``@dataclass(frozen=True)``). An instance is
    also a read-only mapping of its fields, so code written for the policy's dicts keeps working."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))

    def to_json(self) -> dict[str, Any]:
        """The section as plain data (what the policy holds)."""
        return dataclasses.asdict(self)


def setting(default: Any, doc: str = "", **schema: Any) -> Any:
    """A settings field: its default, one line of help, and JSON-schema keywords for its value
    (``limit: int | None = setting(None, "items sampled", minimum=1)``). A list default is copied per instance."""
    metadata = {"schema": schema, "help": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def schema_of(cls: type) -> dict[str, Any]:
    """The JSON-schema object of a settings class: one property per field, unknown keys refused.

    Field types may be ``int``, ``float``, ``bool``, ``str``, ``list[str]``, ``Literal[...]`` and any of these
    ``| None`` (null allowed). ``metadata["schema"]`` adds keywords; ``metadata["help"]`` becomes the description.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not a settings dataclass")
    hints = typing.get_type_hints(cls)
    properties = {f.name: _field_schema(cls, f, hints[f.name]) for f in dataclasses.fields(cls)}
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _field_schema(cls: type, f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    try:
        out = _type_schema(hint)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__}.{f.name}: {exc}") from None
    out.update(f.metadata.get("schema", {}))
    if f.metadata.get("help"):
        out["description"] = f.metadata["help"]
    return out


def _type_schema(hint: Any) -> dict[str, Any]:
    """``{"type": ...}`` or ``{"enum": [...]}`` for one annotation (``X | None`` adds null)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"unsupported type {hint!r}")
        inner = _type_schema(rest[0])
        if "enum" in inner:
            return {**inner, "enum": [*inner["enum"], None], **({"type": [inner["type"], "null"]}
                                                                  if "type" in inner else {})}
        return {**inner, "type": [inner["type"], "null"]}
    if typing.get_origin(hint) is Literal:
        # with its JSON type where the choices share one: an enum alone takes 3.0 for 3
        kinds = {_JSON_TYPES.get(type(a)) for a in args}
        return {"enum": list(args), **({"type": kinds.pop()} if len(kinds) == 1 and None not in kinds else {})}
    if typing.get_origin(hint) is list and args and args[0] in _JSON_TYPES:
        return {"type": "array", "items": {"type": _JSON_TYPES[args[0]]}}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    raise TypeError(f"unsupported type {hint!r} (use int, float, bool, str, list[str], Literal or X | None)")


def defaults_of(cls: type) -> dict[str, Any]:
    """The policy section a settings class gives when the policy says nothing (every field at its default)."""
    return cls().to_json()


def parse(cls: type, mapping: Mapping[str, Any] | None, where: str = "") -> Any:
    """``cls`` built from a policy section, defaults filled in. Raises :class:`~edgeval.errors.PolicyError` with
    one line naming the offending key (``where`` is the section's name, e.g. ``"bbq"``)."""
    if isinstance(mapping, cls):
        return mapping
    section = dict(mapping or {})
    check_against(schema_of(cls), section, where)
    return cls(**section)


__all__ = ["Settings", "setting", "schema_of", "defaults_of", "parse"]
