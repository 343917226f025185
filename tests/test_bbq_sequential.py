"""Early stop: the gate's own rule at every look; decisions on planted cases; the stopping look's decision is the
verdict. (Error rates of the sequential gate: tests/test_gate_oc.py.)"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from edgeval.policy import DEFAULTS
from edgeval.stats import clopper_pearson
from edgeval.validators.bbq.sequential import look_sizes, replay, run_looks
from edgeval.validators.bbq.types import Prediction

SETTINGS = dict(DEFAULTS["bbq"])


def pair_set(n_groups: int, base_biased: np.ndarray, cand_biased: np.ndarray):
    """Ambiguous items only (2 per context group), biased option 0, unknown 2; 'biased' -> pred 0 else pred 1."""
    cands, bases = [], []
    for i, (b, c) in enumerate(zip(base_biased, cand_biased, strict=True)):
        key = dict(category="Age", example_id=int(i // 2 * 4 + i % 2), context_condition="ambig",
                   question_polarity="neg", label=2, unknown_idx=2, biased_idx=0)
        bases.append(Prediction(**key, pred=0 if b else 1))
        cands.append(Prediction(**key, pred=0 if c else 1))
    return cands, bases


def simulate(rng, n, p_biased, p_ub, p_bu):
    base = rng.random(n) < p_biased
    flip = np.where(base, rng.random(n) < p_bu, rng.random(n) < p_ub)
    return pair_set(n // 2, base, base ^ flip)


@pytest.mark.parametrize("k, n", [(0, 20), (3, 20), (20, 20), (7, 150), (1, 1200), (600, 1200), (1199, 1200),
                                  (40, 45)])
def test_clopper_pearson_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
    lo, hi = clopper_pearson(k, n, 0.05)
    assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)


def test_look_sizes_end_with_everything():
    assert look_sizes(10, 4) == [2, 5, 8, 10] and look_sizes(3, 8) == [1, 2, 3]


def test_planted_regression_blocks_at_the_first_look():
    cands, bases = simulate(np.random.default_rng(1), 1600, 0.33, 0.30, 0.02)
    out = replay(cands, bases, SETTINGS, looks=4)
    assert out["early_decision"] == "block" and out["stopped_at"] == 400 and out["decision"] == "block"


def test_identical_model_passes_early():
    cands, bases = simulate(np.random.default_rng(2), 1600, 0.33, 0.0, 0.0)
    out = replay(cands, bases, SETTINGS, looks=4)
    assert out["early_decision"] == "pass" and out["fraction"] < 1


def test_borderline_change_runs_to_the_end():
    cands, bases = simulate(np.random.default_rng(3), 400, 0.33, 0.09, 0.03)
    out = replay(cands, bases, SETTINGS, looks=4)
    assert out["early_decision"] is None and out["stopped_at"] == 400
    assert out["decision"] in ("inconclusive", "block", "pass") and len(out["looks"]) == 4


def test_look_records_and_boundaries_shrink():
    cands, bases = simulate(np.random.default_rng(4), 800, 0.33, 0.05, 0.05)
    groups = [cands[i:i + 2] for i in range(0, len(cands), 2)]
    by_key = {p.key: p for p in bases}
    items, cand, base, record, decision = run_looks(groups, list, lambda c: [by_key[p.key] for p in c], SETTINGS,
                                                    4, seed=0, progress=lambda _m: None)
    crits = [look["crit_rise"] for look in record["looks"]]
    assert crits == sorted(crits, reverse=True)              # O'Brien-Fleming: the first look is the strictest
    assert record["looks"][-1]["decision"] == decision.outcome and len(cand) == len(base) == len(items)
