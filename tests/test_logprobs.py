"""edgeval.logprobs: the one log-softmax, token log-probs and the option sums shared by BBQ, parity and perplexity."""
from __future__ import annotations

import numpy as np

from edgeval.logprobs import cyclic_orders, log_softmax, option_scores, token_logprobs


def test_log_softmax_is_normalised_and_stable_for_huge_logits():
    x = np.array([[1e4, 1e4 + 1.0, 1e4 - 2.0], [0.0, 0.0, 0.0]], np.float32)
    out = log_softmax(x)
    assert out.dtype == np.float64 and np.allclose(np.exp(out).sum(axis=-1), 1.0)
    assert np.allclose(out[1], np.log(1 / 3)) and np.isfinite(out).all()


def test_token_logprobs_pick_each_rows_target():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    assert np.allclose(token_logprobs(logits, [0, 2]), np.log([0.5, 0.8]))


def test_option_scores_sum_each_options_letter_over_the_orders():
    orders = cyclic_orders(3)                       # (0,1,2), (1,2,0), (2,0,1): option shown at letter k
    rows = np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0], [-7.0, -8.0, -9.0]])   # one item, three orders
    # option 0 is at letter A, C, B in the three orders; option 1 at B, A, C; option 2 at C, B, A
    expected = [-1 - 6 - 8, -2 - 4 - 9, -3 - 5 - 7]
    assert option_scores(rows, orders).tolist() == [expected]
    assert option_scores(np.vstack([rows, rows]), orders).shape == (2, 3)
