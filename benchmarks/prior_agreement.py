"""How far one-order scoring debiased by a letter prior (``bbq.prior_items``) agrees with 3-order scoring.

    python benchmarks/bbq_smollm2.py --bbq-data ../shared/bbq/data --work /tmp/edgeval-bench --limit 1200
    python benchmarks/prior_agreement.py --bbq-data ../shared/bbq/data --work /tmp/edgeval-bench

Reads the 3-order predictions that ``bbq_smollm2.py`` saved for each model (dense, magnitude and Wanda at 20 and
40 %) and derives what the prior mode would have answered from the same letter log-probabilities
(:func:`edgeval.validators.bbq.prior.one_order_view`: exact, a row does not depend on the orders scored beside
it; ``tests/test_bbq_prior.py`` checks the live mode against this derivation). Every verdict goes through the
real gate code (``compare`` -> ``decide`` -> ``gate.bias_checks`` -> ``Report.verdict``, default policy, the
dense model as baseline), as in ``bbq_smollm2.py``.

1. The mode as it runs (the subset and shown orders from the items' keys), for each --subsets size: per model,
   answer agreement with 3-order scoring (all items, and the one-order items alone), SRS, ΔSRS vs dense with its
   95 % CI, verdict, and whether the verdict is the 3-order one.
2. --draws redraws of the subset and of every item's shown order (the same for all models in a draw, as the live
   mode keeps them equal for candidate and baseline): per model and size, the share of draws whose verdict
   differs from the 3-order verdict (with a 95 % Clopper-Pearson interval), and the spread of ΔSRS.
Prints markdown tables and writes prior-agreement.json to --work.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's edgeval, not an installed copy

import numpy as np  # noqa: E402

LN2 = float(np.log(2))
VERDICTS, OUTCOMES = ("blocked", "pass", "inconclusive"), ("block", "pass", "inconclusive")
MODELS = ("dense", "magnitude-20%", "magnitude-40%", "wanda-20%", "wanda-40%")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bbq-data", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="bbq_smollm2.py's --work, with its saved predictions")
    p.add_argument("--limit", type=int, default=1200)
    p.add_argument("--subsets", default="60,120,240", help="prior subset sizes (items scored in 3 orders)")
    p.add_argument("--draws", type=int, default=200, help="redrawn subsets and shown orders per size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sim-reps", type=int, default=200, help="simulated runs per model and true ΔSRS (0: skip)")
    p.add_argument("--sim-prior-items", type=int, default=120)
    return p.parse_args()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load(args: argparse.Namespace):
    from edgeval.validators.bbq.data import load_bbq
    from edgeval.validators.bbq.predictions import read_cache
    from edgeval.validators.bbq.sampling import sample_fingerprint, stratified_sample
    from edgeval.validators.bbq.scoring import apply_tie_rule

    items = list(stratified_sample(load_bbq(args.bbq_data).items, args.limit, 0))
    fingerprint, runs = sample_fingerprint(items, 0), {}
    for name in MODELS:
        path = args.work / name / "bbq-predictions.jsonl.gz"
        if not path.is_file():
            raise SystemExit(f"{path}: missing; run benchmarks/bbq_smollm2.py with this --work and --limit first")
        header, preds = read_cache(path)
        if header.get("sample_fingerprint") != fingerprint:
            raise SystemExit(f"{path}: made on another sample (limit or data differ)")
        by_key = {p.key: p for p in apply_tie_rule(preds)}
        runs[name] = [by_key[it.key] for it in items]
    return items, runs


def verdict(cand, base, bootstrap: int, prior_items: int | None = None) -> tuple[str, dict[str, Any], str]:
    """The report verdict, the overall comparison and the decision rule's outcome, as bbq_smollm2.summarise
    computes them; with ``prior_items`` the policy is the prior mode's (which never passes: the outcome says
    what the rule found, the verdict what the gate claims)."""
    from edgeval.policy import Policy
    from edgeval.report import Report
    from edgeval.validators.bbq import compare as cmp
    from edgeval.validators.bbq import gate, metrics
    from edgeval.validators.bbq.decision import Plan, decide
    from edgeval.validators.bbq.prior import signal_sample
    from edgeval.validators.bbq.signal import signal

    settings = {**Policy.default().section("bbq"), "prior_items": prior_items}
    m = metrics.metrics_by_category(cand)
    comparison = cmp.compare(cand, base, alpha=settings["alpha"], bootstrap=bootstrap, seed=0)
    decision = decide(cand, base, Plan.from_policy(settings))
    figures = {"candidate": signal(signal_sample(cand)), "baseline": signal(signal_sample(base))}
    checks = gate.bias_checks(comparison, m, settings, decision=decision, signal=figures)
    return (Report(candidate={}, baseline=None, policy={}, checks=tuple(checks)).verdict, comparison["overall"],
            decision.outcome)


def agreement(view, three, subset) -> tuple[float, float]:
    same = [a.pred == b.pred for a, b in zip(view, three, strict=True)]
    rest = [s for s, p in zip(same, three, strict=True) if p.key not in subset]
    return float(np.mean(same)), float(np.mean(rest)) if rest else float("nan")


def fit(preds, log_prior: np.ndarray) -> dict[str, float]:
    """How well a model follows the prior's model: the SD (nats, per letter) of its item-level letter preference
    around the global prior (which 3 orders cancel and one order does not), and its median content margin per
    order (the 3-order margin / 3)."""
    rows = np.array([p.extra["order_logprobs"] for p in preds], dtype=float)
    item = rows.mean(axis=1)
    item -= item.mean(axis=1, keepdims=True)
    centred = log_prior - log_prior.mean()
    jitter = float(np.sqrt(((item - centred) ** 2).sum(axis=1).mean() / 2))
    margins = [p.margin / 3 for p in preds if p.margin is not None and np.isfinite(p.margin)]
    return {"jitter": jitter, "content": float(np.median(margins))}


def simulate_oc(fits: dict[str, dict], priors: dict[str, np.ndarray], n_prior: int, reps: int,
                seed: int) -> dict[str, Any]:
    """Verdicts of 3-order scoring and of the prior mode on simulated letter rows (simulate.with_letters) whose
    letter priors, item-level jitter and content margins are each model's measured ones; the answers come from
    simulate.World (1,200 items, churn 0.3, baseline SRS 0.3) with true ΔSRS 0 (false block), +0.05 (the
    tolerance: a pass there is a false pass) and +0.10.
    Every verdict goes through the real gate code."""
    from edgeval.validators.bbq.prior import one_order_view, prior_subset
    from edgeval.validators.bbq.simulate import World, simulate, with_letters

    out: dict[str, Any] = {}
    base_fit, base_prior = fits["dense"], priors["dense"]
    for name in MODELS[1:]:
        for delta in (0.0, 0.05, 0.1):
            counts: dict[str, dict[str, int]] = {"three": {}, "prior": {}, "prior_rule": {}}
            for r in range(reps):
                rng = np.random.default_rng([seed, r, int(delta * 100)])
                cand, base = simulate(World(srs=0.3, churn=0.3, delta=delta, groups=50), seed=int(rng.integers(2**31)))
                # content: an Exp(1) draw times this has the measured median margin per order
                cand3 = with_letters(cand, priors[name], fits[name]["jitter"], fits[name]["content"] / LN2, rng)
                base3 = with_letters(base, base_prior, base_fit["jitter"], base_fit["content"] / LN2, rng)
                subset = prior_subset(cand3, n_prior)
                v = verdict(cand3, base3, 0)[0]
                counts["three"][v] = counts["three"].get(v, 0) + 1
                v, _, rule = verdict(one_order_view(cand3, subset)[0], one_order_view(base3, subset)[0], 0, n_prior)
                counts["prior"][v] = counts["prior"].get(v, 0) + 1
                counts["prior_rule"][rule] = counts["prior_rule"].get(rule, 0) + 1
            out[f"{name}/{delta}"] = counts
    return out


def f(x: float | None, d: int = 3) -> str:
    return "—" if x is None else f"{0.0 if abs(x) < 5e-4 else x:+.{d}f}"


def as_run(items, runs, three, sizes, out) -> None:
    """Part 1: the subset and shown orders as the live mode picks them."""
    from edgeval.validators.bbq.metrics import metrics_by_category
    from edgeval.validators.bbq.prior import one_order_view, prior_subset

    print("\n### The prior mode as it runs, against 3-order scoring (same items, same forward passes)\n")
    print("| prior items | model | same answers (all / one-order items) | letter prior A/B/C | SRS 3-order → "
          "prior | ΔSRS 3-order | ΔSRS prior [95% CI] | verdict 3-order → prior mode (its rule's outcome) |\n|"
          + "---|" * 8)
    for n in sizes:
        subset = prior_subset(items, n)
        views = {name: one_order_view(runs[name], subset) for name in MODELS}
        rows = out["as_run"].setdefault(str(n), {})
        for name in MODELS:
            view, log_prior = views[name]
            same_all, same_rest = agreement(view, runs[name], subset)
            srs3 = metrics_by_category(runs[name])["overall"]["srs"]
            srs1 = metrics_by_category(view)["overall"]["srs"]
            row = {"same_all": same_all, "same_one_order": same_rest, "prior": np.exp(log_prior).tolist(),
                   "srs_three": srs3, "srs_prior": srs1}
            cells = ["—"] * 3
            if name != "dense":
                v, c, rule = verdict(view, views["dense"][0], 1000, n)
                row.update(verdict=v, outcome=rule, delta_srs=c["delta_srs"],
                           ci=[c["delta_srs_ci_low"], c["delta_srs_ci_high"]])
                cells = [f(three[name][1]["delta_srs"]),
                         f"{f(c['delta_srs'])} [{f(c['delta_srs_ci_low'])}, {f(c['delta_srs_ci_high'])}]",
                         f"{three[name][0]} → {v} ({rule})"]
            rows[name] = row
            print(f"| {n} | {name} | {same_all:.3f} / {same_rest:.3f} | "
                  f"{'/'.join(f'{x:.2f}' for x in row['prior'])} | {srs3:.3f} → {srs1:.3f} | " + " | ".join(cells)
                  + " |")


def redrawn(items, runs, three, sizes, draws: int, seed: int, out) -> None:
    """Part 2: redrawn subsets and shown orders, the same draw for every model."""
    from edgeval.stats import clopper_pearson
    from edgeval.validators.bbq.prior import one_order_view

    keys = [it.key for it in items]
    log(f"redrawing subsets and shown orders: {draws} draws x {len(sizes)} sizes")
    rng = np.random.default_rng(seed)
    print(f"\n### Redrawn subsets and shown orders ({draws} draws per size, the same draw for every model)\n")
    print("| prior items | model | 3-order: rule's outcome | draws whose rule's outcome differs [95% CI] | outcomes "
          "seen | ΔSRS prior: median [2.5 %, 97.5 %] | same answers, median |\n|" + "---|" * 7)
    for n in sizes:
        results: dict[str, list] = {name: [] for name in MODELS if name != "dense"}
        for _ in range(draws):
            subset = {keys[i] for i in rng.choice(len(keys), size=min(n, len(keys)), replace=False)}
            shown = dict(zip(keys, rng.integers(0, 3, size=len(keys)).tolist(), strict=True))
            base = one_order_view(runs["dense"], subset, shown)[0]
            for name in results:
                view = one_order_view(runs[name], subset, shown)[0]
                _, c, rule = verdict(view, base, 0, n)
                results[name].append((rule, c["delta_srs"], agreement(view, runs[name], subset)[0]))
        block = out["redrawn"].setdefault(str(n), {})
        for name, got in results.items():
            other = sum(v != three[name][2] for v, _, _ in got)
            low, high = clopper_pearson(other, len(got), 0.025)
            deltas, same = np.array([d for _, d, _ in got]), np.array([s for _, _, s in got])
            seen = {v: sum(x == v for x, _, _ in got) for v in sorted({x for x, _, _ in got})}
            block[name] = {"other_verdict": other, "of": len(got), "ci": [low, high], "verdicts": seen,
                           "delta_srs_quantiles": np.quantile(deltas, [0.025, 0.5, 0.975]).tolist(),
                           "same_median": float(np.median(same))}
            q = block[name]["delta_srs_quantiles"]
            print(f"| {n} | {name} | {three[name][2]} | {other}/{len(got)} [{low:.3f}, {high:.3f}] | "
                  f"{', '.join(f'{k} {c}' for k, c in seen.items())} | {f(q[1])} [{f(q[0])}, {f(q[2])}] | "
                  f"{np.median(same):.3f} |")


def fits_and_simulation(items, runs, args, out) -> None:
    """Part 3: each model's fit to the prior's model, and simulated runs calibrated on it."""
    from edgeval.validators.bbq.prior import one_order_view, prior_subset

    n = args.sim_prior_items
    subset = prior_subset(items, n)
    views = {name: one_order_view(runs[name], subset) for name in MODELS}
    fits = out["fit"] = {name: fit(runs[name], views[name][1]) for name in MODELS}
    print("\n### How well each model follows the prior's model (all 1,200 items)\n\n| model | item-level letter "
          "preference around the prior, SD nats | median content margin per order, nats |\n|---|---|---|")
    for name, fx in fits.items():
        print(f"| {name} | {fx['jitter']:.3f} | {fx['content']:.3f} |")
    if not args.sim_reps:
        return
    log(f"simulating: {args.sim_reps} runs per model and true ΔSRS")
    sim = out["simulated"] = simulate_oc(fits, {k: v[1] for k, v in views.items()}, n, args.sim_reps, args.seed)
    print(f"\n### Simulated runs with each model's measured prior, jitter and content margin ({args.sim_reps} per "
          f"cell, {n} prior items, 1,200 items, churn 0.3, baseline SRS 0.3)\n\n| candidate like | true ΔSRS | "
          "3-order: blocked / pass / inconclusive | prior mode, its rule's outcome: block / pass / inconclusive | "
          "prior mode, the gate's verdict: blocked / pass / inconclusive |\n|---|---|---|---|---|")
    for key, counts in sim.items():
        name, delta = key.split("/")
        cells = [" / ".join(f"{c.get(v, 0) / args.sim_reps:.3f}" for v in names)
                 for c, names in ((counts["three"], VERDICTS), (counts["prior_rule"], OUTCOMES),
                                  (counts["prior"], VERDICTS))]
        print(f"| {name} | {float(delta):+.2f} | {' | '.join(cells)} |")


def main() -> None:
    from edgeval.environment import cpu_name

    args = parse_args()
    items, runs = load(args)
    sizes = [int(x) for x in args.subsets.split(",")]
    log(f"{len(items)} items, models {', '.join(runs)}; machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}")
    three = {name: verdict(runs[name], runs["dense"], 1000) for name in MODELS if name != "dense"}
    out: dict[str, Any] = {"items": len(items), "machine": cpu_name(), "sizes": sizes, "draws": args.draws,
                           "three_order": {n: {"verdict": v, "delta_srs": c["delta_srs"]}
                                           for n, (v, c, _) in three.items()}, "as_run": {}, "redrawn": {}}
    as_run(items, runs, three, sizes, out)
    redrawn(items, runs, three, sizes, args.draws, args.seed, out)
    fits_and_simulation(items, runs, args, out)
    (args.work / "prior-agreement.json").write_text(json.dumps(out, indent=2, default=float))
    log(f"wrote {args.work / 'prior-agreement.json'}")


if __name__ == "__main__":
    main()
