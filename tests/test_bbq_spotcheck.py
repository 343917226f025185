"""The saved baseline's spot check (edgeval.validators.bbq.spotcheck) in every scoring mode: a file made by the
model passes, one whose measurements are not the model's is refused naming the item, the tolerance follows the
runtime that wrote the file."""
from __future__ import annotations

import numpy as np
import pytest
from test_bbq_scoring import ContinuationRuntime, OptionLovingRuntime, item

from edgeval.errors import DataError
from edgeval.validators.bbq import prior, spotcheck
from edgeval.validators.bbq.scoring import score_letters, score_loglik

ITEMS = [item(("x" * n, "the grandson", "Unknown"), example_id=n) for n in range(1, 21)]
LETTER = {"mode": "letter", "orders": 3, "batch_size": 8}


def _by_key(preds):
    return {p.key: p for p in preds}


def test_a_file_made_by_the_model_passes_and_says_what_was_checked():
    runtime = OptionLovingRuntime("the grandson")
    saved = _by_key(score_letters(runtime, ITEMS, 3, 8))
    done = spotcheck.spot_check(runtime, "f", "fake", saved, ITEMS, LETTER, prior_mode=False)
    assert done["items"] == len(ITEMS) == len({tuple(k) for k in done["keys"]})  # fewer items than SPOT_ITEMS: all
    assert done["max_abs_diff"] < 1e-6 and done["tolerance"] == spotcheck.TOLERANCE


def test_another_models_measurements_are_refused_naming_the_item():
    saved = _by_key(score_letters(OptionLovingRuntime("the grandson", like=1.5), ITEMS, 3, 8))
    with pytest.raises(DataError, match=r"f: the saved baseline predictions are not the baseline model's: re-scored "
                                        r"on fake, item \('Age', \d+\) has letter log-probabilities .*differ by"):
        spotcheck.spot_check(OptionLovingRuntime("the grandson"), "f", "fake", saved, ITEMS, LETTER, False)


def test_rows_nudged_within_a_loose_tolerance_are_refused_whatever_runtime_the_file_names():
    """A file whose every row is moved 1e-3 towards other answers (a forgery the second review made under a 2e-3
    tolerance, and under 1e-2 by writing another runtime's name into the header) is refused; the header's
    runtime name only adds a hint."""
    runtime = OptionLovingRuntime("the grandson")
    nudged = _by_key(score_letters(OptionLovingRuntime("the grandson", like=1.003), ITEMS, 3, 8))
    for claimed in ("fake", "torch"):
        with pytest.raises(DataError, match="tolerance 0.0002") as info:
            spotcheck.spot_check(runtime, "f", claimed, nudged, ITEMS, LETTER, False)
        assert ("--baseline-runtime torch" in str(info.value)) == (claimed == "torch")


def test_the_sample_detects_a_partial_forgery_as_often_as_the_hypergeometric_law_says(monkeypatch):
    """Operating characteristic of the spot check, through spot_check with a seeded draw: 4 of 200 items forged,
    64 drawn; the file passes only when the draw misses all 4: C(196, 64) / C(200, 64) = 0.21."""
    import random
    from math import comb, sqrt

    items = [item(("x" * (n % 7 + 1), "the grandson", "Unknown"), example_id=n) for n in range(200)]
    genuine = {it.key: np.log(np.full((3, 3), 1 / 3)) for it in items}
    monkeypatch.setattr(spotcheck, "letter_rows",
                        lambda runtime, chosen, orders, batch: [genuine[it.key] for it in chosen])
    forged_keys = {it.key for it in items[:4]}

    class Record:
        def __init__(self, rows):
            self.extra = {"order_logprobs": rows.tolist()}

    saved = {k: Record(v + (0.01 if k in forged_keys else 0.0)) for k, v in genuine.items()}
    rng, trials, passed = random.Random(7), 600, 0
    for _ in range(trials):
        try:
            spotcheck.spot_check(OptionLovingRuntime("x"), "f", "fake", saved, items, LETTER, False, rng=rng)
            passed += 1
        except DataError:
            pass
    expected = comb(196, spotcheck.SPOT_ITEMS) / comb(200, spotcheck.SPOT_ITEMS)
    assert abs(passed / trials - expected) < 4 * sqrt(expected * (1 - expected) / trials), (passed / trials, expected)


def test_the_prior_modes_one_order_rows_are_compared_with_their_shown_order():
    runtime = OptionLovingRuntime("the grandson")
    log_prior = np.log(np.array([0.5, 0.3, 0.2]))
    saved = _by_key(prior.score_debiased(runtime, ITEMS, log_prior, 8))
    assert all(p.extra.get("shown_order") is not None for p in saved.values())
    assert spotcheck.spot_check(runtime, "f", "fake", saved, ITEMS, LETTER, True)["max_abs_diff"] < 1e-6
    other = _by_key(prior.score_debiased(OptionLovingRuntime("the grandson", like=1.5), ITEMS, log_prior, 8))
    with pytest.raises(DataError, match="not the baseline model's"):
        spotcheck.spot_check(runtime, "f", "fake", other, ITEMS, LETTER, True)


def test_loglik_files_are_compared_on_their_option_scores():
    runtime = ContinuationRuntime()
    settings = {"mode": "loglik", "batch_size": 8}
    saved = _by_key(score_loglik(runtime, ITEMS, 8))
    assert spotcheck.spot_check(runtime, "f", "fake", saved, ITEMS, settings, False)["max_abs_diff"] < 1e-6
    forged = {k: p.__class__(**{**p.__dict__, "scores": tuple(s + 0.1 * i for i, s in enumerate(p.scores))})
              for k, p in saved.items()}
    with pytest.raises(DataError, match="option scores"):
        spotcheck.spot_check(runtime, "f", "fake", forged, ITEMS, settings, False)


def test_a_run_without_items_cannot_vouch_for_a_file():
    with pytest.raises(DataError, match="this run samples no items"):
        spotcheck.spot_check(OptionLovingRuntime("x"), "f", "fake", {}, [], LETTER, False)
