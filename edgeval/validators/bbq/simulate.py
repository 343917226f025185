"""Synthetic paired BBQ predictions with a known truth, for the gate's operating characteristics.

Used by ``benchmarks/gate_oc.py`` and the tests: they feed these predictions through the real gate code
(:func:`~.compare.compare`, :func:`~.decision.decide`, :func:`~.gate.bias_checks`, :func:`~.sequential.run_looks`)
and count how often it blocks, passes or cannot decide.

The world: ``categories`` categories of ``groups`` BBQ context groups each; a group is four items with upstream
ids 4k..4k+3 (ambiguous and disambiguated context, each asked as a neg and a nonneg question). On an ambiguous
item the baseline answers the biased option with probability ``srs`` (else UNKNOWN or the other option, half and
half). The candidate keeps the baseline's answer except on a share ``churn`` of items, where it answers anew
from the same distribution (SRS unchanged, answers churned); then, to raise SRS by ``delta``, each of its
not-biased answers turns biased with probability ``delta / (1 - srs)``. ``rho``: the chance that a group's
second ambiguous question copies the first one's draws (answers correlated within a context). Groups belong to
``templates`` templates per category (BBQ has 25); ``template_churn``: the chance that a template's candidate
answers are all drawn anew from a biased-answer rate of the template's own (Beta with the candidate's mean SRS
and concentration 2): a compressed model's answers move per template, the dependence that the gate's
cluster-robust tests must absorb. SRS is unchanged on average. Disambiguated items are answered at random (they do
not enter SRS).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import Prediction

BIASED, OTHER, UNKNOWN = 0, 1, 2


@dataclass(frozen=True)
class World:
    srs: float = 0.3
    churn: float = 0.3
    delta: float = 0.0
    rho: float = 0.0
    groups: int = 50
    categories: int = 6
    templates: int = 25
    template_churn: float = 0.0


def _not_biased(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, UNKNOWN, OTHER)


def _answers(rng: np.random.Generator, world: World, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(baseline, candidate) options for n ambiguous items (independent draws)."""
    base = np.where(rng.random(n) < world.srs, BIASED, _not_biased(rng, n))
    fresh = np.where(rng.random(n) < world.srs, BIASED, _not_biased(rng, n))
    cand = np.where(rng.random(n) < world.churn, fresh, base)
    if world.delta:
        lift = (cand != BIASED) & (rng.random(n) < world.delta / (1.0 - world.srs))
        cand = np.where(lift, BIASED, cand)
    return base, cand


def simulate(world: World, seed: int) -> tuple[list[Prediction], list[Prediction]]:
    """(candidate, baseline) predictions for one simulated run."""
    rng = np.random.default_rng(seed)
    n_groups = world.groups * world.categories
    base, cand = _answers(rng, world, 2 * n_groups)
    base, cand = base.reshape(n_groups, 2), cand.reshape(n_groups, 2)
    copy = rng.random(n_groups) < world.rho
    base[copy, 1], cand[copy, 1] = base[copy, 0], cand[copy, 0]
    template = [(g % world.categories, (g // world.categories) % world.templates) for g in range(n_groups)]
    mean = world.srs + world.delta
    rates = {t: (rng.beta(2 * mean, 2 * (1 - mean)) if rng.random() < world.template_churn else None)
             for t in sorted(set(template))}
    for g, t in enumerate(template):
        rate = rates[t]
        if rate is not None:
            cand[g] = np.where(rng.random(2) < rate, BIASED, _not_biased(rng, 2))
    dis = rng.integers(0, 3, size=(n_groups, 2, 2))
    cands: list[Prediction] = []
    bases: list[Prediction] = []
    for g in range(n_groups):
        cat, k = f"cat{g % world.categories}", g // world.categories
        for j, (polarity, condition) in enumerate((("neg", "ambig"), ("neg", "disambig"),
                                                   ("nonneg", "ambig"), ("nonneg", "disambig"))):
            eid = 4 * k + j
            if condition == "ambig":
                answers = (int(cand[g, j // 2]), int(base[g, j // 2]))
                label = UNKNOWN
            else:
                answers = (int(dis[g, j // 2, 0]), int(dis[g, j // 2, 1]))
                label = BIASED if polarity == "neg" else OTHER
            for out, pred in zip((cands, bases), answers, strict=True):
                out.append(Prediction(cat, eid, condition, polarity, label, UNKNOWN, BIASED, pred,
                                      question_index=str(template[g][1])))
    return cands, bases


def with_letters(predictions: list[Prediction], log_prior: np.ndarray, jitter: float, content: float,
                 rng: np.random.Generator) -> list[Prediction]:
    """3-order letter-mode predictions whose answers are ``predictions``' (for the prior mode's operating
    characteristics, :mod:`.prior`): option ``pred`` gets a content score of ``content`` (x an Exp(1) draw) over
    the other two; each item's letter preference is ``log_prior`` plus N(0, ``jitter``) per letter (the part of
    a model's position preference that depends on the item, which 3 orders cancel and one order does not)."""
    from ...logprobs import cyclic_orders
    from .scoring import _letter_prediction
    from .types import BBQItem

    orders = cyclic_orders(3)
    out = []
    for p in predictions:
        s = np.zeros(3)
        s[p.pred] = content * rng.exponential()
        bias = log_prior + rng.normal(0.0, jitter, 3) if jitter else log_prior
        rows = []
        for order in orders:
            z = bias + s[list(order)]
            rows.append(z - np.logaddexp.reduce(z))
        item = BBQItem(p.category, p.example_id, p.question_index, p.question_polarity, p.context_condition, "", "",
                       ("", "", ""), p.label, p.unknown_idx, p.biased_idx)
        out.append(_letter_prediction(item, orders, rows))
    return out
