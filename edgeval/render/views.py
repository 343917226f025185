"""What renderers and sinks know of a validator: what it says about its own results, looked up generically.

Renderers and sinks never name a validator. For each validator in ``report.results`` they find the validator
object (through the plugin manager) and ask it, through these optional methods (see
:class:`edgeval.validators.base.Validator`):

- ``describe(results) -> list[str]``: short sentences (Markdown and HTML summaries);
- ``metrics(results) -> dict[str, float]``: flat numbers, keys without a prefix (MLflow);
- ``warnings(results) -> list[str]``: sentences that must be seen (the CLI summary prints them);
- ``markdown(results) -> list[str]`` / ``html(results) -> str``: a richer section, used instead of describe();
- ``title``: the section's heading (default: the validator's name).

A validator that is not installed here, or lacks a method, gets the generic fallback: no sentences (its checks
are in the checks table) and, for sinks, every finite number of its results, flattened.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from ..report import Report


@dataclass(frozen=True)
class ValidatorView:
    """One validator's results in a report, with the validator object when it is installed here."""

    name: str
    validator: Any
    results: Mapping[str, Any]

    @property
    def title(self) -> str:
        title = getattr(self.validator, "title", None)
        return title if isinstance(title, str) and title else self.name

    def method(self, name: str) -> Callable[[Mapping[str, Any]], Any] | None:
        """The validator's optional method ``name``, or None."""
        found = getattr(self.validator, name, None)
        return found if callable(found) else None

    def sentences(self, name: str = "describe") -> list[str]:
        """The validator's ``describe`` (or ``warnings``) sentences; a method that fails says so in one sentence,
        so that a view never takes the page down."""
        method = self.method(name)
        if method is None:
            return []
        try:
            found = method(self.results) or []
            found = [found] if isinstance(found, str) else found  # one text is one sentence, not its letters
            return [str(s) for s in found if str(s)]
        except Exception as exc:  # noqa: BLE001  (a plugin's view must not break the report's rendering)
            return [f"(the {self.name} validator could not {name} its results: {type(exc).__name__}: {exc})"]

    def metrics(self) -> dict[str, float]:
        """The validator's ``metrics``, or every finite number of its results flattened (``a.b.c``)."""
        method = self.method("metrics")
        found = method(self.results) if method is not None else dict(flat_numbers(self.results))
        return {str(k): float(v) for k, v in (found or {}).items() if finite(v)}


def validator_views(report: Report) -> list[ValidatorView]:
    """A view per validator with results in ``report``, in the order they ran."""
    known = _installed(report.run.get("disabled_plugins") or ())
    return [ValidatorView(name, known.get(name), results if isinstance(results, Mapping) else {})
            for name, results in report.results.items()]


def _installed(disabled: Any) -> dict[str, Any]:
    """The validators installed here; none when the plugins cannot be loaded (the views then fall back)."""
    from ..plugins import registered_validators

    try:
        return registered_validators(tuple(disabled) if isinstance(disabled, (list, tuple)) else ())
    except Exception:  # noqa: BLE001  (rendering a saved report must not depend on every plugin importing)
        return {}


def finite(value: Any) -> bool:
    """A real, finite number that fits a float (bools excluded; an int past 1e308 is not: MLflow needs floats)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # math.isfinite(10**400) raises instead of answering
        return False


def flat_numbers(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """``("a.b", 1.0)`` for every finite number in nested mappings (lists are skipped)."""
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flat_numbers(value, f"{name}.")
        elif finite(value):
            yield name, float(value)


__all__ = ["ValidatorView", "validator_views", "flat_numbers", "finite"]
