"""The one did-you-mean helper: closest known name, case-insensitive, one message shape."""
from __future__ import annotations

import pytest

from edgeval.suggest import closest, suggestion


@pytest.mark.parametrize("word, known, expected", [
    ("sise", ["size", "latency"], "size"),
    ("relgion", ["Religion", "Age"], "Religion"),     # case-folded, original spelling returned
    ("AGE", ["Religion", "Age"], "Age"),
    ("zzz", ["size", "latency"], None),
])
def test_closest(word, known, expected):
    assert closest(word, known) == expected


def test_suggestion_shapes():
    assert suggestion("sise", ["size", "latency"]) == " (did you mean 'size'?)"
    assert suggestion("zzz", ["size", "latency"]) == " (known: size, latency)"
    assert suggestion("sise", ["size", "latency"], list_known=True) == " (did you mean 'size'? known: size, latency)"
