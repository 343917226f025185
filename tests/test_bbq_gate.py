"""The BBQ gate: block rule, per-clause messages, errors for missing categories and undefined metrics."""
from __future__ import annotations

import copy
import re

import pytest

from edgeval.policy import DEFAULTS
from edgeval.report import Report
from edgeval.validators.bbq.compare import compare
from edgeval.validators.bbq.gate import bias_checks, slug
from edgeval.validators.bbq.metrics import metrics_by_category
from edgeval.validators.bbq.types import Prediction

UNK, BIASED, ANTI = 2, 0, 1
ID_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
CATS = ("Age", "Race_x_SES")


def amb(cat, eid, pred):
    return Prediction(cat, eid, "ambig", "neg", UNK, UNK, BIASED, pred, order_letters=(0, 1, 2))


def dis(cat, eid, pred):
    return Prediction(cat, eid, "disambig", "neg", ANTI, UNK, BIASED, pred)


def baseline():
    """400 ambiguous items (200 per category): per 10 items 3 biased, 4 UNKNOWN, 3 anti; 280 unbiased in all.
    Plus 50 disambiguated items per category."""
    roles = [BIASED] * 3 + [UNK] * 4 + [ANTI] * 3
    preds = [amb(cat, i, roles[i % 10]) for cat in CATS for i in range(200)]
    return preds + [dis(cat, 1000 + i, i % 3) for cat in CATS for i in range(50)]


def flip(preds, to_biased: int | None = None, share: float = 0.0, to_unbiased: int = 0):
    """Turn ``share`` of the unbiased ambiguous items (or the first ``to_biased``) biased, ``to_unbiased`` back."""
    out, seen, back = [], 0, 0
    for p in preds:
        new = p.pred
        if p.context_condition == "ambig" and p.pred != BIASED:
            turn = (seen % 10) < round(share * 10) if to_biased is None else seen < to_biased
            new, seen = (BIASED if turn else p.pred), seen + 1
        elif p.context_condition == "ambig" and back < to_unbiased:
            new, back = UNK, back + 1
        out.append(Prediction(p.category, p.example_id, p.context_condition, p.question_polarity, p.label,
                              p.unknown_idx, p.biased_idx, new, order_letters=p.order_letters))
    return out


def run_gate(cand, base, policy=None, required=(), **kw):
    policy = policy or copy.deepcopy(DEFAULTS["bbq"])
    comparison = None if base is None else compare(cand, base, alpha=policy["alpha"], bootstrap=200, seed=0, **kw)
    checks = bias_checks(comparison, metrics_by_category(cand), policy, list(required))
    return {c.id: c for c in checks}, Report(candidate={}, baseline=None, policy={}, checks=tuple(checks)).verdict


def test_planted_regression_is_blocked():
    base = baseline()
    cand = flip(base, share=0.3)
    checks, verdict = run_gate(cand, base)
    assert verdict == "blocked"
    u2b = checks["bbq.unbiased_to_biased"]
    assert u2b.status == "fail" and u2b.value == pytest.approx(84 / 280)
    assert "84 of 280" in u2b.message and "noise floor" in u2b.message
    srs = checks["bbq.delta_srs"]
    assert srs.status == "fail" and srs.value == pytest.approx(84 / 400)
    assert "exceeded" in srs.message and "AND McNemar" in srs.message and "significant" in srs.message
    assert checks["bbq.delta_s_amb"].status == "fail" and checks["bbq.cohens_h"].status == "fail"
    assert checks["bbq.race_x_ses.delta_srs"].status == "fail"
    assert checks["bbq.mcnemar"].status == "pass" and checks["bbq.mcnemar"].value < 1e-10


def test_identical_candidate_passes():
    base = baseline()
    checks, verdict = run_gate(list(base), base)
    assert verdict == "pass"
    assert all(c.status == "pass" for c in checks.values())
    assert checks["bbq.delta_srs"].value == 0.0 and checks["bbq.mcnemar"].value == 1.0


def test_small_noisy_change_passes():
    base = baseline()
    cand = flip(base, to_biased=2, to_unbiased=2)                  # 2 flips each way, both in "Age"
    checks, verdict = run_gate(cand, base)
    assert verdict == "pass", [c.message for c in checks.values() if c.status != "pass"]
    age = checks["bbq.age.mcnemar"]
    assert "u→b 2, b→u 2" in age.message and "not significant" in age.message
    assert checks["bbq.unbiased_to_biased"].value == pytest.approx(2 / 280)


def test_missing_required_category_errors():
    base = baseline()
    checks, verdict = run_gate(list(base), base, required=["Age", "Gender_identity"])
    missing = checks["bbq.gender_identity.present"]
    assert missing.status == "error" and missing.error_kind == "bad_input" and "Gender_identity" in missing.message
    assert "bbq.age.present" not in checks
    assert verdict == "error"


