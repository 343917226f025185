"""Policy: the thresholds that decide the verdict, as data.

A policy comes from a YAML or JSON file, or from ``[tool.edgeval]`` in a pyproject.toml. Its schema is assembled:
the core keys (``schemas/policy.schema.json``) plus one top-level section per registered validator, built from
that validator's ``Settings`` dataclass (:mod:`edgeval.settings`), built-ins and plugins alike. Unknown keys are
rejected, naming the key; NaN and infinity are rejected by the loader, which JSON Schema cannot do. The policy is
merged over the defaults (:func:`default_policy`, also ``DEFAULTS``), so the report always shows the policy exactly
as applied. A ``null`` threshold means "measure and report, do not gate".

Plugin sections used to live under ``plugins.<name>``; that table is still read for one release (with a
:class:`PolicyDeprecationWarning`) and moved to the top level.
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from .errors import PolicyError, UsageError
from .schemacheck import check_against
from .schemacheck import checker as _checker
from .schemas import POLICY_SCHEMA_VERSION, load_schema
from .settings import defaults_of, parse, schema_of
from .suggest import closest

#: the policy's own keys; every registered validator adds its section (see :func:`policy_schema`)
CORE_DEFAULTS: dict[str, Any] = {
    "schema_version": POLICY_SCHEMA_VERSION,
    "validators": ["size", "latency", "bbq", "perplexity"],
}
LEGACY_PLUGINS = "plugins"


class PolicyDeprecationWarning(FutureWarning):
    """A policy uses a form that still works but will be refused in a later release (shown to end users)."""


def __getattr__(name: str) -> Any:
    if name == "DEFAULTS":  # computed: the defaults depend on the registered validators
        return default_policy()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def installed_validators(disabled: Iterable[str] = ()) -> dict[str, Any]:
    """``{name: validator}`` whose settings a policy may hold (built-ins and plugins, unless disabled)."""
    from .plugins import registered_validators

    return registered_validators(tuple(disabled))


def default_policy(disabled: Iterable[str] = ()) -> dict[str, Any]:
    """The full default policy: the core keys, then each registered validator's settings at their defaults."""
    data = copy.deepcopy(CORE_DEFAULTS)
    for name, cls in _settings_classes(disabled):
        if cls is not None:
            data[name] = defaults_of(cls)
    return data


def policy_schema(disabled: Iterable[str] = ()) -> dict[str, Any]:
    """The policy's JSON schema: the static core (``schemas/policy.schema.json``) plus one section per registered
    validator, from its settings class (a validator without one gets a free-form object). The legacy
    ``plugins.<name>`` tables are checked against the same fragments."""
    return copy.deepcopy(_schema(_settings_classes(disabled), _lenient(disabled)))


def _settings_classes(disabled: Iterable[str]) -> tuple[tuple[str, type | None], ...]:
    return tuple((name, getattr(v, "Settings", None)) for name, v in installed_validators(disabled).items())


def _lenient(disabled: Iterable[str]) -> bool:
    """With plugins turned off, a section of a validator that is not loaded passes unchecked (not refused)."""
    from .plugins import AUTOLOAD_ENV

    return bool(tuple(disabled)) or os.environ.get(AUTOLOAD_ENV, "").strip() not in ("", "0")


@lru_cache(maxsize=16)
def _schema(sections: tuple[tuple[str, type | None], ...], lenient: bool) -> dict[str, Any]:
    schema = copy.deepcopy(load_schema("policy"))
    fragments = {name: schema_of(cls) if cls else {"type": "object"} for name, cls in sections}
    for name, fragment in fragments.items():
        if name in schema["properties"]:
            raise UsageError(f"a validator may not be named '{name}': that is a policy key of its own")
        schema["properties"][name] = fragment
    legacy = schema["properties"][LEGACY_PLUGINS]
    legacy["properties"] = copy.deepcopy(fragments)
    if lenient:
        schema["additionalProperties"] = {"type": "object"}
    else:
        legacy["additionalProperties"] = False
    return schema


@lru_cache(maxsize=16)
def _compiled(sections: tuple[tuple[str, type | None], ...], lenient: bool):
    return _checker(json.dumps(_schema(sections, lenient), sort_keys=True))




