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
    assert done["items"] == spotcheck.SPOT_ITEMS and done["max_abs_diff"] < 1e-6
    assert done["tolerance"] == spotcheck.SAME_RUNTIME_TOLERANCE and len(done["keys"]) == spotcheck.SPOT_ITEMS


def test_another_models_measurements_are_refused_naming_the_item():
    saved = _by_key(score_letters(OptionLovingRuntime("the grandson", like=1.5), ITEMS, 3, 8))
    with pytest.raises(DataError, match=r"f: the saved baseline predictions are not the baseline model's: re-scored "
                                        r"on fake, item \('Age', \d+\) has letter log-probabilities .*differ by"):
        spotcheck.spot_check(OptionLovingRuntime("the grandson"), "f", "fake", saved, ITEMS, LETTER, False)


def test_a_file_from_another_runtime_gets_the_wider_tolerance_and_says_so():
    runtime = OptionLovingRuntime("the grandson")
    nudged = OptionLovingRuntime("the grandson", like=1.004)   # 4e-3 in the liked letter's logit: other kernels
    saved = _by_key(score_letters(nudged, ITEMS, 3, 8))
    done = spotcheck.spot_check(runtime, "f", "torch", saved, ITEMS, LETTER, False)
    assert done["tolerance"] == spotcheck.OTHER_RUNTIME_TOLERANCE and 1e-3 < done["max_abs_diff"] < 1e-2
    with pytest.raises(DataError, match="tolerance 0.002"):
        spotcheck.spot_check(runtime, "f", "fake", saved, ITEMS, LETTER, False)
    with pytest.raises(DataError, match="the file was scored on torch"):
        spotcheck.spot_check(runtime, "f", "torch", _by_key(score_letters(
            OptionLovingRuntime("the grandson", like=1.5), ITEMS, 3, 8)), ITEMS, LETTER, False)


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
