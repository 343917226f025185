"""What the search reads from a gate report, the Pareto front over the evaluated points, and the recommendation.

Three axes, all minimised: the **objective** (bytes, zlib bytes or latency p50), **ΔSRS** (the paired change in
the BBQ stereotype-reinforcement score against the dense model, with its 95 % interval) and the **perplexity
ratio** to the dense model. A point on the front is one that no other measured point beats on every axis (equal on
all counts as not beaten). Points without a measurement on an axis (a failed candidate, a policy without BBQ) are
kept in the output but compared on the axes they have in common with nobody: a failed point is never on the front.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .design import ERROR, FAIL, PASS

AXES = ("objective", "delta_srs", "perplexity_ratio")


def outcome(verdict: str) -> str:
    """The design's outcome of a verdict: ``pass``; ``error``; anything else (blocked, inconclusive) ``fail``."""
    return {"pass": PASS, "error": ERROR}.get(verdict, FAIL)


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def metrics(results: Mapping[str, Any], objective_keys: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """The figures of one report: each objective (``{"zlib": ("size", "compressed_bytes")}``), ΔSRS and its
    interval, the perplexity ratio, BBQ items scored and the measured weight sparsity."""
    overall = _dig(dict(results), "bbq", "comparison", "overall") or {}
    out = {name: _dig(dict(results), validator, key) for name, (validator, key) in objective_keys.items()}
    out.update(delta_srs=overall.get("delta_srs"), delta_srs_ci=[overall.get("delta_srs_ci_low"),
                                                               overall.get("delta_srs_ci_high")],
               perplexity_ratio=_dig(dict(results), "perplexity", "ratio_to_baseline"),
               bbq_items_scored=_dig(dict(results), "bbq", "n_scored"),
               weight_sparsity=_dig(dict(results), "size", "weight_sparsity"))
    return out


def vector(point: Mapping[str, Any], objective: str) -> tuple[float | None, ...]:
    m = point.get("metrics") or {}
    return (m.get(objective), m.get("delta_srs"), m.get("perplexity_ratio"))


def _beats(a: Sequence[float | None], b: Sequence[float | None]) -> bool:
    """``a`` dominates ``b``: no worse on every axis both measured, better on one; and ``a`` measured every
    axis ``b`` did."""
    measured = [(x, y) for x, y in zip(a, b, strict=True) if y is not None]
    pairs = [(x, y) for x, y in measured if x is not None]
    if len(pairs) != len(measured):
        return False
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def front(points: Sequence[Mapping[str, Any]], objective: str) -> list[str]:
    """Keys of the non-dominated measured points (status done with the objective measured), in input order."""
    measured = [p for p in points if p["status"] == "done" and vector(p, objective)[0] is not None]
    vectors = {p["key"]: vector(p, objective) for p in measured}
    return [p["key"] for p in measured
            if not any(_beats(vectors[q["key"]], vectors[p["key"]]) for q in measured if q is not p)]


def compression_rank(point: Mapping[str, Any], objective: str) -> tuple[float, float, float]:
    """Sort key, most compressed first: the objective, then the higher sparsity, then the lower ΔSRS."""
    m = point.get("metrics") or {}
    dsrs = m.get("delta_srs")
    return (float(m[objective]), -float(point.get("sparsity") or 0.0), float("inf") if dsrs is None else dsrs)


def recommend(points: Sequence[Mapping[str, Any]], objective: str) -> str | None:
    """Key of the most compressed point whose own gate report passed (None when none did)."""
    passed = [p for p in points if p["status"] == "done" and p["verdict"] == "pass"
              and (p.get("metrics") or {}).get(objective) is not None]
    return min(passed, key=lambda p: compression_rank(p, objective))["key"] if passed else None


__all__ = ["AXES", "outcome", "metrics", "vector", "front", "recommend", "compression_rank"]