@dataclass(frozen=True)
class Policy:
    """A validated policy, defaults filled in. ``source`` says where it came from; ``disabled`` names the plugins
    that were turned off when it was read (their sections are kept, unchecked)."""

    data: dict[str, Any] = field(default_factory=default_policy)
    source: str = "defaults"
    disabled: tuple[str, ...] = ()

    def section(self, name: str) -> dict[str, Any]:
        """Settings of validator ``name`` as a plain dict (a copy; empty when the policy has none). A policy built
        by hand (``Policy(data=...)``) may still hold the legacy ``plugins.<name>`` table: read, never ignored."""
        value = self.data.get(name)
        if not isinstance(value, dict):
            value = (self.data.get(LEGACY_PLUGINS) or {}).get(name)
        return copy.deepcopy(value) if isinstance(value, dict) else {}

    def settings_for(self, validator: Any) -> Any:
        """The validator's settings: an instance of its ``Settings`` class (a dict for one without)."""
        cls = getattr(validator, "Settings", None)
        section = self.section(validator.name)
        return parse(cls, section, validator.name) if cls is not None else section

    @property
    def validators(self) -> list[str]:
        return list(self.data["validators"])

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    @classmethod
    def default(cls, disabled: Iterable[str] = ()) -> "Policy":
        return cls(data=default_policy(disabled), disabled=tuple(disabled))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>", disabled: Iterable[str] = ()) -> "Policy":
        """Validate ``raw`` and merge it over the defaults (legacy ``plugins.<name>`` tables move to the top)."""
        validate_policy(raw, source, disabled)
        lifted = _lift_plugins(copy.deepcopy(raw), source)
        return cls(data=_merge(default_policy(disabled), lifted), source=source, disabled=tuple(disabled))

    @classmethod
    def load(cls, path: str | Path, disabled: Iterable[str] = ()) -> "Policy":
        """Read a policy from .yaml/.yml/.json, or from ``[tool.edgeval]`` of a pyproject.toml."""
        path = Path(path)
        return cls.from_dict(_read_policy_file(path), source=str(path), disabled=disabled)

    def with_overrides(self, section: str, **values: Any) -> "Policy":
        """A copy with some settings of one section replaced (None values are ignored)."""
        raw = copy.deepcopy(self.data)
        raw.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
        validate_policy(raw, self.source, self.disabled)
        return Policy(data=raw, source=self.source, disabled=self.disabled)


def _lift_plugins(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Move each legacy ``plugins.<name>`` table to the top level, where every validator's section lives now."""
    legacy = raw.pop(LEGACY_PLUGINS, None) or {}
    for name, section in legacy.items():
        if name in raw:
            raise PolicyError(f"'{name}' is given twice, at the top level and under '{LEGACY_PLUGINS}': keep the "
                              "top-level section", path=source)
        message = (f"'{LEGACY_PLUGINS}.{name}' is deprecated and will be refused in the next release: move the "
                   f"section to the top level ('{name}:')")
        warnings.warn_explicit(message, PolicyDeprecationWarning, source, 0)  # one line that names the file
        raw[name] = section
    return raw


def _merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


#: the most values a YAML policy may expand to once its aliases are followed (a policy has a few hundred)
YAML_MAX_NODES = 10_000


def load_yaml(text: str) -> Any:
    """The document of ``text`` (safe types only), refused as a PolicyError when an alias refers to itself (a
    structure no policy means, which would recurse without end) or the aliases expand it beyond
    :data:`YAML_MAX_NODES` values (the "billion laughs": a few lines that expand to billions)."""
    import yaml

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return None
    budget, on_path = [YAML_MAX_NODES], set()

    def walk(node: Any) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise PolicyError(f"its YAML aliases expand it beyond {YAML_MAX_NODES:,} values")
        if id(node) in on_path:
            raise PolicyError(f"a YAML alias refers to itself (line {node.start_mark.line + 1})")
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
        on_path.add(id(node))
        for child in children:
            walk(child)
        on_path.discard(id(node))

    walk(root)
    return yaml.safe_load(text)


def _read_policy_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError("policy file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file: {exc}", path=path) from None
    if path.name == "pyproject.toml" or path.suffix == ".toml":
        return _from_pyproject(text, path)
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            raw = load_yaml(text)
    except PolicyError as exc:
        raise PolicyError(str(exc), path=path) from None
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: both mean 'not parseable'
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicyError(f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {first}", path=path) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PolicyError(f"a policy must be a mapping, got {type(raw).__name__}", path=path)
    return raw


def _from_pyproject(text: str, path: Path) -> dict[str, Any]:
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"not valid TOML: {exc}", path=path) from None
    section = doc.get("tool", {}).get("edgeval")
    if section is None:
        raise PolicyError("has no [tool.edgeval] table", path=path)
    return section


def find_project_policy(start: Path | None = None) -> Path | None:
    """``pyproject.toml`` in ``start`` (default: cwd) if it has a ``[tool.edgeval]`` table, else None."""
    candidate = (start or Path.cwd()) / "pyproject.toml"
    if candidate.is_file() and "[tool.edgeval" in candidate.read_text(encoding="utf-8", errors="replace"):
        return candidate
    return None


def validate_policy(raw: dict[str, Any], source: str, disabled: Iterable[str] = ()) -> None:
    """Raise :class:`PolicyError` with one line naming the first offending key (NaN and infinity included, which
    JSON Schema cannot reject: a NaN threshold compares false both ways and would pass anything)."""
    sections = _settings_classes(disabled)
    try:
        check_against(None, raw, "", _compiled(sections, _lenient(disabled)))
        if _lenient(disabled):
            _refuse_near_misses(raw, [*load_schema("policy")["properties"], *(name for name, _ in sections)])
    except PolicyError as exc:
        raise PolicyError(exc.detail, path=source) from None


def _refuse_near_misses(raw: dict[str, Any], known: list[str]) -> None:
    """With plugins off an unknown section passes unchecked (it may be a plugin's), but not one that looks like a
    typo of a known key: ``sise:`` would otherwise be ignored and its threshold never applied (fail open)."""
    for key in raw:
        close = None if key in known else closest(key, known)
        if close is not None:
            raise PolicyError(f"unknown key '{key}' (did you mean '{close}'?): a section of a plugin that is not "
                              "loaded is not checked, but this one looks like a typo")


