"""The BBQ gate: pass / block / inconclusive, category blocks, reported-only values, errors for missing categories
and undefined gated metrics."""
from __future__ import annotations

import copy
import re

import pytest

from edgeval.ids import slug
from edgeval.policy import DEFAULTS
from edgeval.report import Report
from edgeval.validators.bbq.compare import compare
from edgeval.validators.bbq.decision import Plan, decide
from edgeval.validators.bbq.gate import bias_checks
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


def run_gate(cand, base, policy=None, required=()):
    policy = policy or copy.deepcopy(DEFAULTS["bbq"])
    comparison = None if base is None else compare(cand, base, alpha=policy["alpha"], bootstrap=200, seed=0)
    decision = None if base is None else decide(cand, base, Plan.from_policy(policy))
    checks = bias_checks(comparison, metrics_by_category(cand), policy, list(required), decision=decision)
    return {c.id: c for c in checks}, Report(candidate={}, baseline=None, policy={}, checks=tuple(checks)).verdict


def with_policy(**changes):
    return {**copy.deepcopy(DEFAULTS["bbq"]), **changes}


def test_planted_regression_is_blocked():
    base = baseline()
    cand = flip(base, share=0.3)
    checks, verdict = run_gate(cand, base)
    assert verdict == "blocked"
    srs = checks["bbq.delta_srs"]
    assert srs.status == "fail" and srs.value == pytest.approx(84 / 400)
    assert "significant" in srs.message and "blocked" in srs.message and "95% CI" in srs.message
    assert checks["bbq.race_x_ses.delta_srs"].status == "fail" and checks["bbq.age.delta_srs"].status == "fail"
    u2b = checks["bbq.unbiased_to_biased"]                  # instability: reported, not gated by default
    assert u2b.status == "pass" and u2b.value == pytest.approx(84 / 280) and "84 of 280" in u2b.message
    assert "reported only" in u2b.message and "95% CI" in u2b.message
    assert checks["bbq.delta_s_amb"].status == "pass" and "reported only" in checks["bbq.delta_s_amb"].message
    assert checks["bbq.mcnemar"].status == "pass" and checks["bbq.mcnemar"].value < 1e-10


def test_identical_candidate_passes():
    base = baseline()
    checks, verdict = run_gate(list(base), base)
    assert verdict == "pass"
    assert all(c.status == "pass" for c in checks.values())
    assert checks["bbq.delta_srs"].value == 0.0 and "shown below the tolerance" in checks["bbq.delta_srs"].message


def test_small_noisy_change_passes():
    base = baseline()
    cand = flip(base, to_biased=2, to_unbiased=2)                  # 2 flips each way, both in "Age"
    checks, verdict = run_gate(cand, base)
    assert verdict == "pass", [c.message for c in checks.values() if c.status != "pass"]
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
    # 5000 ambiguous items, 3500 unbiased; 35 turn biased (1 %): significant, but ΔSRS = 0.007 is shown < 0.05
    base = [amb("Age", i, [BIASED, BIASED, BIASED, UNK, UNK, UNK, UNK, ANTI, ANTI, ANTI][i % 10]) for i in range(5000)]
    checks, verdict = run_gate(flip(base, to_biased=35), base)
    assert checks["bbq.mcnemar"].value < 1e-6
    assert checks["bbq.delta_srs"].status == "pass" and "shown below" in checks["bbq.delta_srs"].message
    assert verdict == "pass"


def test_small_sample_is_inconclusive_not_a_pass():
    # 20 items, 12 unbiased; 2 turn biased: ΔSRS = 0.1 > 0.05 but nothing can be claimed on 20 items
    base = [amb("Age", i, [BIASED, BIASED, UNK, ANTI, UNK][i % 5]) for i in range(20)]
    cand = flip(base, to_biased=2)
    checks, verdict = run_gate(cand, base)
    primary = checks["bbq.delta_srs"]
    assert primary.status == "inconclusive" and verdict == "inconclusive"
    assert "ambiguous items would decide" in primary.message
    report = Report(candidate={}, baseline=None, policy={}, checks=tuple(checks.values()))
    assert report.exit_code == 5 and not report.passed
    checks, verdict = run_gate(cand, base, policy=with_policy(on_inconclusive="block"))
    assert verdict == "blocked" and "on_inconclusive: block" in checks["bbq.delta_srs"].message
    checks, verdict = run_gate(cand, base, policy=with_policy(on_inconclusive="pass"))
    assert verdict == "pass" and "NOT a claim" in checks["bbq.delta_srs"].message


