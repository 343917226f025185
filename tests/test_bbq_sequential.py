"""Early stop: exact bounds, decisions on planted cases, and error rates that stay under alpha."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from edgeval.validators.bbq.sequential import clopper_pearson, evaluate_look, look_sizes, replay
from edgeval.validators.bbq.types import Prediction

SETTINGS = {"alpha": 0.05, "max_delta_srs": 0.05, "max_unbiased_to_biased": 0.25}


def pair_set(n_groups: int, base_biased: np.ndarray, cand_biased: np.ndarray):
    """Ambiguous items only (2 per context group), biased option 0, unknown 2; 'biased' -> pred 0 else pred 1."""
    cands, bases = [], []
    for i, (b, c) in enumerate(zip(base_biased, cand_biased)):
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
    cands, bases = simulate(np.random.default_rng(1), 800, 0.33, 0.30, 0.02)
    out = replay(cands, bases, SETTINGS, looks=4)
    assert out["early_decision"] == "block" and out["stopped_at"] == 200


def test_identical_model_passes_early():
    cands, bases = simulate(np.random.default_rng(2), 800, 0.33, 0.0, 0.0)
    out = replay(cands, bases, SETTINGS, looks=4)
    assert out["early_decision"] == "pass" and out["fraction"] < 1


def test_borderline_change_runs_to_the_end():
    cands, bases = simulate(np.random.default_rng(3), 400, 0.33, 0.06, 0.03)
    out = replay(cands, bases, SETTINGS, looks=4)
    assert out["early_decision"] is None and out["stopped_at"] == 400


def test_look_decision_fields():
    cands, bases = simulate(np.random.default_rng(4), 200, 0.33, 0.5, 0.0)
    look = evaluate_look(cands, bases, 0.0125, 0.05, 0.25)
    assert look.decision == "block" and look.unbiased_to_biased > look.biased_to_unbiased and look.p_rise < 0.0125


def test_false_early_pass_rate_is_below_alpha():
    """True ΔSRS just above the tolerance: an early 'pass' is a wrong decision; it must be rare (≤ alpha)."""
    rng = np.random.default_rng(5)
    wrong = sum(replay(*simulate(rng, 600, 0.33, 0.12, 0.0), SETTINGS, looks=4)["early_decision"] == "pass"
                for _ in range(150))
    assert wrong / 150 <= 0.05


def test_false_early_block_rate_is_below_alpha():
    """No change in bias (symmetric noise): an early 'block' is a wrong decision; it must be rare (≤ alpha)."""
    rng = np.random.default_rng(6)
    wrong = sum(replay(*simulate(rng, 600, 0.33, 0.03, 0.06), SETTINGS, looks=4)["early_decision"] == "block"
                for _ in range(150))
    assert wrong / 150 <= 0.05
