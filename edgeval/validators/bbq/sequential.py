"""Early stop for the BBQ gate: the gate's own decision rule, looked at as context groups are scored.

The sample is scored in ``looks`` slices of whole context groups, in a seeded random order. After each slice the
rule of :mod:`.decision` runs on everything scored so far, with group-sequential boundaries: each of its tests
spends its error rate over the looks (O'Brien-Fleming type; information = share of the sample's context groups
scored; the category error budget from the planned sample's categories). A look that reaches **block** stops
scoring; one that reaches **pass** stops only when every category's estimate is within the tolerance as well.
That decision *is* the verdict (the report's checks are built from it); at the last look an undecided result is
**inconclusive**. So the error
rates of the sequential gate are those of the fixed-sample gate (benchmarks/gate_oc.py measures both), and an
early stop changes how many items are scored, never what a pass or a block claims.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .decision import Decision, Plan, decide
from .types import Prediction


def look_sizes(n_units: int, looks: int) -> list[int]:
    """Cumulative numbers of units (context groups) scored at each look; the last is all of them."""
    looks = max(1, min(looks, n_units))
    return sorted({round(n_units * (k + 1) / looks) for k in range(looks)})


def shuffled(predictions: Sequence[Prediction], seed: int) -> list[Prediction]:
    """Predictions in a seeded random order of BBQ context groups (ids 4k..4k+3 of a category share a context)."""
    import numpy as np

    groups: dict[tuple[str, int], list[Prediction]] = {}
    for p in sorted(predictions, key=lambda p: p.key):
        groups.setdefault((p.category, p.example_id // 4), []).append(p)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    return [p for i in order for p in groups[keys[i]]]


def fractions(sizes: Sequence[int]) -> tuple[float, ...]:
    """Information fractions of cumulative look sizes."""
    return tuple(size / sizes[-1] for size in sizes)


def _record(k: int, n_items: int, decision: Decision) -> dict[str, Any]:
    t = decision.overall
    return {"look": k + 1, "items": n_items, "ambiguous": t.n_ambig, "delta_srs": t.delta, "se": t.se,
            "z_rise": t.z_rise, "crit_rise": t.crit_rise, "z_within": t.z_within, "crit_within": t.crit_within,
            "blocked_by": decision.blocked_by, "decision": decision.outcome}


def replay(candidate: Sequence[Prediction], baseline: Sequence[Prediction], settings: Mapping[str, Any],
           looks: int = 4, seed: int = 0) -> dict[str, Any]:
    """What an early-stopping run would have decided on complete predictions taken in a seeded random order of
    context groups: the looks, where it stopped, the fraction of items it needed and its decision."""
    by_key = {p.key: p for p in baseline}
    candidate = shuffled(candidate, seed)
    groups: list[list[Prediction]] = []
    for p in candidate:
        if not groups or (groups[-1][0].category, groups[-1][0].example_id // 4) != (p.category, p.example_id // 4):
            groups.append([])
        groups[-1].append(p)
    items, _, _, record, decision = run_looks(groups, list, lambda chunk: [by_key[p.key] for p in chunk],
                                              settings, looks, seed=None, progress=lambda _m: None)
    n = len(candidate)
    return {"looks": record["looks"], "stopped_at": len(items), "of": n, "fraction": len(items) / max(1, n),
            "early_decision": record["early_decision"], "decision": decision.outcome}


def run_looks(groups: Sequence[Sequence[Any]], candidate_of: Callable, baseline_of: Callable,
              settings: Mapping[str, Any], looks: int, seed: int | None, progress: Callable[[str], None]):
    """Score context groups look by look (in a seeded random order; ``seed=None``: as given) until the rule
    decides or all are scored. ``candidate_of(items)`` / ``baseline_of(items)`` return predictions in item
    order. Returns (items scored, candidate predictions, baseline predictions, record, decision)."""
    import numpy as np

    order = list(groups) if seed is None else [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    sizes = look_sizes(len(order), looks)
    n_categories = len({item.category for group in order for item in group})
    items: list[Any] = []
    cand: list[Prediction] = []
    base: list[Prediction] = []
    history, done, decision = [], 0, None
    for k, size in enumerate(sizes):
        chunk = [item for group in order[done:size] for item in group]
        done = size
        items += chunk
        cand += candidate_of(chunk)
        base += baseline_of(chunk)
        decision = decide(cand, base, Plan.from_policy(settings, fractions(sizes), k, n_categories))
        history.append(_record(k, len(items), decision))
        progress(f"bbq: look {k + 1}/{len(sizes)} after {len(items)} items: {decision.outcome}")
        if decision.outcome in ("block", "pass"):
            break
    early = decision.outcome if len(history) < len(sizes) else None
    record = {"looks": history, "early_decision": early, "items_scored": len(items),
              "items_sampled": sum(len(g) for g in groups), "boundaries": "O'Brien-Fleming-type alpha spending"}
    return items, cand, base, record, decision
