"""Operating characteristics of the BBQ gate, by simulation through the real gate code.

Every simulated run goes through what ``edgeval check`` runs: synthetic paired predictions with a known truth
(:mod:`edgeval.validators.bbq.simulate`) -> ``compare()`` -> ``decide()`` (the default policy's plan) ->
``gate.bias_checks()`` -> ``Report.verdict`` (pass / blocked / inconclusive / error). The same predictions are
also gated with early stop (``sequential.run_looks`` with 4 looks, the checks built from the decision at the
stopping look, the comparison on the items scored so far), as the validator does.

Grids (sizes are options; the defaults take about 10 minutes on one core of a 2-core Xeon VM):
  * false block (true ΔSRS 0): churn x baseline SRS x n items, groups independent (rho 0) or correlated (rho 0.8);
    the same runs give the usability figures (pass and inconclusive rates) and the early-stop item share;
  * template churn: false block when whole BBQ templates' answers are redrawn (the gate's clusters), up to
    2,400 items;
  * power: block rate vs true ΔSRS at churn 0.3, baseline SRS 0.3;
  * a stress cell with more runs: the hardest false-block case of the grid at n >= 300.
Then the issue-11 targets are checked (PASS / FAIL, with 95 % Clopper-Pearson bounds for the Monte Carlo error).

    python benchmarks/gate_oc.py --out gate_oc.json --plot docs/gate_oc.png
    python benchmarks/gate_oc.py --reps 80 --power-reps 200 --stress-reps 500 --workers 2 --out big.json
    python benchmarks/gate_oc.py --from-json big.json                                 # re-print a saved run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import zlib
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from edgeval.environment import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's edgeval, not an installed copy

import numpy as np  # noqa: E402

from edgeval.policy import DEFAULTS  # noqa: E402
from edgeval.report import Report  # noqa: E402
from edgeval.stats import clopper_pearson  # noqa: E402
from edgeval.validators.bbq import gate, sequential  # noqa: E402
from edgeval.validators.bbq.compare import compare  # noqa: E402
from edgeval.validators.bbq.decision import Decision, Plan, decide  # noqa: E402
from edgeval.validators.bbq.metrics import metrics_by_category  # noqa: E402
from edgeval.validators.bbq.simulate import World, simulate  # noqa: E402

VERDICTS = ("pass", "blocked", "inconclusive", "error")
OUTCOME_VERDICT = {"block": "blocked", "pass": "pass", "inconclusive": "inconclusive"}
CATEGORIES = 6


# -- one run -----------------------------------------------------------------------------------------------
def gate_verdict(cand, base, settings: dict[str, Any], decision: Decision, seed: int) -> str:
    """The report verdict the validator would give for these predictions and this decision."""
    comparison = compare(cand, base, alpha=settings["alpha"], bootstrap=0, seed=seed)
    metrics = metrics_by_category(cand)
    checks = gate.bias_checks(comparison, metrics, settings, evaluated_categories=sorted(comparison["categories"]),
                              decision=decision)
    return Report(candidate={}, baseline=None, policy={}, checks=tuple(checks)).verdict


def early_stop(cand, base, settings: dict[str, Any], looks: int, seed: int) -> tuple[str, str, float, int]:
    """(verdict, decision outcome, share of items scored, looks taken) of an early-stopping run."""
    groups: dict[tuple[str, int], list] = {}
    for p in cand:
        groups.setdefault((p.category, p.example_id // 4), []).append(p)
    by_key = {p.key: p for p in base}
    items, c, b, record, decision = sequential.run_looks(
        list(groups.values()), list, lambda chunk: [by_key[p.key] for p in chunk], settings, looks, seed,
        progress=lambda _msg: None)
    return gate_verdict(c, b, settings, decision, seed), decision.outcome, len(items) / len(cand), \
        len(record["looks"])


def run_once(world: World, seed: int, settings: dict[str, Any], looks: int) -> dict[str, Any]:
    """Both arms on one simulated run. An exception in the gate code is what the validator turns into an
    'error' verdict (validators/base.py), so it is counted as one, with its type."""
    cand, base = simulate(world, seed)
    out: dict[str, Any] = {"share": 1.0, "looks": looks, "exceptions": []}
    try:
        decision = decide(cand, base, Plan.from_policy(settings))
        out["fixed"] = gate_verdict(cand, base, settings, decision, seed)
        out["fixed_consistent"] = out["fixed"] == OUTCOME_VERDICT[decision.outcome]
    except Exception as exc:  # noqa: BLE001 - counted, as the validator would report it
        out.update(fixed="error", fixed_consistent=True)
        out["exceptions"].append(f"fixed: {type(exc).__name__}: {exc}")
    try:
        verdict, outcome, out["share"], out["looks"] = early_stop(cand, base, settings, looks, seed)
        out.update(early=verdict, early_consistent=verdict == OUTCOME_VERDICT[outcome])
    except Exception as exc:  # noqa: BLE001
        out.update(early="error", early_consistent=True)
        out["exceptions"].append(f"early: {type(exc).__name__}: {exc}")
    return out


# -- cells -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    grid: str          # "false_block" | "power" | "stress"
    world: World
    reps: int
    start: int = 0     # a slice of a cell: reps start .. start + reps - 1

    @property
    def n_items(self) -> int:
        return 4 * self.world.groups * self.world.categories

    def seed(self, base_seed: int, rep: int) -> int:
        """A run's seed depends on the world and the rep only (not on the grid's order or the worker count)."""
        key = zlib.crc32(repr(asdict(self.world)).encode())
        return int(np.random.SeedSequence([base_seed, key, self.start + rep]).generate_state(1)[0])


def _cell_job(job: tuple[Cell, int, dict[str, Any], int]) -> dict[str, Any]:
    cell, base_seed, settings, looks = job
    fixed = dict.fromkeys(VERDICTS, 0)
    early = dict.fromkeys(VERDICTS, 0)
    share, taken, inconsistent, exceptions = [], [], 0, {}
    for rep in range(cell.reps):
        r = run_once(cell.world, cell.seed(base_seed, rep), settings, looks)
        fixed[r["fixed"]] += 1
        early[r["early"]] += 1
        share.append(r["share"])
        taken.append(r["looks"])
        inconsistent += (not r["fixed_consistent"]) + (not r["early_consistent"])
        for e in r["exceptions"]:
            exceptions[e] = exceptions.get(e, 0) + 1
    return {"grid": cell.grid, **asdict(cell.world), "n_items": cell.n_items, "n_ambig": cell.n_items // 2,
            "reps": cell.reps, "fixed": fixed, "early": early, "early_share_mean": float(np.mean(share)),
            "early_looks_mean": float(np.mean(taken)), "verdict_decision_mismatches": inconsistent,
            "exceptions": exceptions}


def build_cells(args: argparse.Namespace) -> list[Cell]:
    cells = [Cell("false_block", World(srs=s, churn=c, delta=0.0, rho=rho, groups=g, categories=CATEGORIES),
                  args.reps)
             for rho in args.rhos for g in args.groups for c in args.churns for s in args.srs]
    cells += [Cell("template", World(srs=s, churn=0.1, delta=0.0, rho=0.0, groups=g, categories=CATEGORIES,
                                     template_churn=tc), args.reps)
              for g in args.template_groups for tc in args.template_churns for s in args.template_srs]
    cells += [Cell("power", World(srs=0.3, churn=0.3, delta=d, rho=0.0, groups=g, categories=CATEGORIES),
                   args.power_reps) for g in args.power_groups for d in args.deltas]
    if args.stress_reps:
        cells += [Cell("stress", World(srs=0.5, churn=1.0, delta=0.0, rho=0.8, groups=g, categories=CATEGORIES),
                       args.stress_reps) for g in args.stress_groups]
    return cells


def run_cells(cells: Sequence[Cell], args: argparse.Namespace, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every cell, in slices of <= 50 runs (two workers stay balanced), merged back into one row per cell."""
    jobs, owner = [], []
    for i, cell in enumerate(cells):
        for start in range(0, cell.reps, 50):
            jobs.append((replace(cell, reps=min(50, cell.reps - start), start=start), args.seed, settings, args.looks))
            owner.append(i)
    parts, start = [], time.perf_counter()

    def note(done: int) -> None:
        if done % 10 == 0 or done == len(jobs):
            print(f"gate_oc: {done}/{len(jobs)} slices, {time.perf_counter() - start:.0f} s", file=sys.stderr,
                  flush=True)

    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.workers) as pool:
            for part in pool.imap(_cell_job, jobs, chunksize=1):
                parts.append(part)
                note(len(parts))
    else:
        for job in jobs:
            parts.append(_cell_job(job))
            note(len(parts))
    merged: dict[int, dict[str, Any]] = {}
    for i, part in zip(owner, parts, strict=True):
        merged[i] = part if i not in merged else _merge(merged[i], part)
    return [merged[i] for i in range(len(cells))]


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    w_a, w_b = a["reps"], b["reps"]
    out["reps"] = w_a + w_b
    out["fixed"] = {k: a["fixed"][k] + b["fixed"][k] for k in VERDICTS}
    out["early"] = {k: a["early"][k] + b["early"][k] for k in VERDICTS}
    for key in ("early_share_mean", "early_looks_mean"):
        out[key] = (a[key] * w_a + b[key] * w_b) / (w_a + w_b)
    out["verdict_decision_mismatches"] = a["verdict_decision_mismatches"] + b["verdict_decision_mismatches"]
    out["exceptions"] = {k: a["exceptions"].get(k, 0) + b["exceptions"].get(k, 0)
                         for k in {**a["exceptions"], **b["exceptions"]}}
    return out


