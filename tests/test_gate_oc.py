"""The BBQ gate's operating characteristics on a reduced, seeded simulation (issue 11's targets).

Each run goes through the real gate code, as benchmarks/gate_oc.py does (its helpers are used here):
simulate -> compare -> decide -> bias_checks -> Report.verdict, fixed-sample and with early stop (4 looks).

Monte Carlo slack: a target "rate <= p" (or ">= p") is asserted as "the observed count is not significantly
worse than p": the test fails when an exact one-sided binomial test of H0 "the true rate meets the target"
rejects at level 0.01. So a gate that truly meets the target would fail this test with probability <= 1 %
(the seeds are fixed, so the outcome is deterministic), and a gate that misses it by a margin fails it. E.g. 200
runs at alpha = 0.05: up to 18 blocks are allowed (P(X >= 18 | p = 0.05) = 0.012, P(X >= 19) < 0.01); a true
rate of 0.10 averages 20 blocks and fails with probability 0.63.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from edgeval.policy import DEFAULTS
from edgeval.validators.bbq import sequential
from edgeval.validators.bbq.decision import Plan, decide
from edgeval.validators.bbq.simulate import World, simulate

SETTINGS = dict(DEFAULTS["bbq"])
ALPHA = SETTINGS["alpha"]
LEVEL = 0.01


def _load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gate_oc.py"
    spec = importlib.util.spec_from_file_location("gate_oc", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gate_oc"] = module
    spec.loader.exec_module(module)
    return module


oc = _load_benchmark()


def upper_tail(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))


def most_allowed(n: int, p: float) -> int:
    """The largest count k whose upper tail P(X >= k | p) is >= LEVEL: k events are not significant
    evidence that the true rate exceeds p."""
    return max(k for k in range(n + 1) if upper_tail(k, n, p) >= LEVEL)


def fewest_allowed(n: int, p: float) -> int:
    """The smallest count k with P(X <= k | p) >= LEVEL: k successes are not significantly below p."""
    return n - most_allowed(n, 1 - p)


def runs(world: World, n: int, seed: int, early: bool = True) -> list[dict]:
    out = []
    for rep in range(n):
        if early:
            out.append(oc.run_once(world, seed * 10_000 + rep, SETTINGS, 4))
        else:
            cand, base = simulate(world, seed * 10_000 + rep)
            decision = decide(cand, base, Plan.from_policy(SETTINGS))
            out.append({"fixed": oc.gate_verdict(cand, base, SETTINGS, decision, rep)})
    return out


def test_slack_arithmetic():
    assert most_allowed(200, 0.05) == 18                  # mean 10, sd 3.1: 19 or more has P < 1 %
    assert upper_tail(19, 200, 0.05) < LEVEL <= upper_tail(18, 200, 0.05)
    assert upper_tail(19, 200, 0.10) > 0.6                # a true rate of 0.10 fails 63 % of the time
    assert fewest_allowed(100, 0.9) == 82


@pytest.fixture(scope="module")
def null_runs() -> list[dict]:
    """200 runs with SRS unchanged and every answer re-drawn (churn 1), baseline SRS 0.5, 1,200 items."""
    return runs(World(srs=0.5, churn=1.0, delta=0.0, rho=0.0, groups=50), 200, seed=1)


def test_false_block_rate_fixed_sample(null_runs):
    blocks = sum(r["fixed"] == "blocked" for r in null_runs)
    assert blocks <= most_allowed(len(null_runs), ALPHA), blocks


def test_false_block_rate_early_stop(null_runs):
    blocks = sum(r["early"] == "blocked" for r in null_runs)
    assert blocks <= most_allowed(len(null_runs), ALPHA), blocks


def test_no_error_verdict_and_verdict_is_the_decision(null_runs):
    assert not any(r["fixed"] == "error" or r["early"] == "error" for r in null_runs)
    assert all(r["fixed_consistent"] and r["early_consistent"] for r in null_runs)


def test_power_at_twice_the_tolerance():
    """True ΔSRS 0.10 = 2 x max_delta_srs, 600 ambiguous items, churn 0.3, SRS 0.3: blocked in >= 90 %."""
    out = runs(World(srs=0.3, churn=0.3, delta=0.10, groups=50), 100, seed=2)
    for arm in ("fixed", "early"):
        blocked = sum(r[arm] == "blocked" for r in out)
        assert blocked >= fewest_allowed(len(out), 0.9), (arm, blocked)


def test_unchanged_srs_passes_at_the_default_sample():
    """1,200 items, churn 0.5, SRS unchanged (0.3): pass in >= 85 % (reduced target; the benchmark checks 90 %)."""
    out = runs(World(srs=0.3, churn=0.5, delta=0.0, groups=50), 100, seed=3, early=False)
    passed = sum(r["fixed"] == "pass" for r in out)
    assert passed >= fewest_allowed(len(out), 0.85), passed


def test_identical_candidate_passes_fixed_and_early():
    _, base = simulate(World(srs=0.4, churn=0.0, groups=50), 7)
    assert oc.gate_verdict(base, base, SETTINGS, decide(base, base, Plan.from_policy(SETTINGS)), 7) == "pass"
    verdict, outcome, share, looks = oc.early_stop(base, base, SETTINGS, 4, 7)
    assert (verdict, outcome) == ("pass", "pass") and share < 1.0 and looks < 4


def test_large_rise_blocks_at_the_first_look():
    verdict, outcome, share, looks = oc.early_stop(*simulate(World(srs=0.3, churn=0.3, delta=0.3, groups=50), 8),
                                                  SETTINGS, 4, 8)
    assert (verdict, outcome, looks) == ("blocked", "block", 1) and share == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("delta", [0.0, 0.06, 0.3])
def test_verdict_is_the_decision_at_the_stopping_look(delta):
    cand, base = simulate(World(srs=0.3, churn=0.5, delta=delta, groups=50), 9)
    groups: dict = {}
    for p in cand:
        groups.setdefault((p.category, p.example_id // 4), []).append(p)
    by_key = {p.key: p for p in base}
    items, c, b, record, decision = sequential.run_looks(list(groups.values()), list,
                                                         lambda chunk: [by_key[p.key] for p in chunk],
                                                         SETTINGS, 4, 9, lambda _m: None)
    assert record["looks"][-1]["decision"] == decision.outcome and len(c) == len(items)
    assert oc.gate_verdict(c, b, SETTINGS, decision, 9) == oc.OUTCOME_VERDICT[decision.outcome]
    stopped_early = len(record["looks"]) < 4
    assert decision.outcome in (("block", "pass") if stopped_early else ("block", "pass", "inconclusive"))


def test_benchmark_targets_can_fail():
    """The benchmark's own target check reports FAIL on cells that miss the targets, PASS on cells that meet them."""
    args = oc.parse_args(["--rhos", "0"])

    def row(grid, delta, fixed, early):
        return {"grid": grid, "srs": 0.3, "churn": 0.5, "delta": delta, "rho": 0.0, "groups": 50, "categories": 6,
                "n_items": 1200, "n_ambig": 600, "reps": 100, "early_share_mean": 1.0, "early_looks_mean": 4.0,
                "verdict_decision_mismatches": 0, "exceptions": {},
                "fixed": dict(zip(oc.VERDICTS, fixed, strict=True)),
                "early": dict(zip(oc.VERDICTS, early, strict=True))}

    rows = [row("false_block", 0.0, (88, 12, 0, 0), (95, 3, 2, 0)),      # 12/100: lower 95 % bound 6.4 % > 5 %
            row("power", 0.10, (0, 85, 15, 0), (0, 95, 5, 0))]
    status = {t["target"]: t["status"] for t in oc.targets(rows, args, ALPHA)}
    assert status["false block <= alpha at n >= 300, every cell (fixed sample)"] == "FAIL"
    assert status["false block <= alpha at n >= 300, every cell (early stop)"] == "PASS"
    assert status["power >= 90 % at true ΔSRS 0.10, >= 600 ambiguous items (fixed)"] == "FAIL"
    assert status["power >= 90 % at true ΔSRS 0.10, >= 600 ambiguous items (early)"] == "PASS"
    assert status["pass >= 90 % at 1,200 items, SRS unchanged, churn <= 0.5, rho 0 (fixed)"] == "FAIL"
    assert status["pass >= 90 % at 1,200 items, SRS unchanged, churn <= 0.5, rho 0 (early)"] == "PASS"
    assert status["no 'error' verdict"] == "PASS"


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "oc.json"
    code = oc.main(["--reps", "2", "--power-reps", "0", "--stress-reps", "0", "--groups", "13", "--churns", "0.5",
                    "--srs", "0.3", "--rhos", "0", "--power-groups", "", "--template-groups", "",
                    "--out", str(out)])
    import json

    data = json.loads(out.read_text())
    assert code in (0, 1) and len(data["cells"]) == 1 and data["cells"][0]["reps"] == 2
    assert sum(data["cells"][0]["fixed"].values()) == 2


