"""Paired statistics and the candidate-vs-baseline comparison, against hand computations and scipy."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeval.errors import BadInputError
from edgeval.stats import cohens_h, holm, mcnemar_exact, transitions
from edgeval.validators.bbq.compare import PairingError, compare, pair_predictions
from edgeval.validators.bbq.metrics import metrics_by_category, s_amb_score
from edgeval.validators.bbq.stats import AmbigOutcomes, bootstrap_deltas, s_amb_from_sums, srs_from_sums
from edgeval.validators.bbq.types import Prediction

UNK, BIASED, ANTI = 2, 0, 1


def amb(eid, pred, cat="Age"):
    return Prediction(cat, eid, "ambig", "neg", UNK, UNK, BIASED, pred)


def dis(eid, pred, cat="Age"):
    return Prediction(cat, eid, "disambig", "neg", ANTI, UNK, BIASED, pred)


# -- McNemar ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("b,c", [(0, 1), (0, 5), (1, 9), (3, 3), (7, 2), (10, 25), (40, 61), (120, 80),
                                 (0, 300), (600, 600), (450, 520), (1, 1500)])
def test_mcnemar_matches_scipy_binomtest(b, c):
    from scipy.stats import binomtest

    n = b + c
    assert mcnemar_exact(b, c) == pytest.approx(binomtest(c, n, 0.5).pvalue, rel=1e-9)
    assert mcnemar_exact(b, c, "greater") == pytest.approx(binomtest(c, n, 0.5, alternative="greater").pvalue,
                                                           rel=1e-9)
    assert mcnemar_exact(b, c, "less") == pytest.approx(binomtest(c, n, 0.5, alternative="less").pvalue, rel=1e-9)


def test_mcnemar_keeps_tiny_p_values():
    """300 discordant pairs all one way: P = 2^-300, not 0 (no 1 - cdf cancellation)."""
    assert mcnemar_exact(0, 300, "greater") == pytest.approx(2.0 ** -300, rel=1e-12, abs=0)
    assert mcnemar_exact(0, 300) == pytest.approx(2.0 ** -299, rel=1e-12, abs=0)
    assert mcnemar_exact(300, 0, "less") == pytest.approx(2.0 ** -300, rel=1e-12, abs=0)


def test_mcnemar_by_hand():
    assert mcnemar_exact(0, 5, "greater") == pytest.approx(1 / 32)          # P(X >= 5 | n=5)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(1, 9, "greater") == pytest.approx(11 / 1024)       # (C(10,9) + C(10,10)) / 2^10
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1, "greater") == pytest.approx(1 - 1 / 1024)    # P(X >= 1 | n=10)
    assert mcnemar_exact(2, 2, "greater") == pytest.approx(11 / 16)         # (6 + 4 + 1) / 16
    assert mcnemar_exact(2, 2) == 1.0


def test_mcnemar_no_discordant_pairs_and_bad_input():
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(0, 0, "greater") == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact(1, 2, "bigger")
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


# -- Holm, Cohen's h, transitions ------------------------------------------------------------------------------
def test_holm_by_hand():
    # sorted: a .01 (x4 = .04), c .03 (x3 = .09), b .04 (x2 = .08 -> running max .09), d .5 (x1 = .5)
    out = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert out == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": 0.5})
    assert list(out) == ["a", "b", "c", "d"]
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}            # capped at 1
    assert holm({"only": 0.02}) == {"only": 0.02}
    assert holm({}) == {}


def test_cohens_h():
    # 2 asin(sqrt .5) = pi/2, 2 asin(sqrt .25) = pi/3
    assert cohens_h(0.5, 0.25) == pytest.approx(math.pi / 6)
    assert cohens_h(0.25, 0.5) == pytest.approx(-math.pi / 6)
    assert cohens_h(1.0, 0.0) == pytest.approx(math.pi)
    assert cohens_h(None, 0.3) is None and cohens_h(0.3, None) is None


def test_transitions_by_hand():
    base = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    cand = np.array([1, 0, 1, 1, 1, 0, 0, 0], bool)
    t = transitions(base, cand)
    assert (t["n_baseline_biased"], t["n_baseline_unbiased"]) == (3, 5)
    assert (t["n_unbiased_to_biased"], t["n_biased_to_unbiased"]) == (2, 1)
    assert t["unbiased_to_biased"] == pytest.approx(2 / 5) and t["biased_to_unbiased"] == pytest.approx(1 / 3)
    none = transitions(np.zeros(3, bool), np.ones(3, bool))
    assert none["biased_to_unbiased"] is None and none["unbiased_to_biased"] == 1.0


# -- bootstrap ---------------------------------------------------------------------------------------------------
def _outcomes(preds):
    a = np.array(preds, dtype=object)
    valid = np.array([p is not None for p in preds])
    return AmbigOutcomes(valid, valid & (a == BIASED), valid & (a == UNK), valid & (a == UNK))


def test_vectorised_formulas_match_scalar():
    # rows: (valid, biased, unknown, correct) summed over n = 10 items
    rows = np.array([[9, 4, 3, 3], [10, 0, 10, 10], [5, 0, 5, 5], [9, 0, 2, 2], [0, 0, 0, 0]])
    srs = srs_from_sums(rows)
    amb = s_amb_from_sums(rows, 10)
    for row, s, a in zip(rows, srs, amb, strict=True):
        valid, biased, unknown, correct = (int(v) for v in row)
        exp_srs = biased / valid if valid else None
        exp_amb = s_amb_score(correct / 10, biased, valid - unknown)
        assert (np.isnan(s) and exp_srs is None) or s == pytest.approx(exp_srs)
        assert (np.isnan(a) and exp_amb is None) or a == pytest.approx(exp_amb)


def test_bootstrap_deterministic_by_seed_and_covers_estimate():
    rng = np.random.default_rng(7)
    base_p = list(rng.choice([0, 1, 2], size=300))
    cand_p = [0 if (p != 0 and rng.random() < 0.2) else p for p in base_p]
    cand, base = _outcomes(cand_p), _outcomes(base_p)
    one = bootstrap_deltas(cand, base, resamples=500, rng=np.random.default_rng(1))
    two = bootstrap_deltas(cand, base, resamples=500, rng=np.random.default_rng(1))
    other = bootstrap_deltas(cand, base, resamples=500, rng=np.random.default_rng(2))
    assert one == two and one != other
    d_srs = np.mean(np.array(cand_p) == 0) - np.mean(np.array(base_p) == 0)   # all answers valid here
    assert one["delta_srs_ci_low"] <= d_srs <= one["delta_srs_ci_high"]
    assert one["delta_srs_ci_low"] > 0                                        # a real rise: CI above 0
    assert one["bootstrap_undefined_srs"] == 0


def test_bootstrap_identical_runs_and_disabled():
    same = _outcomes([0, 1, 2, 2, 0, 1])
    ci = bootstrap_deltas(same, same, resamples=200, rng=np.random.default_rng(0))
    assert ci["delta_srs_ci_low"] == ci["delta_srs_ci_high"] == 0.0
    off = bootstrap_deltas(same, same, resamples=0, rng=np.random.default_rng(0))
    assert off["delta_srs_ci_low"] is None and off["delta_s_amb_ci_high"] is None


def test_bootstrap_counts_undefined_resamples():
    # candidate: one valid biased answer among invalid ones; resamples without it have SRS undefined
    cand = _outcomes([0, None, None, None])
    base = _outcomes([2, 2, 2, 2])
    ci = bootstrap_deltas(cand, base, resamples=400, rng=np.random.default_rng(3))
    assert 0 < ci["bootstrap_undefined_srs"] < 400
    assert ci["delta_srs_ci_low"] == ci["delta_srs_ci_high"] == 1.0


# -- pairing and compare -----------------------------------------------------------------------------------------
def test_pairing_errors_name_the_missing_count():
    base = [amb(i, 2) for i in range(5)]
    with pytest.raises(PairingError, match="2 baseline item") as info:
        pair_predictions(base[:3], base)
    assert isinstance(info.value, BadInputError)
    assert (info.value.missing_in_candidate, info.value.missing_in_baseline) == (2, 0)
    with pytest.raises(PairingError, match="twice"):
        pair_predictions(base + base[:1], base)
    with pytest.raises(PairingError, match="differs"):
        pair_predictions([dis(0, 2)] + base[1:], base)


def test_pairing_keys_on_category_and_example_id():
    cand = [amb(1, 0, "Age"), amb(1, 2, "Race")]
    pairs = pair_predictions(cand, list(reversed(cand)))
    assert [(c.key, b.key) for c, b in pairs] == [(("Age", 1), ("Age", 1)), (("Race", 1), ("Race", 1))]


def _planted():
    """Age: 20 ambiguous items, baseline 4 biased / 16 unbiased; candidate flips 10 unbiased to biased, 1 back.
    Race: 10 ambiguous items, identical. Plus 4 disambiguated items per category (not used by compare)."""
    base = [amb(i, 0 if i < 4 else (2 if i % 2 else 1)) for i in range(20)]
    cand = [amb(0, 2)] + [amb(i, 0) for i in range(1, 14)] + base[14:]
    race = [amb(i, i % 3, "Race") for i in range(10)]
    extra = [dis(100 + i, i % 3, c) for c in ("Age", "Race") for i in range(4)]
    return cand + race + extra, base + race + extra


def test_compare_by_hand():
    cand, base = _planted()
    out = compare(cand, base, alpha=0.05, bootstrap=300, seed=0)
    age = out["categories"]["Age"]
    assert age["n_ambig"] == 20 and age["n_items"] == 24
    assert (age["n_unbiased_to_biased"], age["n_biased_to_unbiased"]) == (10, 1)
    assert age["unbiased_to_biased"] == pytest.approx(10 / 16) and age["biased_to_unbiased"] == pytest.approx(1 / 4)
    assert age["srs_baseline"] == pytest.approx(4 / 20) and age["srs_candidate"] == pytest.approx(13 / 20)
    assert age["delta_srs"] == pytest.approx(9 / 20)
    # s_AMB: baseline acc 8/20, non-UNK 12, biased 4 -> 0.6 * (8/12 - 1) = -0.2
    #        candidate acc 4/20 (items 0, 15, 17, 19), non-UNK 16, biased 13 -> 0.8 * (26/16 - 1) = 0.5
    assert age["s_amb_baseline"] == pytest.approx(0.6 * (2 * 4 / 12 - 1))
    assert age["s_amb_candidate"] == pytest.approx(0.8 * (2 * 13 / 16 - 1))
    assert age["delta_s_amb"] == pytest.approx(0.7)
    assert age["cohens_h"] == pytest.approx(2 * math.asin(math.sqrt(0.65)) - 2 * math.asin(math.sqrt(0.2)))
    p_age = 12 / 2048                                                     # P(X >= 10 | n=11) = (11 + 1) / 2^11
    assert age["mcnemar_p_greater"] == pytest.approx(p_age)
    overall, race = out["overall"], out["categories"]["Race"]
    assert race["mcnemar_p_greater"] == 1.0 and race["delta_srs"] == 0.0
    # Holm family {overall, Age, Race} (m = 3): overall has the same discordant pairs as Age, a tie at the
    # smallest p: the first gets 3p, the second max(3p, 2p) = 3p; Race: max(3p, 1 * 1.0) = 1
    assert overall["mcnemar_p_greater"] == pytest.approx(p_age)
    assert age["mcnemar_p_greater_holm"] == pytest.approx(3 * p_age)
    assert overall["mcnemar_p_greater_holm"] == pytest.approx(3 * p_age)
    assert age["mcnemar_p_two_sided_holm"] == pytest.approx(3 * 2 * p_age)
    assert race["mcnemar_p_greater_holm"] == 1.0
    assert out["holm_family"] == ["overall", "Age", "Race"]
    assert age["significant_increase"] is True and race["significant_increase"] is False
    assert age["delta_srs_ci_low"] <= age["delta_srs"] <= age["delta_srs_ci_high"]


def test_compare_agrees_with_metrics_and_is_deterministic():
    cand, base = _planted()
    out = compare(cand, base, bootstrap=200, seed=5)
    m_c, m_b = metrics_by_category(cand), metrics_by_category(base)
    for scope, mc, mb in [(out["overall"], m_c["overall"], m_b["overall"]),
                          (out["categories"]["Age"], m_c["categories"]["Age"], m_b["categories"]["Age"])]:
        assert scope["srs_candidate"] == pytest.approx(mc["srs"])
        assert scope["s_amb_baseline"] == pytest.approx(mb["s_amb"])
    assert out["macro"]["srs_candidate"] == pytest.approx(m_c["macro"]["srs"])
    assert out["macro"]["relative_change_srs"] == pytest.approx(
        (m_c["macro"]["srs"] - m_b["macro"]["srs"]) / m_b["macro"]["srs"])
    assert compare(cand, base, bootstrap=200, seed=5) == out
    assert compare(cand, base, bootstrap=200, seed=6) != out
    json.dumps(out, allow_nan=False)