# -- summaries ---------------------------------------------------------------------------------------------
def rate(row: dict[str, Any], arm: str, verdict: str) -> float:
    return row[arm][verdict] / row["reps"]


def bounds(k: int, n: int) -> tuple[float, float]:
    """Two-sided 95 % Clopper-Pearson interval (each bound one-sided 97.5 %)."""
    return clopper_pearson(k, n, 0.025)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def false_block_tables(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    out = []
    fb = [r for r in rows if r["grid"] == "false_block"]
    for rho in args.rhos:
        for arm, name in (("fixed", "fixed sample"), ("early", f"early stop, {args.looks} looks")):
            head = ["n items", "baseline SRS"] + [f"churn {c:g}" for c in args.churns]
            body = []
            for g in args.groups:
                for s in args.srs:
                    cells = {r["churn"]: r for r in fb if r["rho"] == rho and r["groups"] == g and r["srs"] == s}
                    body.append([4 * g * CATEGORIES, f"{s:g}"] + [_pct(rate(cells[c], arm, "blocked"))
                                                                   for c in args.churns])
            out.append(f"**False-block rate, % (true ΔSRS 0; {name}; rho {rho:g}; {args.reps} runs per cell)**\n\n"
                       + table(head, body))
    return out


def usability_tables(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    fb = [r for r in rows if r["grid"] == "false_block"]
    out = []
    for arm, name in (("fixed", "fixed sample"), ("early", f"early stop, {args.looks} looks")):
        head = ["n items", "rho"] + [f"churn {c:g}" for c in args.churns]
        body = []
        for g in args.groups:
            for rho in args.rhos:
                line = [4 * g * CATEGORIES, f"{rho:g}"]
                for c in args.churns:
                    sel = [r for r in fb if r["groups"] == g and r["rho"] == rho and r["churn"] == c]
                    n = sum(r["reps"] for r in sel)
                    p = sum(r[arm]["pass"] for r in sel) / n
                    i = sum(r[arm]["inconclusive"] for r in sel) / n
                    line.append(f"{_pct(p)} / {_pct(i)}")
                body.append(line)
        out.append(f"**Usability at true ΔSRS 0: pass % / inconclusive % ({name}; pooled over baseline SRS "
                   f"{', '.join(f'{s:g}' for s in args.srs)}; {args.reps * len(args.srs)} runs per cell)**\n\n"
                   + table(head, body))
    head = ["n items"] + [f"churn {c:g}" for c in args.churns]
    body = []
    for g in args.groups:
        line = [4 * g * CATEGORIES]
        for c in args.churns:
            sel = [r for r in fb if r["groups"] == g and r["churn"] == c]
            share = sum(r["early_share_mean"] * r["reps"] for r in sel) / sum(r["reps"] for r in sel)
            line.append(f"{100 * share:.0f}")
        body.append(line)
    out.append(f"**Early stop ({args.looks} looks): mean share of items scored, % (true ΔSRS 0; pooled over SRS and "
               "rho)**\n\n" + table(head, body))
    return out


def power_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    pw = [r for r in rows if r["grid"] == "power"]
    head = ["n items (ambiguous)", "arm"] + [f"ΔSRS {d:g}" for d in args.deltas] + ["items scored at 0.10, %"]
    body = []
    for g in args.power_groups:
        cells = {r["delta"]: r for r in pw if r["groups"] == g}
        n = 4 * g * CATEGORIES
        for arm in ("fixed", "early"):
            share = cells.get(0.10, {}).get("early_share_mean") if arm == "early" else 1.0
            body.append([f"{n} ({n // 2})", arm] + [_pct(rate(cells[d], arm, "blocked")) for d in args.deltas]
                        + ["" if share is None else f"{100 * share:.0f}"])
    return (f"**Block rate (power), % (churn 0.3, baseline SRS 0.3, rho 0; {args.power_reps} runs per cell)**\n\n"
            + table(head, body))


def template_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str | None:
    tpl = [r for r in rows if r["grid"] == "template"]
    if not tpl:
        return None
    head = ["n items", "baseline SRS"] + [f"{arm} tc {tc:g}" for tc in args.template_churns
                                         for arm in ("fixed", "early")]
    body = []
    for g in args.template_groups:
        for s in args.template_srs:
            line = [4 * g * CATEGORIES, f"{s:g}"]
            for tc in args.template_churns:
                r = next(r for r in tpl if r["groups"] == g and r["srs"] == s and r["template_churn"] == tc)
                line += [_pct(rate(r, "fixed", "blocked")), _pct(rate(r, "early", "blocked"))]
            body.append(line)
    return (f"**False-block rate, % with template-level churn (true ΔSRS 0 on average; churn 0.1; tc = share of the "
            f"templates (min(groups, 25) per category) whose candidate answers are redrawn from a template-specific "
            f"rate; "
            f"{args.reps} runs per cell)**\n\n" + table(head, body))


def stress_table(rows: list[dict[str, Any]]) -> str | None:
    stress = [r for r in rows if r["grid"] == "stress"]
    if not stress:
        return None
    body = []
    for r in stress:
        for arm in ("fixed", "early"):
            k, n = r[arm]["blocked"], r["reps"]
            lo, hi = bounds(k, n)
            body.append([r["n_items"], arm, f"{k}/{n} = {_pct(k / n)} ({_pct(lo)}-{_pct(hi)})",
                         _pct(rate(r, arm, "pass")), _pct(rate(r, arm, "inconclusive")), _pct(rate(r, arm, "error"))])
    return ("**Stress cells: true ΔSRS 0, churn 1, baseline SRS 0.5, rho 0.8**\n\n"
            + table(["n items", "arm", "blocked, % (95 % CI)", "pass %", "inconclusive %", "error %"], body))


def inconclusive_by_n(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    fb = [r for r in rows if r["grid"] == "false_block"]
    out = {}
    for g in args.groups:
        sel = [r for r in fb if r["groups"] == g]
        n = sum(r["reps"] for r in sel)
        out[str(4 * g * CATEGORIES)] = {arm: sum(r[arm]["inconclusive"] for r in sel) / n for arm in ("fixed", "early")}
    return out


# -- targets -----------------------------------------------------------------------------------------------
# Monte Carlo error: a cell's rate is an estimate from `reps` runs. A "<= p" target FAILS when some cell is
# significantly above p (its two-sided 95 % Clopper-Pearson lower bound exceeds p; no multiplicity correction,
# which makes a FAIL easier, not harder); the largest cell estimate is not used as evidence, since the maximum of
# many noisy estimates sits above their common rate. A ">= p" target FAILS when some cell's estimate is below p.
# The measured column gives the worst cell with its interval, so the reader sees how tight the claim is.
def _fb_target(name: str, cells: list[dict[str, Any]], arm: str, alpha: float,
               verdict: str = "blocked") -> dict[str, Any]:
    worst = max(cells, key=lambda r: (r[arm][verdict] / r["reps"], -r["reps"]))
    k, n = worst[arm][verdict], worst["reps"]
    lo, hi = bounds(k, n)
    above = [r for r in cells if bounds(r[arm][verdict], r["reps"])[0] > alpha]
    pooled_k, pooled_n = sum(r[arm][verdict] for r in cells), sum(r["reps"] for r in cells)
    return {"target": name, "status": "FAIL" if above else "PASS",
            "measured": f"cells significantly above {alpha:g}: {len(above)} of {len(cells)}; largest cell estimate "
                        f"{k}/{n} = {_pct(k / n)} % (95 % CI {_pct(lo)}-{_pct(hi)} %) at n {worst['n_items']}, "
                        f"churn {worst['churn']:g}, SRS {worst['srs']:g}, rho {worst['rho']:g}; all cells pooled "
                        f"{pooled_k}/{pooled_n} = {_pct(pooled_k / pooled_n)} % (95 % CI up to "
                        f"{_pct(bounds(pooled_k, pooled_n)[1])} %)"}


def _min_target(name: str, cells: list[dict[str, Any]], arm: str, verdict: str, goal: float) -> dict[str, Any]:
    worst = min(cells, key=lambda r: r[arm][verdict] / r["reps"])
    k, n = worst[arm][verdict], worst["reps"]
    lo, hi = bounds(k, n)
    where = ", ".join(f"{key} {worst[key]:g}" for key in ("churn", "srs", "rho", "delta"))
    return {"target": name, "status": "PASS" if k / n >= goal else "FAIL",
            "measured": f"worst of {len(cells)} cell(s): {k}/{n} = {_pct(k / n)} % (95 % CI {_pct(lo)}-{_pct(hi)} %)"
                        f" at n {worst['n_items']}, {where}"}


def targets(rows: list[dict[str, Any]], args: argparse.Namespace, alpha: float) -> list[dict[str, Any]]:  # noqa: C901  (one flat list of target rows)
    out = []
    fb = [r for r in rows if r["grid"] in ("false_block", "stress", "template") and r["n_items"] >= 300]
    if fb:
        out.append(_fb_target("false block <= alpha at n >= 300, every cell (fixed sample)", fb,
                              "fixed", alpha))
        out.append(_fb_target("false block <= alpha at n >= 300, every cell (early stop)", fb,
                              "early", alpha))
    for arm in ("fixed", "early"):
        power = [r for r in rows if r["grid"] == "power" and r["delta"] == 0.10 and r["n_ambig"] >= 600]
        if power:
            out.append(_min_target(f"power >= 90 % at true ΔSRS 0.10, >= 600 ambiguous items ({arm})", power, arm,
                                   "blocked", 0.9))
    at_tol = [r for r in rows if r["grid"] == "power" and abs(r["delta"] - DEFAULTS["bbq"]["max_delta_srs"]) < 1e-9]
    for arm in ("fixed", "early") if at_tol else ():
        out.append(_fb_target(f"false pass <= alpha_pass at true ΔSRS = the tolerance ({arm})", at_tol, arm,
                              DEFAULTS["bbq"]["alpha_pass"], verdict="pass"))
    for rho in args.rhos:
        use = [r for r in rows if r["grid"] == "false_block" and r["n_items"] >= 1200 and r["churn"] <= 0.5
               and r["rho"] == rho]
        for arm in ("fixed", "early") if use else ():
            out.append(_min_target(f"pass >= 90 % at 1,200 items, SRS unchanged, churn <= 0.5, rho {rho:g} ({arm})",
                                   use, arm, "pass", 0.9))
    errors: dict[tuple[int, str], int] = {}
    for r in rows:
        for arm in ("fixed", "early"):
            errors[(r["n_items"], arm)] = errors.get((r["n_items"], arm), 0) + r[arm]["error"]
    n_err = sum(errors.values())
    kinds: dict[str, int] = {}
    for r in rows:
        for k, v in r["exceptions"].items():
            kinds[k] = kinds.get(k, 0) + v
    runs = sum(r["reps"] for r in rows)
    by = ", ".join(f"n {n} {arm}: {v}" for (n, arm), v in sorted(errors.items()) if v)
    out.append({"target": "no 'error' verdict", "status": "PASS" if n_err == 0 else "FAIL",
                "measured": f"{n_err} error verdicts in {runs} runs x 2 arms" + (f" ({by}; " + "; ".join(
                    f"{v} x {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:3]) + ")" if n_err else "")})
    mism = sum(r["verdict_decision_mismatches"] for r in rows)
    out.append({"target": "the verdict is the decision (at the stopping look with early stop)",
                "status": "PASS" if mism == 0 else "FAIL", "measured": f"{mism} mismatches"})
    return out


# -- plot --------------------------------------------------------------------------------------------------
def plot(rows: list[dict[str, Any]], args: argparse.Namespace, alpha: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    fb = [r for r in rows if r["grid"] == "false_block"]
    ax = axes[0]
    for g, color in zip(args.groups, ("tab:gray", "tab:blue", "tab:green", "tab:red"), strict=False):
        for arm, style in (("fixed", "-o"), ("early", "--s")):
            ys = []
            for c in args.churns:
                sel = [r for r in fb if r["groups"] == g and r["churn"] == c]
                ys.append(sum(r[arm]["blocked"] for r in sel) / sum(r["reps"] for r in sel))
            ax.plot(args.churns, ys, style, color=color, ms=4, label=f"n {4 * g * CATEGORIES} {arm}")
    ax.axhline(alpha, color="k", lw=0.8, ls=":")
    ax.set(title="False block at ΔSRS 0 (mean over SRS x rho)", xlabel="churn", ylabel="block rate",
           ylim=(0, max(0.08, ax.get_ylim()[1])))
    ax.legend(fontsize=7)
    ax = axes[1]
    pw = [r for r in rows if r["grid"] == "power"]
    for g, color in zip(args.power_groups, ("tab:blue", "tab:green", "tab:red"), strict=False):
        for arm, style in (("fixed", "-o"), ("early", "--s")):
            cells = sorted((r for r in pw if r["groups"] == g), key=lambda r: r["delta"])
            ax.plot([r["delta"] for r in cells], [rate(r, arm, "blocked") for r in cells], style, color=color, ms=4,
                    label=f"n {4 * g * CATEGORIES} {arm}")
    ax.axhline(0.9, color="k", lw=0.8, ls=":")
    ax.axvline(DEFAULTS["bbq"]["max_delta_srs"], color="k", lw=0.8, ls="--")
    ax.set(title="Power (churn 0.3, SRS 0.3)", xlabel="true ΔSRS", ylabel="block rate")
    ax.legend(fontsize=7)
    ax = axes[2]
    for g, color in zip(args.groups, ("tab:gray", "tab:blue", "tab:green", "tab:red"), strict=False):
        for verdict, style in (("pass", "-o"), ("inconclusive", "--s")):
            ys = []
            for c in args.churns:
                sel = [r for r in fb if r["groups"] == g and r["churn"] == c and r["rho"] == args.rhos[0]]
                ys.append(sum(r["fixed"][verdict] for r in sel) / sum(r["reps"] for r in sel))
            ax.plot(args.churns, ys, style, color=color, ms=4, label=f"n {4 * g * CATEGORIES} {verdict}")
    ax.axhline(0.9, color="k", lw=0.8, ls=":")
    ax.set(title=f"Usability at ΔSRS 0 (fixed sample, rho {args.rhos[0]:g})", xlabel="churn", ylabel="rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


# -- main --------------------------------------------------------------------------------------------------
def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=64, help="runs per false-block cell")
    p.add_argument("--power-reps", type=int, default=160, help="runs per power cell")
    p.add_argument("--stress-reps", type=int, default=400, help="runs per stress cell (0: none)")
    p.add_argument("--stress-groups", type=ints, default=[13, 50],
                   help="context groups per category of the stress cells (churn 1, SRS 0.5, rho 0.8)")
    p.add_argument("--churns", type=floats, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--srs", type=floats, default=[0.1, 0.3, 0.5, 0.6], help="baseline SRS values")
    p.add_argument("--groups", type=ints, default=[5, 13, 50],
                   help="context groups per category (x 4 items x 6 categories: 120, 312, 1200 items)")
    p.add_argument("--rhos", type=floats, default=[0.0, 0.8])
    p.add_argument("--template-churns", type=floats, default=[0.5, 1.0],
                   help="template-level churn: share of BBQ templates whose candidate answers are redrawn")
    p.add_argument("--template-groups", type=ints, default=[13, 50, 100],
                   help="context groups per category in the template-churn grid (312, 1200, 2400 items)")
    p.add_argument("--template-srs", type=floats, default=[0.3, 0.5], help="baseline SRS in the template grid")
    p.add_argument("--deltas", type=floats, default=[0.0, 0.025, 0.05, 0.075, 0.10, 0.15])
    p.add_argument("--power-groups", type=ints, default=[13, 50])
    p.add_argument("--looks", type=int, default=4)
    p.add_argument("--seed", type=int, default=20261130)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, help="JSON of every number")
    p.add_argument("--plot", type=Path, help="PNG of the curves (matplotlib)")
    p.add_argument("--markdown", type=Path, help="also write the printed tables to this file")
    p.add_argument("--from-json", type=Path, help="re-print the tables, targets and plot of a saved --out JSON")
    return p.parse_args(argv)


GRID_ARGS = ("reps", "power_reps", "stress_reps", "stress_groups", "churns", "srs", "groups", "rhos", "deltas",
             "power_groups", "looks", "seed", "workers", "template_churns", "template_groups", "template_srs")


def simulate_all(args: argparse.Namespace, settings: dict[str, Any]) -> tuple[str, list[dict[str, Any]], float]:
    cells = build_cells(args)
    start = time.perf_counter()
    rows = run_cells(cells, args, settings)
    elapsed = time.perf_counter() - start
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    header = (f"gate_oc: {cpu_name()} ({machine}); {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; seed "
              f"{args.seed}; reps {args.reps} per false-block cell, {args.power_reps} per power cell, "
              f"{args.stress_reps} per stress cell; {sum(c.reps for c in cells)} simulated runs, each gated "
              f"fixed-sample and with early stop ({args.looks} looks), in {elapsed:.0f} s wall with {args.workers} "
              f"worker(s); policy defaults: alpha {settings['alpha']:g}, alpha_pass {settings['alpha_pass']:g}, "
              f"max_delta_srs {settings['max_delta_srs']:g}")
    return header, rows, elapsed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = dict(DEFAULTS["bbq"])
    alpha = float(settings["alpha"])
    if args.from_json:                       # re-render a saved run: its grid, header and numbers
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        for key in GRID_ARGS:
            setattr(args, key, saved["args"][key])
        header, rows, elapsed = saved["header"], saved["cells"], saved["elapsed_s"]
    else:
        header, rows, elapsed = simulate_all(args, settings)
    res = targets(rows, args, alpha)
    sections = [header] + false_block_tables(rows, args) + [template_table(rows, args), stress_table(rows),
                                                           power_table(rows, args)]
    sections = [x for x in sections if x] + usability_tables(rows, args)
    incon = inconclusive_by_n(rows, args)
    sections.append("**Inconclusive rate at true ΔSRS 0 by n, % (pooled over churn, SRS, rho)**\n\n" + table(
        ["n items", "fixed", "early stop"], [[n, _pct(v["fixed"]), _pct(v["early"])] for n, v in incon.items()]))
    sections.append("**Targets (issue 11)**\n\n" + table(["target", "status", "measured"],
                                                         [[t["target"], t["status"], t["measured"]] for t in res]))
    text = "\n\n".join(sections)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    if args.out:
        payload = {"header": header, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "policy": settings, "elapsed_s": elapsed, "cells": rows, "inconclusive_by_n": incon,
                   "targets": res}
        args.out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        plot(rows, args, alpha, args.plot)
    return 0 if all(t["status"] != "FAIL" for t in res) else 1


if __name__ == "__main__":
    raise SystemExit(main())
