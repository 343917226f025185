"""Hostile review of the CrowS-Pairs / StereoSet lenses and the shared decision core: one test per bug found."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeval.errors import DataError
from edgeval.lenses import data
from edgeval.lenses.crows import CrowsPairsValidator
from edgeval.policy import DEFAULTS, Policy
from edgeval.validators.base import RunContext


class _Runtime:
    """A runtime whose 'scores' come from a function of the item (the lens's score is patched to call it)."""

    def __init__(self, scores):
        self.scores = scores
        self.tokenizer = SimpleNamespace(special_affixes=lambda: ([1], []))


def _ctx(cand, base) -> RunContext:
    ctx = RunContext(candidate=SimpleNamespace(path="c"), baseline=SimpleNamespace(path="b"),
                     policy=Policy.default(), seed=3, progress=lambda m: None, resident="both")
    ctx._runtimes.update(candidate=_Runtime(cand), baseline=_Runtime(base))  # doubles: never reopened
    return ctx


def _crows_dir(tmp_path: Path, rows: list[str]) -> str:
    (tmp_path / "Crows-Pairs").mkdir()
    (tmp_path / "Crows-Pairs" / "test.csv").write_text("\n".join([",bias_type,sentence,mask1,mask2", *rows]) + "\n")
    return str(tmp_path)


@pytest.fixture
def fake_scores(monkeypatch):
    monkeypatch.setattr(CrowsPairsValidator, "score",
                        lambda self, runtime, items, settings: [runtime.scores(i) for i in items])


def _number(item) -> int:
    return int(item.stereo.rsplit(" ", 1)[1].rstrip("."))


def test_repeated_crows_ids_are_refused_not_merged(tmp_path, fake_scores):
    """Bug: scores are kept by pair id, so two rows with one id shared one score: 400 pairs, half of them
    stereotype-preferred, were reported as 100 % stereotype-preferred (and gated on that)."""
    folder = _crows_dir(tmp_path, [f"{i // 2},t{i % 2},S [MASK] {i}.,a,b" for i in range(400)])
    with pytest.raises(DataError, match="row 3: id '0' repeats row 2"):
        data.read_crows(data.locate("crows_pairs", folder))
    half = lambda item: {"stereo": -1.0 if _number(item) % 2 else -2.0, "anti": -1.5}  # noqa: E731
    with pytest.raises(DataError):
        CrowsPairsValidator().run(_ctx(half, half), {**DEFAULTS["crows_pairs"], "data_dir": folder})


def test_bias_types_with_one_check_id_are_refused(tmp_path, fake_scores):
    """Bug: bias types "race-color" and "race color" both became check id crows_pairs.race_color.delta_stereo:
    two checks with one id in one report."""
    folder = _crows_dir(tmp_path, [f"{i},{'race-color' if i % 2 else 'race color'},S [MASK] {i}.,a,b"
                                   for i in range(40)])
    same = lambda item: {"stereo": -1.0, "anti": -1.5}  # noqa: E731
    with pytest.raises(DataError, match="same check id part 'race_color'"):
        CrowsPairsValidator().run(_ctx(same, same), {**DEFAULTS["crows_pairs"], "data_dir": folder})


def test_answers_lost_to_ties_are_named_as_the_reason(tmp_path, fake_scores):
    """Bug: a candidate that tied on half of the pairs (otherwise the baseline's answers, 600 pairs: its upper
    bound is well below the tolerance) was inconclusive with the message "neither shown below 0.05 nor
    significantly above it; about N pairs would decide" — false on both counts: more pairs cannot help."""
    folder = _crows_dir(tmp_path, [f"{i},t{i % 2},S [MASK] {i}.,a,b" for i in range(600)])
    base = lambda item: {"stereo": -1.0 if _number(item) % 5 else -2.0, "anti": -1.5}  # noqa: E731
    cand = lambda item: {"stereo": -1.5, "anti": -1.5} if _number(item) % 10 < 5 else base(item)  # noqa: E731
    out = CrowsPairsValidator().run(_ctx(cand, base), {**DEFAULTS["crows_pairs"], "data_dir": folder})
    check = {c.id: c for c in out.checks}["crows_pairs.delta_stereo"]
    assert check.status == "inconclusive" and out.results["decision"]["overall"]["lost_answers"] > 0.45
    assert "tied (no preference) on 50.0% more pairs" in check.message and "would decide" not in check.message


def test_a_bias_type_the_candidate_stopped_answering_is_not_passed(tmp_path, fake_scores):
    """Bug: a candidate that tied on 30 of the 31 pairs of one bias type (3 % of all pairs: within the overall
    lost-answer allowance) passed, its check for that type "pass" on one pair; a group with no answer at all
    was already inconclusive, one with a single answer was not."""
    rows = [f"{i},{'small' if i < 31 else f'big{i % 3}'},S [MASK] {i}.,a,b" for i in range(1018)]
    folder = _crows_dir(tmp_path, rows)
    base = lambda item: {"stereo": -1.0 if _number(item) % 5 else -2.0, "anti": -1.5}  # noqa: E731
    cand = lambda item: {"stereo": -1.5, "anti": -1.5} if 0 < _number(item) < 31 else base(item)  # noqa: E731
    out = CrowsPairsValidator().run(_ctx(cand, base), {**DEFAULTS["crows_pairs"], "data_dir": folder})
    status = {c.id: c.status for c in out.checks}
    assert out.results["decision"]["outcome"] == "inconclusive"
    assert out.results["decision"]["unmeasured_categories"] == ["small"]
    assert status["crows_pairs.small.delta_stereo"] == "inconclusive"
    assert status["crows_pairs.delta_stereo"] == "inconclusive" and status["crows_pairs.big0.delta_stereo"] == "pass"
    same = CrowsPairsValidator().run(_ctx(base, base), {**DEFAULTS["crows_pairs"], "data_dir": folder})
    assert same.results["decision"]["outcome"] == "pass"                 # the control: nothing lost, a pass


def test_bbq_category_that_lost_answers_is_inconclusive_too():
    """The same bug in the shared core, seen from BBQ: a category where the candidate answered 1 of 40
    ambiguous items no longer counts as measured (its check and the run are inconclusive, not pass)."""
    from edgeval.decision import PairedUnits, Plan, decide

    rng = __import__("numpy").random.default_rng(5)
    base = [float(x) for x in rng.random(2000) < 0.3]
    cand = list(base)
    cand[:39] = [None] * 39                                      # category "a": items 0..39, one left answered
    cats = ["a" if i < 40 else f"b{i % 3}" for i in range(2000)]
    units = PairedUnits.binary(cand, base)
    by_cat = {c: PairedUnits.binary([cand[i] for i in range(2000) if cats[i] == c],
                                    [base[i] for i in range(2000) if cats[i] == c]) for c in sorted(set(cats))}
    plan = Plan(0.05, 0.15, 0.05)
    decision = decide(units, by_cat, plan)
    assert decision.overall.outcome == "pass" and decision.unmeasured == ["a"]
    assert decision.outcome == "inconclusive"
    assert decide(PairedUnits.binary(base, base), {c: PairedUnits.binary(u.num_b, u.num_b) for c, u in
                                                   by_cat.items()}, plan).outcome == "pass"


def test_a_candidate_with_nan_scores_is_an_error_that_says_so(tmp_path, fake_scores):
    """A candidate whose logits are NaN everywhere is an error (never a pass); the message said only that it
    "tied on every pair", hiding the broken model."""
    folder = _crows_dir(tmp_path, [f"{i},t{i % 2},S [MASK] {i}.,a,b" for i in range(50)])
    base = lambda item: {"stereo": -1.0 if _number(item) % 2 else -2.0, "anti": -1.5}  # noqa: E731
    nan = lambda item: {"stereo": float("nan"), "anti": float("nan")}  # noqa: E731
    out = CrowsPairsValidator().run(_ctx(nan, base), {**DEFAULTS["crows_pairs"], "data_dir": folder})
    check = {c.id: c for c in out.checks}["crows_pairs.delta_stereo"]
    assert check.status == "error" and "non-finite" in check.message


def test_a_sentence_with_no_token_to_score_is_bad_data_not_a_crash():
    from edgeval.errors import DataError
    from edgeval.lenses.scoring import token_logprobs

    with pytest.raises(DataError, match="no token to score"):
        token_logprobs(object(), [[1, 2], [1]], [1, 1])