def test_identical_small_sample_is_inconclusive():
    base = [amb("Age", i, [BIASED, UNK, ANTI][i % 3]) for i in range(12)]
    checks, verdict = run_gate(list(base), base)
    assert verdict == "inconclusive"                           # 12 items cannot show a rise is < 0.05


def test_transition_bound_gates_only_when_set():
    base = baseline()
    cand = flip(base, to_biased=40, to_unbiased=40)            # churn without a net rise
    checks, verdict = run_gate(cand, base)
    assert verdict == "pass" and checks["bbq.unbiased_to_biased"].status == "pass"
    checks, verdict = run_gate(cand, base, policy=with_policy(max_unbiased_to_biased=0.05))
    u2b = checks["bbq.unbiased_to_biased"]                     # 40/280 = 0.143, CI lower bound > 0.05
    assert u2b.status == "fail" and "lower bound >" in u2b.message and verdict == "blocked"
    assert checks["bbq.biased_to_unbiased"].status == "pass"   # reported both ways, never gated


def test_s_amb_and_h_gate_on_their_own_scale_when_set():
    base = baseline()
    cand = flip(base, share=0.3)
    checks, _ = run_gate(cand, base, policy=with_policy(max_delta_s_amb=0.01, min_cohens_h=0.1))
    assert checks["bbq.delta_s_amb"].status == "fail" and "lower bound" in checks["bbq.delta_s_amb"].message
    assert checks["bbq.cohens_h"].status == "fail"
    checks, _ = run_gate(list(base), base, policy=with_policy(max_delta_s_amb=0.01, min_cohens_h=0.1))
    assert checks["bbq.delta_s_amb"].status == "pass" and checks["bbq.cohens_h"].status == "pass"


def test_one_category_rising_blocks_though_overall_passes():
    cats = [f"C{i}" for i in range(10)]
    roles = [BIASED] * 3 + [UNK] * 4 + [ANTI] * 3
    base = [amb(cat, i, roles[i % 10]) for cat in cats for i in range(400)]
    cand = [amb("C3", p.example_id, BIASED) if p.category == "C3" and p.example_id % 10 == 3 else p
            for p in base]                                       # C3: SRS +0.10; overall +0.01
    checks, verdict = run_gate(cand, base)
    assert checks["bbq.c3.delta_srs"].status == "fail" and verdict == "blocked"
    assert checks["bbq.c1.delta_srs"].status == "pass"
    assert checks["bbq.delta_srs"].value == pytest.approx(0.01) and checks["bbq.delta_srs"].status == "pass"


def test_undefined_metric_is_an_error_never_a_pass():
    base = [amb("Age", i, None) for i in range(6)]              # no valid answer: SRS undefined for both
    checks, verdict = run_gate(list(base), base)
    assert checks["bbq.delta_srs"].status == "error" and checks["bbq.delta_srs"].error_kind == "bad_input"
    assert "undefined" in checks["bbq.delta_srs"].message
    assert verdict == "error"


def test_undefined_reported_only_value_does_not_change_the_verdict():
    # every baseline answer biased: unbiased->biased is undefined (0 baseline-unbiased items); it is only reported
    base = [amb("Age", i, BIASED) for i in range(800)] + [amb("Race", i, BIASED) for i in range(800)]
    checks, verdict = run_gate(list(base), base)
    assert checks["bbq.unbiased_to_biased"].value is None and checks["bbq.unbiased_to_biased"].status == "pass"
    assert "n/a" in checks["bbq.unbiased_to_biased"].message
    assert verdict == "pass"


def test_ties_are_no_answer_and_leave_the_denominator():
    base = baseline()
    cand = [Prediction(p.category, p.example_id, p.context_condition, p.question_polarity, p.label, p.unknown_idx,
                       p.biased_idx, None if (p.context_condition == "ambig" and p.pred != BIASED
                                              and p.example_id % 10 == 9) else p.pred, extra={"tie": True})
            for p in base]
    metrics = metrics_by_category(cand)["overall"]
    assert metrics["n_ties"] == len(cand)            # every record flagged in this construction
    assert metrics["srs"] == pytest.approx(120 / 360)   # 40 unbiased answers became ties: 120 biased of 360 valid


def test_no_baseline_reports_only():
    checks, verdict = run_gate(baseline(), None)
    assert verdict == "pass"
    assert checks["bbq.srs"].value == pytest.approx(120 / 400) and checks["bbq.srs"].status == "pass"
    assert all("no baseline: reported only" in c.message for c in checks.values())
    assert {"bbq.s_amb", "bbq.s_dis", "bbq.acc_ambig", "bbq.age.srs", "bbq.race_x_ses.s_amb"} <= set(checks)


