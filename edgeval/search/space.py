"""The search space: which compression chains are tried, at which sparsities, and what is minimised.

A *method* is one registered compressor (``magnitude``) or a chain of them joined with ``+`` (``wanda+int8``: prune,
then quantize). A step may carry its own settings in brackets, so that patterns and bit widths are searched as
methods side by side: ``magnitude[pattern=2:4]``, ``int4[block_size=64]``, ``wanda[pattern=4:8]+int8``. A pruning
step with an N:M ``pattern`` (its own or ``--method-set``'s) implies its sparsity: its chain is a single point,
like a quantizer. Any
other chain with a prune step has a monotone **sparsity axis** (the grid ``lo, lo + resolution, ..., hi``),
searched by :mod:`edgeval.search.design`; a chain without one (``int8``) is a single point. Fixed settings
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
    #: each step's own settings (``magnitude[pattern=2:4]``), over the fixed ones of its compressor
    own: tuple[Mapping[str, Any], ...] = ()

    @property
    def prunes(self) -> bool:
        return any(kind == "prune" for _, kind in self.chain) and self.grid != (None,)

    def methods(self, index: int, fixed: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        """The ``compress`` methods (``[(name, settings)]``) of the candidate at grid ``index``."""
        sparsity = self.grid[index]
        own = self.own or ({},) * len(self.chain)
        return [(name, {**dict(fixed.get(name, {})), **dict(mine),
                        **({"sparsity": sparsity} if kind == "prune" and sparsity is not None else {})})
                for (name, kind), mine in zip(self.chain, own, strict=True)]


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
    names = [canonical(parse_method(m.strip())) for m in methods if m.strip()]
    if not names:
        raise UsageError("empty search space: name at least one method (--methods magnitude,wanda)")
    grid = sparsity_grid(*(sparsity or DEFAULT_SPARSITY))
    fixed = {k: dict(v) for k, v in (fixed or {}).items()}
    axes = tuple(_axis(name, grid, fixed, source_format, disabled) for name in dict.fromkeys(names))
    if sparsity is not None and not any(a.prunes for a in axes):
        raise UsageError(f"{', '.join(a.name for a in axes)} cannot take a sparsity: no pruning step in "
                            "the chain, or one whose settings imply it (a quantizer, an N:M pattern: one point); drop "
                            "--sparsity or chain it after a pruner, "
                            "e.g. wanda+int8")
    _check_fixed(fixed, axes)
    return Space(axes, fixed, objective)


def split_methods(text: str, sep: str = ",") -> list[str]:
    """``"magnitude,wanda[pattern=2:4,seed=1]"`` -> ``["magnitude", "wanda[pattern=2:4,seed=1]"]``: a ``sep``
    inside brackets belongs to a step's settings (``sep="+"`` splits a chain into its steps)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == sep and depth == 0:
            out.append(text[start:i])
            start = i + 1
    parts = [m.strip() for m in [*out, text[start:]]]
    return parts if sep == "+" else [m for m in parts if m]


def _value(text: str) -> Any:
    """A bracket setting's value: JSON when it parses (2, 0.5, true, null, "x"), else the text (``2:4``)."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_step(step: str, method: str) -> tuple[str, dict[str, Any]]:
    """``"wanda[pattern=2:4,seed=1]"`` -> ``("wanda", {"pattern": "2:4", "seed": 1})``; UsageError when malformed."""
    name, bracket, rest = step.partition("[")
    if not bracket:
        return step, {}
    if not rest.endswith("]") or "[" in rest or "]" in rest[:-1] or not name.strip():
        raise UsageError(f"method {method!r}: write a step's own settings as NAME[KEY=VALUE,...], "
                         "e.g. magnitude[pattern=2:4]")
    settings: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in rest[:-1].split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"method {method!r}: setting {pair!r} is not KEY=VALUE")
        if key.strip() in settings:
            raise UsageError(f"method {method!r}: {key.strip()} is set twice")
        if key.strip() == "sparsity":
            raise UsageError(f"method {method!r}: the sparsity is the searched axis; use --sparsity LO:HI "
                             "(an N:M pattern implies its own)")
        settings[key.strip()] = _value(value.strip())
    return name.strip(), settings


def canonical(steps: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """The one spelling of a chain: ``magnitude[pattern=2:4,seed=1]+int8`` (settings sorted, no empty brackets),
    so that two spellings of one chain are one method."""
    import json

    def shown(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    return "+".join(name + (f"[{','.join(f'{k}={shown(v)}' for k, v in sorted(s.items()))}]" if s else "")
                    for name, s in steps)


def parse_method(name: str) -> list[tuple[str, dict[str, Any]]]:
    """``"wanda[pattern=2:4]+int8"`` -> its steps with their own settings; UsageError when malformed."""
    raw = split_methods(name, "+")
    if not all(raw):
        raise UsageError(f"method {name!r}: a chain is compressor names joined by '+', e.g. wanda+int8")
    return [parse_step(s, name) for s in raw]


def _axis(name: str, grid: tuple[float, ...], fixed: Mapping[str, Mapping[str, Any]], source_format: str,
          disabled: Sequence[str]) -> Axis:
    """Plan the chain ``name`` (at its lowest sparsity) to refuse an unknown method, a bad chain or setting now.
    ``name`` is canonical (:func:`canonical`)."""
    from ..converters.chain import plan
    from ..plugins import registered_compressors

    steps = parse_method(name)
    known = registered_compressors(disabled)
    for step, _ in steps:
        if step not in known:
            plan(source_format, [(step, {})], None, _export_probe(), disabled)  # raises "unknown … did you mean"
    chain = tuple((s, str(known[s].kind)) for s, _ in steps)
    own = tuple(settings for _, settings in steps)
    implied = any(kind == "prune" and str({**dict(fixed.get(step, {})), **dict(mine)}.get("pattern", "unstructured"))
                  != "unstructured" for (step, kind), mine in zip(chain, own, strict=True))
    axis = Axis(name, chain, grid if any(k == "prune" for _, k in chain) and not implied else (None,), own)
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


__all__ = ["Axis", "Space", "OBJECTIVES", "build_space", "sparsity_grid", "parse_range", "split_methods",
           "parse_step", "parse_method", "canonical"]
