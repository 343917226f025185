"""Perplexity: sliding windows score every token once; the NLL equals a hand computation; bad text is bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from runtime_doubles import FromSequenceLogits

from edgeval.errors import DataError, MeasurementError
from edgeval.runtimes.tokenizer import Tokenizer
from edgeval.validators.perplexity import load_text, perplexity, windows

V = 7


class Tok(Tokenizer):
    source = "digits"

    def encode(self, text, add_special_tokens=True):
        return [int(c) % V for c in text if c.isdigit()]


class BigramRuntime(FromSequenceLogits):
    """Logits at position p depend only on token p (a fixed random bigram table), so any context gives the same."""

    name, max_seq_len = "fake", None

    def __init__(self, table, cap=None):
        self.tokenizer, self.table, self.max_seq_len, self.calls = Tok(), table, cap, []
        self.artifact = type("A", (), {"path": "fake"})()

    def sequence_logits(self, seqs):
        self.calls.append([len(s) for s in seqs])
        return [self.table[np.asarray(s)] for s in seqs]


def test_windows_score_each_token_once():
    for n, window, stride in [(10, 4, 2), (10, 4, 3), (9, 16, 8), (2, 4, 1), (100, 32, 7)]:
        scored = []
        for begin, end, first in windows(n, window, stride):
            assert end - begin <= window and begin < first <= end
            scored.extend(range(first, end))
        assert scored == list(range(1, n))


def test_too_short_text_and_bad_stride():
    with pytest.raises(DataError, match="at least 2"):
        windows(1, 4, 2)
    with pytest.raises(ValueError, match="stride < window"):
        windows(10, 4, 4)


def test_perplexity_equals_hand_computation():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((V, V))
    text = "3141592653589793238462643383279502884197"
    ids = [int(c) % V for c in text]
    runtime = BigramRuntime(table)
    out = perplexity(runtime, text, window=8, stride=3, max_tokens=None)
    logp = table - np.log(np.exp(table).sum(axis=1, keepdims=True))
    nll = [-logp[ids[i - 1], ids[i]] for i in range(1, len(ids))]
    assert out["tokens_scored"] == len(ids) - 1
    assert math.isclose(out["perplexity"], math.exp(np.mean(nll)), rel_tol=1e-9)


def test_window_is_capped_by_the_runtime():
    runtime = BigramRuntime(np.zeros((V, V)), cap=5)
    out = perplexity(runtime, "1234567890" * 3, window=64, stride=32, max_tokens=None)
    assert out["window"] == 5 and out["stride"] == 4 and max(max(c) for c in runtime.calls) <= 5
    assert math.isclose(out["perplexity"], V)  # uniform logits


def test_non_finite_perplexity_is_a_measurement_error():
    table = np.zeros((V, V))
    table[:, 3] = np.inf
    with pytest.raises(MeasurementError):
        perplexity(BigramRuntime(table), "1234512345", window=4, stride=2, max_tokens=None)


def test_text_sources(tmp_path):
    text, source = load_text(None)
    assert source == "builtin" and len(text.split()) > 500
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        load_text(str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match="cannot read"):
        load_text(str(tmp_path / "missing.txt"))


class BosTok(Tok):
    """Digits, with token 0 put before every text (a BOS)."""

    def encode(self, text, add_special_tokens=True):
        return ([0] if add_special_tokens else []) + super().encode(text)


def test_every_window_starts_with_the_bos_and_each_token_is_scored_once():
    rng = np.random.default_rng(1)
    table = rng.standard_normal((V, V))
    runtime = BigramRuntime(table)
    runtime.tokenizer = BosTok()
    fed = []
    runtime.sequence_logits = lambda seqs: fed.extend(seqs) or [table[np.asarray(s)] for s in seqs]
    text = "3141592653589793238462643383279502884197"
    out = perplexity(runtime, text, window=8, stride=3, max_tokens=None)
    ids = [0] + [int(c) % V for c in text]
    assert all(seq[0] == 0 and len(seq) <= 8 for seq in fed) and len(fed) > 3
    logp = table - np.log(np.exp(table).sum(axis=1, keepdims=True))
    nll = [-logp[ids[i - 1], ids[i]] for i in range(1, len(ids))]  # bigram: context beyond one token is moot
    assert out["tokens_scored"] == len(ids) - 1 and out["special_prefix"] == [0]
    assert math.isclose(out["perplexity"], math.exp(np.mean(nll)), rel_tol=1e-9)
