"""Early stop for the BBQ gate: the gate's own decision rule, looked at as context groups are scored.

The sample is scored in ``looks`` slices of whole context groups, in a seeded random order. After each slice the
rule of :mod:`.decision` runs on everything scored so far, with group-sequential boundaries: each of its tests
spends its error rate over the looks (O'Brien-Fleming type; information = share of the sample's context groups
scored; the category error budget from the planned sample's categories). A look that reaches **block** stops
scoring; one that reaches **pass** stops only when every category's estimate is within the tolerance as well.
That decision *is* the verdict (the report's checks are built from it); at the last look an undecided result is
**inconclusive**. So the error
rates of the sequential gate are those of the fixed-sample gate (benchmarks/gate_oc.py measures both), and an
early stop changes how many items are scored, never what a pass or a block claims. With ``prior_items`` (one
order and a letter prior, which never passes) only a block stops early.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from ...looks import fractions, look_sizes  # noqa: F401  (re-exported: BBQ callers use them)
from ...looks import run_looks as shared_looks
from . import prior
from .decision import Decision, Plan, decide
from .types import Prediction


def shuffled(predictions: Sequence[Prediction], seed: int) -> list[Prediction]:
    """Predictions in a seeded random order of BBQ context groups (ids 4k..4k+3 of a category share a context)."""
    import numpy as np

    groups: dict[tuple[str, int], list[Prediction]] = {}
    for p in sorted(predictions, key=lambda p: p.key):
        groups.setdefault((p.category, p.example_id // 4), []).append(p)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    return [p for i in order for p in groups[keys[i]]]


def _record(k: int, n_items: int, decision: Decision) -> dict[str, Any]:
    t = decision.overall
    return {"look": k + 1, "items": n_items, "ambiguous": t.n, "delta_srs": t.delta, "se": t.se,
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


def run_looks(groups: Sequence[Sequence[Any]], candidate_of: Callable, baseline_of: Callable,  # noqa: PLR0913
              settings: Mapping[str, Any], looks: int, seed: int | None, progress: Callable[[str], None],
              order: Callable[[], Sequence[str]] = lambda: ("candidate", "baseline")):
    """Score context groups look by look (in a seeded random order; ``seed=None``: as given) until the rule
    decides or all are scored (:func:`edgeval.looks.run_looks`). ``candidate_of(items)`` / ``baseline_of(items)``
    return predictions in item order; ``order()`` says which of the two scores first at each look (the model
    already loaded, so that one model at a time reloads as little as it can). Returns (items scored, candidate
    predictions, baseline predictions, record, decision)."""
    n_categories = len({item.category for group in groups for item in group})
    preds: dict[str, list[Prediction]] = {"candidate": [], "baseline": []}
    score = {"candidate": candidate_of, "baseline": baseline_of}
    cannot_pass = prior.active(settings)   # the prior mode never passes (gate.PRIOR_MODE_CANNOT_PASS)

    def step(chunk: list[Any], fracs: tuple[float, ...], k: int) -> Decision:
        for role in order():
            preds[role].extend(score[role](chunk))
        decision = decide(preds["candidate"], preds["baseline"], Plan.from_policy(settings, fracs, k, n_categories))
        if cannot_pass and decision.outcome == "pass" and k < len(fracs) - 1:
            return dataclasses.replace(decision, outcome="continue")   # a pass it could not claim: keep scoring
        return decision

    items, record, decision = shared_looks(groups, step, looks, seed, progress, "bbq", _record)
    return items, preds["candidate"], preds["baseline"], record, decision
