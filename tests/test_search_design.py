"""The search's sequential design (bisection, errors as unknown, replay) and its operating characteristics."""
from __future__ import annotations

import math

import pytest

from edgeval.search.design import ERROR, FAIL, PASS, answer, bracket, next_index, replay
from edgeval.search.oc import bisect_on, bumpy, logistic, simulate


def run(truth: list[str], hint: int | None = None) -> tuple[int, list[int]]:
    seen: dict[int, str] = {}
    order = []
    while (i := next_index(len(truth), seen, "bisect", hint)) is not None:
        order.append(i)
        seen[i] = truth[i]
    return answer(len(truth), seen).highest_pass, order


@pytest.mark.parametrize("n", [1, 2, 5, 9, 17])
def test_bisection_finds_every_threshold_in_log_steps(n):
    for k in range(-1, n):  # k: the highest passing index of a deterministic monotone curve
        truth = [PASS] * (k + 1) + [FAIL] * (n - k - 1)
        best, order = run(truth)
        assert best == k
        assert len(order) <= math.ceil(math.log2(n + 1)) and len(set(order)) == len(order)


@pytest.mark.parametrize("n", [1, 2, 5, 9, 17])
def test_a_hint_orders_the_design_but_never_changes_its_answer(n):
    """Every threshold k and every hint (right, wrong either way, none): the answer is k; a right hint (the
    lowest failing index k + 1) takes two evaluations, a wrong one at most one more than plain bisection."""
    for k in range(-1, n):
        truth = [PASS] * (k + 1) + [FAIL] * (n - k - 1)
        for hint in (None, *range(n)):
            best, order = run(truth, hint)
            assert best == k, (k, hint, order)
            assert len(set(order)) == len(order)
            assert len(order) <= math.ceil(math.log2(n + 1)) + (hint is not None)
        if 0 <= k < n - 1:
            assert run(truth, k + 1)[1] == [k, k + 1]  # the point below the forecast boundary, then the boundary


def test_a_hint_outside_the_bracket_is_ignored():
    assert next_index(9, {2: FAIL}, "bisect", 6) == next_index(9, {2: FAIL})  # a gated fail below the forecast
    assert next_index(9, {7: PASS}, "bisect", 6) == next_index(9, {7: PASS})  # a gated pass above it
    assert next_index(9, {5: ERROR}, "bisect", 6) == next_index(9, {5: ERROR})  # the point below it errored
    assert next_index(9, {}, "grid", 6) == 0  # the grid ignores hints
    steps = replay(9, lambda i: ([PASS] * 4 + [FAIL] * 5)[i], "bisect", 4)
    assert [i for i, _ in steps] == [3, 4]


def test_an_error_is_unknown_not_pass_nor_fail():
    assert bracket(9, {4: ERROR}) == (-1, 9)  # the error moved nothing
    truth = [PASS] * 5 + [FAIL, ERROR, FAIL, FAIL]
    best, order = run(truth)
    assert best == 4 and 6 in order and 7 in order  # the design stepped past the error to its neighbour
    assert answer(9, {i: truth[i] for i in order}).unresolved is False  # the error lies above the failing 5
    truth = [PASS] * 4 + [ERROR] + [FAIL] * 4
    best, order = run(truth)
    assert best == 3 and answer(9, {i: truth[i] for i in order}).unresolved  # 4 errored: 3 is a lower bound


def test_errors_filling_the_bracket_leave_a_flagged_lower_bound():
    truth = [PASS, PASS, ERROR, ERROR, FAIL]
    seen: dict[int, str] = {}
    while (i := next_index(5, seen)) is not None:
        seen[i] = truth[i]
    result = answer(5, seen)
    assert result.highest_pass == 1 and result.bracket == (1, 4) and result.unresolved
    assert all(seen.get(i) == ERROR for i in (2, 3))


def test_grid_strategy_visits_every_point_in_order():
    seen: dict[int, str] = {}
    order = []
    while (i := next_index(4, seen, "grid")) is not None:
        order.append(i)
        seen[i] = FAIL
    assert order == [0, 1, 2, 3]


