"""Plugin system (pluggy). The hook specifications below are the contract for plugins.

A plugin is any module or object with functions marked ``@edgeval.plugins.hookimpl`` and named like the specs below.
Packages advertise plugins in the ``edgeval`` entry-point group::

    [project.entry-points.edgeval]
    my_plugin = "my_package.edgeval_plugin"

edgeval's own validators and runtimes are registered the same way (entry point ``builtin`` →
:mod:`edgeval.builtin`). Turn off autoloading of third-party plugins with ``EDGEVAL_DISABLE_PLUGIN_AUTOLOAD=1``
or disable one with ``--disable-plugin NAME``; the built-ins are always loaded.
"""
from __future__ import annotations

import os
import re
from importlib import metadata
from typing import Any, Iterable

import pluggy

from .errors import UsageError
from .ids import is_check_id
from .suggest import suggestion

PROJECT = "edgeval"
ENTRY_POINT_GROUP = "edgeval"
AUTOLOAD_ENV = "EDGEVAL_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN = "builtin"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class EdgevalSpec:
    """Hook specifications."""

    @hookspec
    def edgeval_validators(self) -> list[Any]:  # type: ignore[empty-body]
        """Return validator objects (see :class:`edgeval.validators.base.Validator`): each has ``name``,
        ``summary``, ``Settings`` (a :class:`edgeval.plugin.Settings` dataclass) and ``run(ctx, settings) ->
        Outcome``. Names must be unique across all plugins. Every validator's settings are the policy's top-level
        ``<name>:`` section, checked against the schema built from its ``Settings`` (``plugins.<name>`` is still
        read, deprecated)."""

    @hookspec
    def edgeval_runtimes(self) -> Any:
        """Return a list of :func:`edgeval.plugin.runtime` entries ``(format, name, class or "module:Class")``
        (the older ``{format: class}`` mapping is still read). The class is called with ``(artifact,
        tokenizer_path=None, options=RuntimeOptions)`` and must satisfy :class:`edgeval.runtimes.Runtime`. A
        plugin's runtime for a format is chosen over the built-in one unless the user names another with
        ``--runtime``; see :mod:`edgeval.runtimes.registry`."""

    @hookspec(firstresult=True)
    def edgeval_detect_format(self, path: str) -> str | None:
        """Return the format name of the model at ``path`` when this plugin knows it (a new format, say), else
        None. Plugins are asked before the built-in formats. A new format also needs a runtime
        (``edgeval_runtimes``)."""

    @hookspec
    def edgeval_compressors(self) -> list[Any]:  # type: ignore[empty-body]
        """Return compressor objects (see :class:`edgeval.converters.compressor.Compressor`): each has ``name``,
        ``kind`` (``prune`` or ``quantize``), ``summary``, ``Settings``, ``accepts``, ``produces`` and
        ``apply(source, out_dir, settings, ctx) -> StepResult``. Names must be unique across all plugins; they
        are the values of ``edgeval compress --method/--then``."""

    @hookspec
    def edgeval_after_prune(self, model_dir: str, manifest: dict) -> None:
        """Called after a prune step wrote a pruned model (``edgeval prune``, or a prune step of
        ``edgeval compress``); ``manifest`` is the step's pruning record."""

    @hookspec
    def edgeval_after_compress(self, out_dir: str, manifest: dict) -> None:
        """Called after ``edgeval compress`` (or ``edgeval prune``) wrote its output folder and its
        ``compression.json`` manifest (``manifest``: that document)."""

    @hookspec
    def edgeval_report_ready(self, report: Any, path: str | None) -> None:
        """Called once a report is final (and written to ``path``, when it was). Sinks (MLflow, …) hook here.
        A sink must not change the report. An exception here is recorded in the report as an error (verdict
        error, exit code 4, no ``BLESSED``): a run whose sink failed is not a deployable run."""

    @hookspec
    def edgeval_search_done(self, result: Any, path: str) -> None:
        """Called once ``edgeval search`` wrote its outputs: ``result`` is the
        :class:`edgeval.search.SearchResult` (points, front, recommended point), ``path`` its ``search.json``.
        An exception here is printed as one error line; the search's result and exit code stand."""


_managers: dict[frozenset[str], pluggy.PluginManager] = {}


def plugin_manager(disabled: Iterable[str] = ()) -> pluggy.PluginManager:
    """The plugin manager with built-ins and (unless disabled) entry-point plugins registered. Cached per set."""
    key = frozenset(disabled) | ({"*autoload-off*"} if os.environ.get(AUTOLOAD_ENV) else frozenset())
    if key not in _managers:
        _managers[key] = _build(set(disabled))
    return _managers[key]


def _build(disabled: set[str]) -> pluggy.PluginManager:
    from . import builtin

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(EdgevalSpec)
    pm.register(builtin, name=BUILTIN)
    if os.environ.get(AUTOLOAD_ENV, "").strip() not in ("", "0"):
        return pm
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == BUILTIN or ep.name in disabled or pm.has_plugin(ep.name):
            continue
        pm.register(_load(ep), name=ep.name)
    return pm


