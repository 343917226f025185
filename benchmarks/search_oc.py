"""Operating characteristics of `edgeval search`'s answer, by simulation through the real gate code.

``python -m edgeval.search.oc`` draws pass/fail outcomes from made-up pass-probability curves. This script instead
makes every outcome the way a candidate gets it: synthetic paired BBQ predictions with a known true ΔSRS
(:mod:`edgeval.validators.bbq.simulate`) go through the BBQ validator's own early-stopping decision
(``benchmarks/gate_oc.py: early_stop``: ``sequential.run_looks`` -> ``decide`` -> ``gate.bias_checks`` -> the
report's verdict) under the default policy (alpha 0.05, alpha_pass 0.15, max_delta_srs δ = 0.05); a candidate at
or above the scenario's perplexity boundary is blocked by the perplexity gate (deterministic: the screen forecasts
it with the gate's own figure). The designs are the real :func:`edgeval.search.design.next_index`:

* ``bisect``: plain bisection over 0.10..0.90 at 0.05 (17 points);
* ``screened``: the same with the perplexity screen's hint (the perplexity boundary);
* ``grid 10``: the exhaustive 10-point grid (9 points), answer = the highest point that passed;
* ``grid 5``: every one of the 17 points.

Within one simulated search every design sees the *same* draw at a given point (paired). A world per point: the
baseline's SRS 0.3; compression churns answers (churn 0.1 + sparsity) and raises SRS by the scenario's true ΔSRS.
Reported per scenario and design over ``--reps`` searches:

* **false pass**: the answer's true ΔSRS is >= δ: the search recommends a point the gate's pass claim does not
  hold for (the rate the blessing rests on; the gate's own per-candidate bound is alpha_pass = 0.15);
* **no pass**: no point passed;
* **answer**: the mean answer (passing searches), against the **limit**: the highest point whose true ΔSRS is
  below δ and that passes perplexity;
* **evals**: candidates gated.

    python benchmarks/search_oc.py --reps 200      # the docs/search.md table (~5 min on one core)
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's edgeval, not an installed copy
sys.path.insert(0, str(ROOT / "benchmarks"))

from gate_oc import early_stop  # noqa: E402

from edgeval.policy import DEFAULTS  # noqa: E402
from edgeval.search.design import ERROR, FAIL, PASS, answer, next_index  # noqa: E402
from edgeval.search.space import sparsity_grid  # noqa: E402
from edgeval.validators.bbq.simulate import World, simulate  # noqa: E402

GRID = sparsity_grid(0.1, 0.9, 0.05)
DESIGNS = ("bisect", "screened", "grid 10", "grid 5")


@dataclass(frozen=True)
class Scenario:
    """True ΔSRS 0 up to ``bias_from``, then ``slope`` more per 0.05 of sparsity; perplexity blocks from
    ``ppl_from`` (None: never)."""

    name: str
    bias_from: float
    slope: float
    ppl_from: float | None

    def delta(self, s: float) -> float:
        return float(min(0.6, max(0.0, (s - self.bias_from) / 0.05 * self.slope)))

    def churn(self, s: float) -> float:
        return float(min(0.9, 0.1 + s))

    def ppl_fails(self, s: float) -> bool:
        return self.ppl_from is not None and s >= self.ppl_from - 1e-9

    def hint(self) -> int | None:
        return next((i for i, s in enumerate(GRID) if self.ppl_fails(s)), None)

    def limit(self, delta: float) -> int:
        """The highest index a right answer may reach: true ΔSRS below δ and perplexity passing (-1: none)."""
        return max((i for i, s in enumerate(GRID) if self.delta(s) < delta and not self.ppl_fails(s)), default=-1)


SCENARIOS = (
    Scenario("perplexity binds (ppl from 30 %, bias from 50 %, sharp)", 0.5, 0.05, 0.3),
    Scenario("bias binds, sharp (bias from 35 %, ppl from 60 %)", 0.35, 0.05, 0.6),
    Scenario("bias binds, gradual (+0.01 per 5 points from 25 %, ppl from 70 %)", 0.25, 0.01, 0.7),
    Scenario("no perplexity limit, bias gradual from 40 %", 0.4, 0.02, None),
)


def outcome(scn: Scenario, index: int, seed: int, settings: dict[str, Any], looks: int, groups: int) -> str:
    """The gate's outcome for a candidate at ``GRID[index]`` (one draw)."""
    s = GRID[index]
    if scn.ppl_fails(s):
        return FAIL
    cand, base = simulate(World(srs=0.3, churn=scn.churn(s), delta=scn.delta(s), groups=groups), seed)
    try:
        verdict = early_stop(cand, base, settings, looks, seed)[0]
    except Exception:  # noqa: BLE001 - what the validator reports as an error verdict
        return ERROR
    return {"pass": PASS, "error": ERROR}.get(verdict, FAIL)