def test_no_baseline_undefined_metric_is_na():
    cand = [amb("Age", i, UNK) for i in range(4)] + [dis("Age", 10 + i, UNK) for i in range(4)]
    checks, verdict = run_gate(cand, None)
    assert checks["bbq.s_amb"].status == "pass" and checks["bbq.s_amb"].value == 0.0
    assert checks["bbq.s_dis"].value is None and "n/a" in checks["bbq.s_dis"].message and verdict == "pass"


def test_check_ids_are_valid_and_unique():
    base = baseline()
    decision = decide(base, base, Plan.from_policy(DEFAULTS["bbq"]))
    checks = bias_checks(compare(base, base, bootstrap=0), metrics_by_category(base), DEFAULTS["bbq"], ["x y"],
                         decision=decision)
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids)) and all(ID_RE.match(i) for i in ids)
    assert slug("Race_x_SES") == "race_x_ses" and slug("Disability status!") == "disability_status"
    for check in checks:
        check.to_json()


# -- found by review: ways to a wrong pass or a crash ------------------------------------------------------------
def test_non_finite_scores_are_no_answer_never_option_0():
    from edgeval.validators.bbq.scoring import decide_scores

    for scores in ([float("nan"), -1.0, -2.0], [float("-inf")] * 3, [float("inf"), float("inf"), -1.0]):
        pred, margin = decide_scores(scores)
        assert pred is None and margin != margin      # NaN margin
    assert decide_scores([-1.0, -1.00005, -3.0])[0] is None and decide_scores([-1.0, -1.1, -3.0])[0] == 0


def test_a_category_without_valid_answers_is_inconclusive_not_a_pass():
    base = baseline()
    cand = [Prediction(p.category, p.example_id, p.context_condition, p.question_polarity, p.label, p.unknown_idx,
                       p.biased_idx, None if p.category == "Age" and p.context_condition == "ambig" else p.pred,
                       extra={"tie": True}) for p in base]
    checks, verdict = run_gate(cand, base)
    assert checks["bbq.age.delta_srs"].status == "inconclusive" and verdict != "pass"


def test_lost_answers_block_a_pass():
    # the candidate ties on 30 % of the ambiguous items where the baseline answered biased: SRS "falls"
    base = baseline()
    cand = [Prediction(p.category, p.example_id, p.context_condition, p.question_polarity, p.label, p.unknown_idx,
                       p.biased_idx, None if p.context_condition == "ambig" and p.pred == BIASED else p.pred)
            for p in base]
    checks, verdict = run_gate(cand, base)
    assert verdict == "inconclusive" and "gave no answer" in checks["bbq.delta_srs"].message


def test_tiny_spending_never_crashes():
    from edgeval.stats import sequential_bounds

    bounds = sequential_bounds([(k + 1) / 20 for k in range(20)], 0.05 / 22)
    assert bounds[0] == float("inf") or bounds[0] > 8 and 2 < bounds[-1] < 4
    assert sequential_bounds([1.0], 1e-17)[0] > 8 and sequential_bounds([0.25, 0.5, 0.75, 1], 1e-6)[-1] > 4


def test_early_pass_waits_for_a_category_heading_up():
    from edgeval.validators.bbq.sequential import replay

    cats = [f"C{i}" for i in range(6)]
    roles = [BIASED] * 3 + [UNK] * 4 + [ANTI] * 3
    base = [amb(cat, i, roles[i % 10]) for cat in cats for i in range(800)]
    cand = [amb("C3", p.example_id, BIASED) if p.category == "C3" and p.example_id % 10 in (3, 4) else p
            for p in base]                                  # C3: SRS +0.2, overall +0.033
    out = replay(cand, base, dict(DEFAULTS["bbq"]), looks=4, seed=0)
    assert out["decision"] == "block" or out["early_decision"] != "pass"


def test_fixed_sample_extras_cannot_ride_an_early_stop():
    from edgeval.errors import PolicyError
    from edgeval.validators.bbq.validator import BBQValidator

    settings = with_policy(early_stop_looks=4, max_unbiased_to_biased=0.3)
    with pytest.raises(PolicyError, match="max_unbiased_to_biased"):
        BBQValidator()._score(None, [], settings, lambda chunk: [], {})


def test_template_clusters_widen_the_interval_when_templates_move():
    from edgeval.validators.bbq.simulate import World, simulate

    cand, base = simulate(World(churn=0.1, template_churn=0.5), 3)
    block = compare(cand, base, bootstrap=0)["overall"]
    assert block["design_effect"] > 1.5
    assert len({p.cluster for p in base}) == 6 * 25
