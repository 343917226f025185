"""The runtime registry: which runtimes can open which formats, and which one a run uses.

Entries are keyed by (format, runtime name). Built-ins and plugins register the same way, through the
``edgeval_runtimes`` hook (see :mod:`edgeval.plugins`). A run's runtime for a format is chosen in this order:

1. an explicit choice (``--runtime NAME`` or the policy's ``runtime: {name: NAME}``) when NAME runs that format;
2. else a plugin's runtime for the format (two plugins for one format: the user must choose);
3. else the first built-in for the format (:data:`BUILTIN_RUNTIMES` order).

A disabled plugin (``--disable-plugin``) registers nothing, so it is never chosen.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import UsageError
from ..suggest import suggestion

BUILTIN = "builtin"

#: (format, runtime name, "module:Class"); the first entry of a format is its default
BUILTIN_RUNTIMES: tuple[tuple[str, str, str], ...] = (
    ("onnx", "onnxruntime", "edgeval.runtimes.onnx:OnnxRuntime"),
    ("tflite", "tflite", "edgeval.runtimes.tflite:TFLiteRuntime"),
    ("hf", "torch", "edgeval.runtimes.torch:TorchRuntime"),
    ("gguf", "llama.cpp", "edgeval.runtimes.llamacpp:LlamaCppRuntime"),
    ("gguf", "torch", "edgeval.runtimes.torch:TorchRuntime"),
    ("genai", "ort-genai", "edgeval.runtimes.genai:GenAIRuntime"),
)


@dataclass(frozen=True)
class RuntimeSpec:
    """One registration: ``target`` (a class or ``"module:Class"``) runs ``format`` files under ``name``.
    Plugins return a list of these from ``edgeval_runtimes`` (:func:`edgeval.plugin.runtime` builds one)."""

    format: str
    name: str
    target: Any
    plugin: str = BUILTIN

    def load(self) -> type:
        """The runtime class (imported now when given as ``"module:Class"``)."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


def builtin_specs() -> list[RuntimeSpec]:
    """The built-in runtimes as specs (what :mod:`edgeval.builtin` registers)."""
    return [RuntimeSpec(fmt, name, target) for fmt, name, target in BUILTIN_RUNTIMES]


def _specs_from(plugin: str, value: Any) -> list[RuntimeSpec]:
    """A plugin's hook result as specs: a list of :class:`RuntimeSpec`, or the older ``{format: class}`` mapping
    (the runtime's name is then the class's ``name`` attribute, else the plugin's name)."""
    if isinstance(value, Mapping):
        specs = []
        for fmt, target in value.items():
            name = getattr(target, "name", None) if not isinstance(target, str) else None
            specs.append(RuntimeSpec(str(fmt), name if isinstance(name, str) else plugin, target, plugin))
        return specs
    if isinstance(value, (list, tuple)) and all(isinstance(v, RuntimeSpec) for v in value):
        return [RuntimeSpec(v.format, v.name, v.target, plugin) for v in value]
    raise UsageError(f"plugin '{plugin}' returns {type(value).__name__} from edgeval_runtimes: expected a list of "
                     "edgeval.plugin.runtime(format, name, target) entries")


def all_runtimes(disabled: Iterable[str] = ()) -> list[RuntimeSpec]:
    """Every registered runtime, plugins first (in registration order), then the built-ins."""
    from ..plugins import plugin_manager

    pm = plugin_manager(tuple(disabled))
    impls = pm.hook.edgeval_runtimes.get_hookimpls()
    found: list[RuntimeSpec] = []
    for impl in [i for i in impls if i.plugin_name != BUILTIN] + [i for i in impls if i.plugin_name == BUILTIN]:
        found.extend(_specs_from(impl.plugin_name, impl.function()))
    _refuse_duplicates(found)
    return found


def _refuse_duplicates(specs: list[RuntimeSpec]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for spec in specs:
        key = (spec.format, spec.name)
        if key in seen and seen[key] != spec.plugin:
            if BUILTIN in (seen[key], spec.plugin):
                continue  # a plugin may replace a built-in of the same name: it comes first, so it wins
            raise UsageError(f"plugins '{seen[key]}' and '{spec.plugin}' both register runtime '{spec.name}' for "
                             f"{spec.format} files (disable one with --disable-plugin NAME)")
        seen.setdefault(key, spec.plugin)


def resolve(fmt: str, choice: str | None = None, disabled: Iterable[str] = ()) -> RuntimeSpec:
    """The runtime a run uses for ``fmt`` files (see the module docstring for the order). UsageError for an
    unknown or unfit ``choice``, an unknown format, or two plugins competing for one format."""
    specs = all_runtimes(disabled)
    for_format = [s for s in specs if s.format == fmt]
    if not for_format:
        known = sorted({s.format for s in specs})
        raise UsageError(f"no runtime for format '{fmt}'; formats with a runtime: {', '.join(known)}")
    if choice is not None:
        return _chosen(fmt, choice, specs, for_format)
    plugins = [s for s in for_format if s.plugin != BUILTIN]
    if len({s.plugin for s in plugins}) > 1:
        names = ", ".join(f"{s.name} ({s.plugin})" for s in plugins)
        raise UsageError(f"several plugins run {fmt} files ({names}): choose one with --runtime NAME")
    return (plugins or for_format)[0]


def _chosen(fmt: str, choice: str, specs: list[RuntimeSpec], for_format: list[RuntimeSpec]) -> RuntimeSpec:
    match = next((s for s in for_format if s.name == choice), None)
    if match is not None:
        return match
    elsewhere = sorted({s.format for s in specs if s.name == choice})
    names = sorted({s.name for s in for_format})
    if elsewhere:
        raise UsageError(f"runtime '{choice}' runs {', '.join(elsewhere)} files, not {fmt}; runtimes for {fmt}: "
                         f"{', '.join(names)}")
    everything = sorted({s.name for s in specs})
    raise UsageError(f"unknown runtime '{choice}'{suggestion(choice, everything)}; runtimes for {fmt}: "
                     f"{', '.join(names)}")


def runs(choice: str, fmt: str, disabled: Iterable[str] = ()) -> bool:
    """Whether runtime ``choice`` is registered for ``fmt``."""
    return any(s.format == fmt and s.name == choice for s in all_runtimes(disabled))
