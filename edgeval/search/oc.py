"""Operating characteristics of the search's decision, by simulation (``python -m edgeval.search.oc``).

Bisection assumes passing is monotone in sparsity. Each simulated search draws one gate outcome per grid point
from a pass-probability curve (``p[i]``: the chance that the gate passes the candidate at grid index i; an error
with probability ``error_rate``), then runs the real :func:`~edgeval.search.design.next_index` on those draws
and compares with the exhaustive grid on the *same* draws (the grid's answer: the highest index that passed).
Reported per curve:

- ``agree``: bisection's highest passing index equals the grid's;
- ``rec_fails``: bisection's answer is a point whose pass probability is below 1/2 (a point a repeated gate
  would more often block: the grid "says it fails");
- ``grid_rec_fails``: the same for the grid's answer (the reference: exhaustive search is not immune either);
- ``evals``: mean candidates evaluated by bisection (the grid evaluates every point).

The screened design (:mod:`edgeval.search.screen`) is simulated with a *hint* placed relative to the curve's
boundary (the first index whose pass probability is below 1/2): ``exact`` there (an oracle: the real screen
forecasts perplexity only), ``+3`` three points above (another gate, e.g. bias, binds before perplexity: the
forecast is too optimistic), ``-3`` three points below (too pessimistic), ``worst``: of every placement on the grid,
the one with the highest ``rec_fails`` (an adversary editing the cache, or the unluckiest forecast). The hint
reorders the design; with monotone outcomes that never moves the answer, with noisy ones it can (bisection's
answer depends on the order it meets the draws in), and the rows show by how much.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .design import ERROR, FAIL, PASS, answer, next_index


def logistic(n: int, threshold: float, width: float) -> list[float]:
    """Monotone: passes below ``threshold`` (a fraction of the axis), fails above, ``width`` wide."""
    return [1 / (1 + math.exp((i / max(1, n - 1) - threshold) / width)) for i in range(n)]


def bumpy(n: int, threshold: float, width: float, bump: float, seed: int = 1) -> list[float]:
    """Slightly non-monotone: the logistic curve with a fixed random wobble of ± ``bump``."""
    wobble = np.random.default_rng(seed).uniform(-bump, bump, n)
    return [float(min(1.0, max(0.0, p + w))) for p, w in zip(logistic(n, threshold, width), wobble, strict=True)]


def draw(p: Sequence[float], rng: np.random.Generator, error_rate: float) -> list[str]:
    u, e = rng.random(len(p)), rng.random(len(p))
    return [ERROR if e[i] < error_rate else PASS if u[i] < p[i] else FAIL for i in range(len(p))]


def bisect_on(outcomes: Sequence[str], hint: int | None = None) -> tuple[int, int]:
    """(highest passing index, evaluations) of bisection reading ``outcomes`` (``hint``: the screen's forecast)."""
    seen: dict[int, str] = {}
    while (i := next_index(len(outcomes), seen, "bisect", hint)) is not None:
        seen[i] = outcomes[i]
    return answer(len(outcomes), seen).highest_pass, len(seen)


def boundary(p: Sequence[float]) -> int:
    """The first index whose pass probability is below 1/2 (``len(p)``: none)."""
    return next((i for i, q in enumerate(p) if q < 0.5), len(p))


def place_hint(p: Sequence[float], offset: int | None) -> int | None:
    """A forecast ``offset`` points from the curve's boundary, kept on the grid (None: no screen)."""
    if offset is None:
        return None
    return min(len(p) - 1, max(0, boundary(p) + offset))


def simulate(p: Sequence[float], trials: int, seed: int = 0, error_rate: float = 0.0,  # noqa: PLR0913
             hint: int | None = None) -> dict[str, Any]:
    """The operating characteristics of bisection on curve ``p`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    agree = rec_fails = grid_fails = evals = 0
    for _ in range(trials):
        outcomes = draw(p, rng, error_rate)
        best, n = bisect_on(outcomes, hint)
        grid = max((i for i, o in enumerate(outcomes) if o == PASS), default=-1)
        agree += best == grid
        rec_fails += best >= 0 and p[best] < 0.5
        grid_fails += grid >= 0 and p[grid] < 0.5
        evals += n
    return {"agree": agree / trials, "rec_fails": rec_fails / trials, "grid_rec_fails": grid_fails / trials,
            "evals": evals / trials, "grid_evals": len(p)}


def scenarios(n: int = 17) -> dict[str, list[float]]:
    """The curves of the published table (``n`` grid points: 0.1..0.9 at 0.05)."""
    return {"monotone, deterministic": [1.0] * (n // 2) + [0.0] * (n - n // 2),
            "monotone, sharp": logistic(n, 0.5, 0.02), "monotone, soft": logistic(n, 0.5, 0.08),
            "monotone, soft, errors 10 %": logistic(n, 0.5, 0.08),
            "wobble ±0.1": bumpy(n, 0.5, 0.05, 0.1), "wobble ±0.25": bumpy(n, 0.5, 0.05, 0.25)}


HINTS: dict[str, int | None] = {"none": None, "exact": 0, "+3": 3, "-3": -3}


def table(trials: int = 2000, seed: int = 0, n: int = 17,
          hints: Sequence[str] = ("none",)) -> list[dict[str, Any]]:
    rows = []
    for name, p in scenarios(n).items():
        errors = 0.1 if "errors" in name else 0.0
        for label in hints:
            if label == "worst":
                worst = max((simulate(p, trials, seed, errors, h) | {"at": h} for h in range(n)),
                            key=lambda r: r["rec_fails"])
                rows.append({"curve": name, "hint": f"worst (at {worst.pop('at')})", **worst})
                continue
            rows.append({"curve": name, "hint": label,
                         **simulate(p, trials, seed, errors, place_hint(p, HINTS[label]))})
    return rows


def main() -> None:
    print("| curve (17 points) | screen hint | same answer as grid | bisect rec. p<1/2 | grid rec. p<1/2 | "
          "bisect evals | grid evals |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in table(hints=(*HINTS, "worst")):
        print(f"| {r['curve']} | {r['hint']} | {r['agree']:.3f} | {r['rec_fails']:.3f} | {r['grid_rec_fails']:.3f} | "
              f"{r['evals']:.2f} | {r['grid_evals']} |")


if __name__ == "__main__":
    main()
