"""Validator settings as frozen dataclasses: one class per validator, its fields the keys of its policy section.

A field's default is the policy default; ``field(metadata={"schema": {...}})`` carries the JSON-schema keywords
for its value (``minimum``, ``enum``, …) and ``metadata={"help": "..."}`` one line for the docs. Instances also
read like the mapping they replace (``settings["limit"]``, ``settings.get("limit")``) so older code keeps working.
"""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base class of every validator's settings (subclass it with ``@dataclass(frozen=True)``)."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = ["Settings"]