def test_replay_reproduces_the_decisions_and_stops_at_the_unknown():
    truth = [PASS] * 6 + [FAIL] * 3
    _, order = run(truth)
    known = {i: truth[i] for i in order[:2]}
    steps = replay(9, known.get)
    assert [i for i, _ in steps] == order[:3] and steps[-1][1] is None


def test_oc_monotone_deterministic_curve_always_agrees_with_the_grid():
    p = [1.0] * 7 + [0.0] * 10
    oc = simulate(p, trials=50, seed=3)
    assert oc["agree"] == 1.0 and oc["rec_fails"] == 0.0 and oc["evals"] <= 5


def test_oc_reduced_table_seeded():
    """A reduced version of the docs/search.md table: bisection agrees with the grid most of the time on a
    sharp monotone curve, costs ~ log2(n) evaluations, and recommends a point the gate would more often block
    no more often than the exhaustive grid does (the grid's max over more draws is the luckier pass)."""
    sharp = simulate(logistic(17, 0.5, 0.02), trials=400, seed=0)
    assert sharp["agree"] >= 0.95 and sharp["evals"] < 5.5
    for p in (logistic(17, 0.5, 0.08), bumpy(17, 0.5, 0.05, 0.25)):
        oc = simulate(p, trials=400, seed=0)
        assert oc["rec_fails"] <= oc["grid_rec_fails"] + 0.02
        assert 0.4 <= oc["agree"] < 1.0  # non-trivial: soft and wobbly curves do make bisection disagree
    errors = simulate(logistic(17, 0.5, 0.02), trials=400, seed=0, error_rate=0.1)
    assert errors["rec_fails"] <= 0.1


def test_bisect_on_counts_evaluations():
    assert bisect_on([PASS, FAIL, FAIL]) == (0, 2)


def test_a_journal_with_odd_records_loads_without_them(tmp_path):
    """Records edited by hand into something else (a list as key, no key, not a dict) are ignored, not a crash."""
    import json

    from edgeval.search.journal import FORMAT, VERSION, Journal

    path = tmp_path / "journal.json"
    good = {"key": "k1", "outcome": "fail"}
    path.write_text(json.dumps({"format": FORMAT, "version": VERSION,
                                "records": [{"key": ["x"]}, {"outcome": "pass"}, 7, good]}))
    assert Journal.load(path).records == {"k1": good}


def test_oc_of_the_screened_design_seeded():
    """The screen's hint (docs/search.md table, reduced): a right forecast brings a deterministic search down to
    two evaluations with the grid's answer; a wrong one costs at most one evaluation more and never a wrong answer
    there; on a noisy curve a right forecast does not raise the rate of answers the gate would more often block."""
    from edgeval.search.oc import place_hint, scenarios

    curves = scenarios()
    exact = curves["monotone, deterministic"]
    for offset, evals in ((0, 2.0), (3, 4.0), (-3, 6.0)):
        oc = simulate(exact, trials=20, seed=1, hint=place_hint(exact, offset))
        assert oc["agree"] == 1.0 and oc["rec_fails"] == 0.0 and oc["evals"] == evals
    soft = curves["monotone, soft"]
    plain = simulate(soft, trials=400, seed=2)
    hinted = simulate(soft, trials=400, seed=2, hint=place_hint(soft, 0))
    assert hinted["rec_fails"] <= plain["rec_fails"] and hinted["evals"] < plain["evals"]


def test_search_oc_through_the_real_gate_reduced_seeded():
    """benchmarks/search_oc.py, reduced: outcomes from the BBQ validator's own early-stopping decision on simulated
    predictions. Where perplexity binds, no design may answer above the perplexity boundary (false pass 0), and the
    screen's hint takes the search to about two candidates; the same draws are shared by the designs."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from search_oc import simulate_all

    rows = {r["design"]: r for r in simulate_all(reps=6, seed=3, scenarios=(0,))}
    assert all(r["false_pass"] == 0.0 and r["reps"] == 6 for r in rows.values())
    assert all(r["answer"] is None or r["answer"] <= 0.25 + 1e-9 for r in rows.values())
    assert rows["screened"]["evals"] < rows["bisect"]["evals"] <= 5 and rows["grid 5"]["evals"] == 17