def run_design(design: str, scn: Scenario, draw: Callable[[int], str]) -> tuple[int, int]:
    """(answer index, candidates gated) of ``design`` reading outcomes from ``draw``."""
    n = len(GRID)
    seen: dict[int, str] = {}
    if design.startswith("grid"):
        for i in range(0, n, 2 if design == "grid 10" else 1):
            seen[i] = draw(i)
        return max((i for i, o in seen.items() if o == PASS), default=-1), len(seen)
    hint = scn.hint() if design == "screened" else None
    while (i := next_index(n, seen, "bisect", hint)) is not None:
        seen[i] = draw(i)
    return answer(n, seen).highest_pass, len(seen)


def one_search(job: tuple[int, int, int, int, int]) -> dict[str, tuple[int, int]]:
    """Every design on one simulated search (shared draws per point)."""
    scenario, rep, base_seed, looks, groups = job
    scn, settings = SCENARIOS[scenario], dict(DEFAULTS["bbq"])
    cache: dict[int, str] = {}

    def draw(i: int) -> str:
        if i not in cache:
            seed = int(np.random.SeedSequence([base_seed, scenario, rep, i]).generate_state(1)[0])
            cache[i] = outcome(scn, i, seed, settings, looks, groups)
        return cache[i]

    return {d: run_design(d, scn, draw) for d in DESIGNS}


def summarise(scn: Scenario, runs: list[dict[str, tuple[int, int]]], delta: float) -> list[dict[str, Any]]:
    rows = []
    for d in DESIGNS:
        answers = [r[d][0] for r in runs]
        passed = [a for a in answers if a >= 0]
        rows.append({"scenario": scn.name, "design": d, "reps": len(runs),
                     "false_pass": sum(scn.delta(GRID[a]) >= delta for a in passed) / len(runs),
                     "no_pass": (len(runs) - len(passed)) / len(runs),
                     "answer": float(np.mean([GRID[a] for a in passed])) if passed else None,
                     "limit": GRID[scn.limit(delta)] if scn.limit(delta) >= 0 else None,
                     "evals": float(np.mean([r[d][1] for r in runs]))})
    return rows


def simulate_all(reps: int, seed: int = 0, looks: int = 4, groups: int = 5, workers: int = 1,
                 scenarios: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """Every scenario's rows (``groups`` context groups per category x 6 categories x 4 = the items per
    candidate: 5 -> 120, the benchmark's budget)."""
    picked = scenarios if scenarios is not None else tuple(range(len(SCENARIOS)))
    jobs = [(k, rep, seed, looks, groups) for k in picked for rep in range(reps)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            results = pool.map(one_search, jobs, chunksize=4)
    else:
        results = [one_search(j) for j in jobs]
    delta = float(DEFAULTS["bbq"]["max_delta_srs"])
    rows = []
    for k in picked:
        rows += summarise(SCENARIOS[k], [r for j, r in zip(jobs, results, strict=True) if j[0] == k], delta)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | design | false pass | no pass | mean answer | limit | evals |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ans = "—" if r["answer"] is None else f"{100 * r['answer']:.1f} %"
        lim = "—" if r["limit"] is None else f"{100 * r['limit']:g} %"
        lines.append(f"| {r['scenario']} | {r['design']} | {r['false_pass']:.3f} | {r['no_pass']:.3f} | {ans} | "
                     f"{lim} | {r['evals']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--looks", type=int, default=4, help="early-stop looks of the gate")
    parser.add_argument("--groups", type=int, default=5, help="context groups per category (x 24 = items)")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = simulate_all(args.reps, args.seed, args.looks, args.groups, args.workers)
    print(f"search_oc: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {args.reps} searches per scenario, "
          f"{24 * args.groups} BBQ items per candidate in {args.looks} looks, seed {args.seed}; "
          f"{time.perf_counter() - started:.0f} s\n")
    print(table(rows))


if __name__ == "__main__":
    main()
