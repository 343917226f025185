"""Early stop shared by the bias gates: score in looks, run the decision rule after each, stop when it decides.

The sample's units (BBQ context groups, CrowS-Pairs pairs, StereoSet triples) are scored in ``looks`` slices, in
a seeded random order. After each slice the caller's rule (:func:`edgeval.decision.decide` with the look's
:class:`~edgeval.decision.Plan`) runs on everything scored so far, with O'Brien-Fleming-type boundaries over the
information fractions (share of units scored). A look that reaches **block** or **pass** stops scoring; that
decision is the verdict, so an early stop changes how many units are scored, never what a pass or block claims.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .decision import Decision


def look_sizes(n_units: int, looks: int) -> list[int]:
    """Cumulative numbers of units scored at each look; the last is all of them."""
    looks = max(1, min(looks, n_units))
    return sorted({round(n_units * (k + 1) / looks) for k in range(looks)})


def fractions(sizes: Sequence[int]) -> tuple[float, ...]:
    """Information fractions of cumulative look sizes."""
    return tuple(size / sizes[-1] for size in sizes)


def seeded_order(units: Sequence[Any], seed: int | None) -> list[Any]:
    """``units`` in a seeded random order (``seed=None``: as given)."""
    if seed is None:
        return list(units)
    import numpy as np

    return [units[i] for i in np.random.default_rng(seed).permutation(len(units))]


#: ``step(chunk, fractions, look)``: score the units of ``chunk``, add them to what was scored, decide
Step = Callable[[list[Any], tuple[float, ...], int], Decision]
#: ``record(look, items_so_far, decision)``: one row of the looks' history
Record = Callable[[int, int, Decision], dict[str, Any]]


def default_record(k: int, n_items: int, decision: Decision) -> dict[str, Any]:
    t = decision.overall
    return {"look": k + 1, "items": n_items, "units": t.n, "delta": t.delta, "se": t.se, "z_rise": t.z_rise,
            "crit_rise": t.crit_rise, "z_within": t.z_within, "crit_within": t.crit_within,
            "blocked_by": decision.blocked_by, "decision": decision.outcome}


def run_looks(groups: Sequence[Sequence[Any]], step: Step, looks: int, seed: int | None,
              progress: Callable[[str], None], label: str,
              record: Record = default_record) -> tuple[list[Any], dict[str, Any], Decision]:
    """Score ``groups`` (lists of items scored together: a BBQ context group, or one unit) look by look until
    ``step`` decides or all are scored. Returns (items scored, record of the looks, the deciding decision)."""
    order = seeded_order(groups, seed)
    sizes = look_sizes(len(order), looks)
    items: list[Any] = []
    history: list[dict[str, Any]] = []
    done, decision = 0, None
    for k, size in enumerate(sizes):
        chunk = [item for group in order[done:size] for item in group]
        done = size
        items += chunk
        decision = step(chunk, fractions(sizes), k)
        history.append(record(k, len(items), decision))
        progress(f"{label}: look {k + 1}/{len(sizes)} after {len(items)} items: {decision.outcome}")
        if decision.outcome in ("block", "pass"):
            break
    if decision is None:
        raise ValueError("no units to score")
    early = decision.outcome if len(history) < len(sizes) else None
    summary = {"looks": history, "early_decision": early, "items_scored": len(items),
               "items_sampled": sum(len(g) for g in groups), "boundaries": "O'Brien-Fleming-type alpha spending"}
    return items, summary, decision


__all__ = ["look_sizes", "fractions", "seeded_order", "run_looks", "default_record", "Step", "Record"]
