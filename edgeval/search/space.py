"""The search space: which compression chains are tried, at which sparsities, and what is minimised.

A *method* is one registered compressor (``magnitude``) or a chain of them joined with ``+`` (``wanda+int8``: prune,
then quantize). A chain with a prune step has a monotone **sparsity axis** (the grid ``lo, lo + resolution, ...,
hi``), searched by :mod:`edgeval.search.design`; a chain without one (``int8``) is a single point. Fixed settings
per compressor (``{"wanda": {"n_samples": 8}}``) go with every candidate of that compressor. Every chain is planned
by :func:`edgeval.converters.chain.plan` before any work, so an impossible chain or a bad setting fails in a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import UsageError

#: objective name -> (validator that measures it, key in that validator's results, what it is)
OBJECTIVES: dict[str, tuple[str, str, str]] = {
    "bytes": ("size", "bytes", "bytes on disk"),
    "zlib": ("size", "compressed_bytes", "bytes after zlib level 1"),
    "latency": ("latency", "p50_ms", "latency p50 (ms) on the candidate's runtime"),
}
DEFAULT_SPARSITY = (0.1, 0.9, 0.1)
_EPS = 1e-9


@dataclass(frozen=True)
class Axis:
    """One method of the space: its chain (``[(compressor, kind)]``) and the sparsities it may take (``(None,)``
    for a chain without a prune step)."""

    name: str
    chain: tuple[tuple[str, str], ...]
    grid: tuple[float | None, ...]

    @property
    def prunes(self) -> bool:
        return any(kind == "prune" for _, kind in self.chain)

    def methods(self, index: int, fixed: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """The ``compress`` methods (``[(name, settings)]``) of the candidate at grid ``index``."""
        sparsity = self.grid[index]
        return [(name, {**dict(fixed.get(name, {})), **({"sparsity": sparsity} if kind == "prune" else {})})
                for name, kind in self.chain]


@dataclass(frozen=True)
class Space:
    """The axes to search, the fixed settings per compressor and the objective."""

    axes: tuple[Axis, ...]
    fixed: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objective: str = "zlib"

    @property
    def size(self) -> int:
        return sum(len(a.grid) for a in self.axes)


def sparsity_grid(lo: float, hi: float, resolution: float) -> tuple[float, ...]:
    """``lo, lo + resolution, ..., <= hi`` rounded to 6 decimals; UsageError for an empty or invalid range."""
    if not (0 < lo < 1 and 0 < hi < 1) or resolution <= 0:
        raise UsageError(f"sparsity range {lo:g}:{hi:g} with resolution {resolution:g} is not valid: sparsities "
                            "lie strictly between 0 and 1 and the resolution is > 0")
    steps = int((hi - lo) / resolution + _EPS) + 1 if hi >= lo else 0
    if steps <= 0:
        raise UsageError(f"empty search space: the sparsity range {lo:g}:{hi:g} holds no point (lo > hi)")
    return tuple(round(lo + i * resolution, 6) for i in range(steps))


def parse_range(text: str) -> tuple[float, float]:
    """``"0.1:0.9"`` -> (0.1, 0.9); ``"0.5"`` -> (0.5, 0.5); UsageError otherwise."""
    lo, _, hi = text.partition(":")
    try:
        return float(lo), float(hi or lo)
    except ValueError:
        raise UsageError(f"--sparsity {text!r}: give LO:HI such as 0.1:0.9, or one value") from None


def build_space(methods: Sequence[str], sparsity: tuple[float, float, float] | None = None,  # noqa: PLR0913
                fixed: Mapping[str, Mapping[str, Any]] | None = None, objective: str = "zlib",
                source_format: str = "hf", disabled: Sequence[str] = ()) -> Space:
    """The :class:`Space` of ``methods`` (``["magnitude", "wanda+int8"]``); every chain planned once.
    ``sparsity``: (lo, hi, resolution), None for the default; given explicitly, at least one chain must prune."""
    if objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    names = [m.strip() for m in methods if m.strip()]
    if not names:
        raise UsageError("empty search space: name at least one method (--methods magnitude,wanda)")
    grid = sparsity_grid(*(sparsity or DEFAULT_SPARSITY))
    fixed = {k: dict(v) for k, v in (fixed or {}).items()}
    axes = tuple(_axis(name, grid, fixed, source_format, disabled) for name in dict.fromkeys(names))
    if sparsity is not None and not any(a.prunes for a in axes):
        raise UsageError(f"{', '.join(a.name for a in axes)} cannot take a sparsity: no pruning step in "
                            "the chain (a quantizer is one point); drop --sparsity or chain it after a pruner, "
                            "e.g. wanda+int8")
    _check_fixed(fixed, axes)
    return Space(axes, fixed, objective)


def _axis(name: str, grid: tuple[float, ...], fixed: Mapping[str, Mapping[str, Any]], source_format: str,
          disabled: Sequence[str]) -> Axis:
    """Plan the chain ``name`` (at its lowest sparsity) to refuse an unknown method, a bad chain or setting now."""
    from ..converters.chain import plan
    from ..plugins import registered_compressors

    steps = [s.strip() for s in name.split("+")]
    if not all(steps):
        raise UsageError(f"method {name!r}: a chain is compressor names joined by '+', e.g. wanda+int8")
    known = registered_compressors(disabled)
    for step in steps:
        if step not in known:
            plan(source_format, [(step, {})], None, _export_probe(), disabled)  # raises "unknown … did you mean"
    chain = tuple((s, str(known[s].kind)) for s in steps)
    axis = Axis(name, chain, grid if any(k == "prune" for _, k in chain) else (None,))
    plan(source_format, axis.methods(0, fixed), None, _export_probe(), disabled)
    return axis


def _export_probe() -> Any:
    from ..converters.chain import ExportOptions

    return ExportOptions(legacy=True, kv_cache=True, next_token_output=True, parity=False)


def _check_fixed(fixed: Mapping[str, Any], axes: Sequence[Axis]) -> None:
    used = {name for a in axes for name, _ in a.chain}
    for name, settings in fixed.items():
        if name not in used:
            raise UsageError(f"--method-set {name}.…: '{name}' is not a step of any searched method "
                             f"({', '.join(a.name for a in axes)})")
        if "sparsity" in settings:
            raise UsageError(f"--method-set {name}.sparsity: the sparsity is the searched axis; use --sparsity LO:HI")


__all__ = ["Axis", "Space", "OBJECTIVES", "build_space", "sparsity_grid", "parse_range"]