def _load(ep: metadata.EntryPoint) -> Any:
    """The plugin object of an entry point; an import that fails names the plugin and how to turn it off."""
    try:
        return ep.load()
    except Exception as exc:  # any error of a third-party import: the user needs its name, not a traceback
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UsageError(f"plugin '{ep.name}' ({ep.value}) failed to import: {type(exc).__name__}: {first} "
                         f"(fix or uninstall it, or skip it with --disable-plugin {ep.name} or "
                         f"{AUTOLOAD_ENV}=1)") from None


def registered_validators(disabled: Iterable[str] = ()) -> dict[str, Any]:
    """``{name: validator}`` from every plugin (built-ins first)."""
    found: dict[str, Any] = {}
    for batch in reversed(plugin_manager(disabled).hook.edgeval_validators()):
        for validator in batch:
            if not is_check_id(getattr(validator, "name", None)) or "." in validator.name:
                raise UsageError(f"a plugin registers a validator named {getattr(validator, 'name', None)!r}: a "
                                 "name is lower-case letters, digits and '_' (it is a policy key and a check id)")
            if validator.name in found:
                raise UsageError(f"two plugins register a validator named '{validator.name}'")
            _check_settings_class(validator)
            _check_side_files(validator)
            found[validator.name] = validator
    return found


def _check_settings_class(validator: Any, what: str = "validator") -> None:
    """A validator's ``Settings`` must make a policy section (a frozen dataclass deriving from
    :class:`edgeval.settings.Settings`, every field with a default and a supported type): a bad one would break
    every run, its own or not, with a bare TypeError, so it is a usage error that names the validator instead."""
    from .settings import Settings, schema_of

    cls = getattr(validator, "Settings", None)
    if cls is None:
        return
    try:
        if not (isinstance(cls, type) and issubclass(cls, Settings)):
            raise TypeError(f"{cls!r} does not derive from edgeval.plugin.Settings")
        schema_of(cls)
        cls().to_json()
    except Exception as exc:  # noqa: BLE001  (any failure of third-party code: name it, never a traceback)
        where = getattr(type(validator), "__module__", "?")
        raise UsageError(f"{what} '{validator.name}' ({where}) has a Settings class edgeval cannot use: "
                         f"{type(exc).__name__}: {exc} (fix or uninstall its plugin, or skip it with "
                         f"--disable-plugin NAME or {AUTOLOAD_ENV}=1)") from None


def _check_side_files(validator: Any) -> None:
    """Each declared side-file suffix must name a file beside the report (``.x.json``): a suffix with a path
    separator (or an empty one, which is the report itself) would make every run's clean-up fail or misfire."""
    for suffix in getattr(validator, "side_files", None) or ():
        if not isinstance(suffix, str) or not suffix or "/" in suffix or os.sep in suffix:
            raise UsageError(f"validator '{validator.name}' declares the side file {suffix!r}: a side file is a "
                             "non-empty file-name suffix such as '.myval.json' (fix or uninstall its plugin, or "
                             f"skip it with --disable-plugin NAME or {AUTOLOAD_ENV}=1)")


def registered_compressors(disabled: Iterable[str] = ()) -> dict[str, Any]:
    """``{name: compressor}`` from every plugin (built-ins first); a malformed or duplicate one is a usage error
    naming it."""
    from .converters.compressor import KINDS

    found: dict[str, Any] = {}
    for batch in reversed(plugin_manager(disabled).hook.edgeval_compressors()):
        for comp in batch:
            name = getattr(comp, "name", None)
            if not (isinstance(name, str) and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name)):
                raise UsageError(f"a plugin registers a compressor named {name!r}: a name is lower-case letters, "
                                 "digits, '-' and '_'")
            if name in found:
                raise UsageError(f"two plugins register a compressor named '{name}'")
            if getattr(comp, "kind", None) not in KINDS or not callable(getattr(comp, "apply", None)):
                raise UsageError(f"compressor '{name}' ({type(comp).__module__}) needs kind in {KINDS} and an "
                                 f"apply() method (fix or uninstall its plugin, or skip it with --disable-plugin "
                                 f"NAME or {AUTOLOAD_ENV}=1)")
            _check_settings_class(comp, "compressor")
            found[name] = comp
    return found


def registered_runtimes(disabled: Iterable[str] = ()) -> dict[str, Any]:
    """``{format: runtime class target}`` of the runtime each format gets by default (see
    :func:`edgeval.runtimes.registry.resolve`)."""
    from .runtimes.registry import all_runtimes, resolve

    return {fmt: resolve(fmt, None, disabled).target for fmt in dict.fromkeys(s.format for s in all_runtimes(disabled))}


def select_validators(names: Iterable[str], disabled: Iterable[str] = ()) -> list[Any]:
    """Validators by name, in the order given; an unknown name is a usage error with a suggestion."""
    known = registered_validators(disabled)
    chosen: list[Any] = []
    for name in names:
        if name in [v.name for v in chosen]:  # it would run twice (BBQ: hours) and repeat every check id
            raise UsageError(f"validator '{name}' is named twice")
        if name not in known:
            raise UsageError(f"unknown validator '{name}'{suggestion(name, sorted(known), list_known=True)}")
        chosen.append(known[name])
    return chosen
