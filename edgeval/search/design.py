"""The sequential design of one monotone axis: bisection for the highest passing grid point.

The design assumes that passing is monotone in sparsity (a model that fails at 40 % also fails at 50 %), and that
the uncompressed model (index -1) passes. Outcomes per grid index are ``pass``, ``fail`` (the gate blocked *or*
was inconclusive: not a pass) or ``error`` (the candidate could not be built or checked).

- The **bracket** is (lo, hi): lo the highest passing index (-1 if none), hi the lowest failing index above lo
  (the grid's length if none). The answer lies in [lo, hi).
- The next point is the untried index inside (lo, hi) closest to their midpoint (the lower one on a tie). With no
  errors this is plain bisection: ``ceil(log2(n + 1))`` evaluations for n grid points.
- An ``error`` is *unknown*, neither pass nor fail: it does not move the bracket; the design tries the next
  untried index closest to the midpoint instead. When every index left in the bracket errored, the search stops
  and the answer is lo, flagged ``unresolved`` (an errored point above lo might have passed).
- ``grid`` (the exhaustive design, for comparison): every index, in order.
- A **hint** (bisection only; from the perplexity screen, :mod:`edgeval.search.screen`) is the lowest index
  forecast to fail. While it lies inside the bracket, the design gates the index just below it first (the highest
  forecast to pass), then, once that passed, the hint itself; with a right forecast the answer takes two
  evaluations. The bracket, and so the answer, is made of gated outcomes alone, and plain bisection continues
  inside it: with monotone outcomes a wrong forecast changes only the order; with noisy ones the order can change
  which lucky pass is met (see :mod:`edgeval.search.oc`).

:func:`next_index` is a pure function of the outcomes so far, so a resumed search replays exactly the decisions
of the interrupted one (see :func:`replay`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

PASS, FAIL, ERROR = "pass", "fail", "error"
STRATEGIES = ("bisect", "grid")


def bracket(n: int, outcomes: Mapping[int, str]) -> tuple[int, int]:
    """(lo, hi): the highest passing index (-1: none) and the lowest failing index above it (``n``: none)."""
    lo = max((i for i, o in outcomes.items() if o == PASS), default=-1)
    hi = min((i for i, o in outcomes.items() if o == FAIL and i > lo), default=n)
    return lo, hi


def next_index(n: int, outcomes: Mapping[int, str], strategy: str = "bisect", hint: int | None = None) -> int | None:
    """The next grid index to evaluate, or None when the design is done (``hint``: see the module docstring)."""
    if strategy == "grid":
        return next((i for i in range(n) if i not in outcomes), None)
    lo, hi = bracket(n, outcomes)
    untried = [i for i in range(lo + 1, hi) if i not in outcomes]
    if not untried:
        return None
    if hint is not None and lo < hint < hi:
        first = hint - 1 if hint - 1 > lo else hint
        if first not in outcomes:
            return first
    middle = (lo + hi) / 2
    return min(untried, key=lambda i: (abs(i - middle), i))


@dataclass(frozen=True)
class Answer:
    """What the design concluded: the highest passing index (-1: none passed), the final bracket, and whether
    errored points inside the bracket leave the answer a lower bound."""

    highest_pass: int
    bracket: tuple[int, int]
    unresolved: bool


def answer(n: int, outcomes: Mapping[int, str]) -> Answer:
    lo, hi = bracket(n, outcomes)
    errors_inside = any(outcomes.get(i) == ERROR for i in range(lo + 1, hi))
    return Answer(lo, (lo, hi), errors_inside)


def replay(n: int, lookup: Callable[[int], str | None], strategy: str = "bisect",
           hint: int | None = None) -> list[tuple[int, str | None]]:
    """The decisions in order: ``[(index, outcome)]``; stops at the first index whose outcome ``lookup`` does not
    know yet (returned with outcome None: the point to evaluate next)."""
    outcomes: dict[int, str] = {}
    steps: list[tuple[int, str | None]] = []
    while (index := next_index(n, outcomes, strategy, hint)) is not None:
        outcome = lookup(index)
        steps.append((index, outcome))
        if outcome is None:
            break
        outcomes[index] = outcome
    return steps


__all__ = ["PASS", "FAIL", "ERROR", "STRATEGIES", "bracket", "next_index", "answer", "Answer", "replay"]