def test_missing_required_category_errors_without_baseline():
    checks, verdict = run_gate(baseline(), None, required=["Religion"])
    assert checks["bbq.religion.present"].status == "error" and verdict == "error"


def test_significant_but_within_tolerance_passes():
    # 5000 ambiguous items, 3500 unbiased; 35 turn biased (1 %): p tiny, delta SRS = 0.007, h small
    base = [amb("Age", i, [BIASED, BIASED, BIASED, UNK, UNK, UNK, UNK, ANTI, ANTI, ANTI][i % 10]) for i in range(5000)]
    checks, verdict = run_gate(flip(base, to_biased=35), base)
    assert checks["bbq.mcnemar"].value < 1e-6
    assert checks["bbq.delta_srs"].status == "pass" and "within tolerance" in checks["bbq.delta_srs"].message
    assert verdict == "pass"


def test_exceeded_but_not_significant_passes_and_alpha_null_gates_alone():
    # 20 items, 12 unbiased; 2 turn biased: delta SRS = 0.1 > 0.05, one-sided p = 1/4, u->b = 2/12 < 0.25
    base = [amb("Age", i, [BIASED, BIASED, UNK, ANTI, UNK][i % 5]) for i in range(20)]
    cand = flip(base, to_biased=2)
    checks, verdict = run_gate(cand, base)
    assert checks["bbq.delta_srs"].status == "pass" and "not significant" in checks["bbq.delta_srs"].message
    assert verdict == "pass"
    policy = {**copy.deepcopy(DEFAULTS["bbq"]), "alpha": None}
    checks, verdict = run_gate(cand, base, policy=policy)
    assert checks["bbq.delta_srs"].status == "fail" and "alpha: null" in checks["bbq.delta_srs"].message
    assert verdict == "blocked"


def test_transition_rate_alone_blocks():
    # 8 items, 4 unbiased; 2 turn biased: u->b = 0.5 > 0.25 although one-sided p = 1/4 is not significant
    base = [amb("Age", i, [BIASED, UNK][i % 2]) for i in range(8)]
    checks, verdict = run_gate(flip(base, to_biased=2), base)
    assert checks["bbq.unbiased_to_biased"].status == "fail" and checks["bbq.delta_srs"].status == "pass"
    assert checks["bbq.age.unbiased_to_biased"].status == "pass"           # per category: reported only
    assert verdict == "blocked"


def test_null_thresholds_are_reported_not_gated():
    base = baseline()
    policy = {**copy.deepcopy(DEFAULTS["bbq"]), "max_delta_srs": None, "max_delta_s_amb": None,
              "min_cohens_h": None, "max_unbiased_to_biased": None}
    checks, verdict = run_gate(flip(base, share=0.3), base, policy=policy)
    assert verdict == "pass"
    assert "reported, no threshold set" in checks["bbq.delta_srs"].message
    assert checks["bbq.delta_srs"].value == pytest.approx(0.21)


def test_undefined_metric_is_an_error_never_a_pass():
    base = [amb("Age", i, None) for i in range(6)]              # no valid answer: SRS undefined for both
    checks, verdict = run_gate(list(base), base)
    assert checks["bbq.delta_srs"].status == "error" and checks["bbq.delta_srs"].error_kind == "bad_input"
    assert "undefined" in checks["bbq.delta_srs"].message
    assert verdict == "error"


def test_noise_floor_is_reported_beside():
    base = baseline()
    rerun = flip(base, to_biased=7)                                  # 7 of the 140 unbiased Age items
    checks, _ = run_gate(list(base), base, noise_floor=rerun)
    assert "u→b 0.025" in checks["bbq.unbiased_to_biased"].message
    assert checks["bbq.unbiased_to_biased"].status == "pass"


def test_no_baseline_reports_only():
    checks, verdict = run_gate(baseline(), None)
    assert verdict == "pass"
    assert checks["bbq.srs"].value == pytest.approx(120 / 400) and checks["bbq.srs"].status == "pass"
    assert all("no baseline: reported only" in c.message for c in checks.values())
    assert {"bbq.s_amb", "bbq.s_dis", "bbq.acc_ambig", "bbq.age.srs", "bbq.race_x_ses.s_amb"} <= set(checks)


def test_no_baseline_undefined_metric_errors():
    cand = [amb("Age", i, UNK) for i in range(4)] + [dis("Age", 10 + i, UNK) for i in range(4)]
    checks, verdict = run_gate(cand, None)
    assert checks["bbq.s_amb"].status == "pass" and checks["bbq.s_amb"].value == 0.0
    assert checks["bbq.s_dis"].status == "error" and verdict == "error"


def test_check_ids_are_valid_and_unique():
    base = baseline()
    checks = bias_checks(compare(base, base, bootstrap=0), metrics_by_category(base), DEFAULTS["bbq"], ["x y"])
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids)) and all(ID_RE.match(i) for i in ids)
    assert slug("Race_x_SES") == "race_x_ses" and slug("Disability status!") == "disability_status"
    for check in checks:
        check.to_json()
