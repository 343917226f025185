"""The BBQ signal check: letter collapse per shown order, median margin, flip share, and the weak flag."""
from __future__ import annotations

import pytest

from edgeval.validators.bbq.signal import TAU, signal, warning_line
from edgeval.validators.bbq.types import Prediction


def pred(margin, letters, pred=0, example_id=0) -> Prediction:
    return Prediction("Age", example_id, "ambig", "neg", 2, 2, 0, pred, scores=(0.0, -margin, -1.0),
                      margin=margin, order_letters=tuple(letters))


def test_spread_letters_and_clear_margins_are_not_weak():
    preds = [pred(0.5 + i / 10, [i % 3, (i + 1) % 3, (i + 2) % 3], example_id=i) for i in range(9)]
    figures = signal(preds)
    assert figures["collapse_by_order"] == pytest.approx([1 / 3] * 3)
    assert figures["median_margin"] == pytest.approx(0.9) and figures["flip_share"] == 0.0
    assert not figures["weak"] and figures["reasons"] == [] and warning_line("candidate", figures) is None


def test_one_letter_in_every_order_with_clear_margins_is_a_warning_not_weak():
    preds = [pred(1.0, [0, 0, 0], example_id=i) for i in range(10)]
    figures = signal(preds)
    assert figures["collapse_by_order"] == [1.0, 1.0, 1.0] and figures["letters_by_order"] == ["A", "A", "A"]
    assert not figures["weak"] and len(figures["warnings"]) == 1
    assert warning_line("candidate", figures).startswith("bbq: warning: the candidate: one letter answers")


def test_one_letter_in_every_order_with_small_margins_is_weak():
    preds = [pred(0.1, [0, 0, 0], example_id=i) for i in range(10)]     # 0.1 nats < 3 orders x tau
    figures = signal(preds)
    assert figures["weak"] and len(figures["reasons"]) == 1 and "3 x tau" in figures["reasons"][0]
    assert warning_line("candidate", figures).startswith("bbq: WARNING: weak signal from the candidate")


def test_collapse_in_only_some_orders_is_not_a_collapse():
    preds = [pred(1.0, [0, 0, i % 3], example_id=i) for i in range(9)]
    assert not signal(preds)["weak"]


def test_tiny_margins_are_weak_and_counted_as_flips():
    margins = [TAU / 10, TAU / 2, TAU / 5, 2 * TAU, 3 * TAU]  # median TAU / 2
    preds = [pred(m, [i % 3, (i + 1) % 3, (i + 2) % 3], example_id=i) for i, m in enumerate(margins)]
    figures = signal(preds)
    assert figures["median_margin"] == pytest.approx(TAU / 2) and figures["flip_share"] == pytest.approx(0.6)
    assert figures["weak"] and "median margin" in figures["reasons"][0]


def test_no_answer_predictions_still_count():
    """A tie leaves pred None (the lead's tie rule); the figures use margins and letters, never pred."""
    preds = [pred(0.0, [1, 1, 1], pred=None, example_id=i) for i in range(4)]
    figures = signal(preds)
    assert figures["weak"] and figures["median_margin"] == 0.0 and figures["letters_by_order"] == ["B"] * 3


def test_loglik_predictions_have_no_letters():
    preds = [Prediction("Age", i, "ambig", "neg", 2, 2, 0, 1, scores=(0.0, 1.0, 0.0), margin=1.0) for i in range(3)]
    figures = signal(preds)
    assert figures["collapse_by_order"] == [] and not figures["weak"]