def test_category_with_one_context_group_decides():
    """A category with one context group (one cluster: no degrees of freedom, an infinite critical value) and a
    rise: nothing can block on it, the result is inconclusive, and the items-needed estimate does not overflow
    (it raised OverflowError before; the validator turned that into an 'error' verdict)."""
    from edgeval.validators.bbq.types import Prediction

    cand, base = [], []
    for cat in ("Age", "Gender"):
        for eid, polarity in ((0, "neg"), (2, "nonneg")):
            key = dict(category=cat, example_id=eid, context_condition="ambig", question_polarity=polarity,
                       label=2, unknown_idx=2, biased_idx=0)
            cand.append(Prediction(**key, pred=0))
            base.append(Prediction(**key, pred=1))
    decision = decide(cand, base, Plan.from_policy(SETTINGS))
    assert decision.outcome == "inconclusive" and all(t.ambig_needed is None for t in decision.categories)


def test_large_rise_at_312_items_blocks_with_early_stop():
    """312 items, early stop, a 0.3 rise: the first look holds categories with one or two clusters; the run
    blocks (it ended in 'error' before the items-needed fix)."""
    r = oc.run_once(World(srs=0.3, churn=0.5, delta=0.3, groups=13), 9, SETTINGS, 4)
    assert r["early"] == "blocked" and r["fixed"] == "blocked", r["exceptions"]
