"""`edgeval search` versus an exhaustive grid on SmolLM2-135M-Instruct, side by side in one run.

    PYTHONPATH=. nice python benchmarks/search_smollm2.py --bbq-data ../shared/bbq/data --work /tmp/edgeval-search

Both runs use the same model (edgeval.zoo, cached), methods {magnitude, wanda}, policy (validators size, bbq and
perplexity; --limit BBQ items in --looks early-stop slices; objective zlib bytes) and one in-process worker:

- **search**: bisection per method over 0.1..0.9 at 5-point resolution (0.05, 17 grid points per method), ordered
  by the perplexity screen (the source pruned in memory, its perplexity gate forecast; ``--no-screen``: plain
  bisection); its CPU time includes the screen's;
- **grid**: every point of 0.1..0.9 at 10-point resolution (0.1, 9 points per method).

Each run has its own folder (nothing shared, so each pays its own dense export and dense check). Printed: wall
and CPU time (this process and its children), candidates evaluated, BBQ items scored, each method's highest
passing sparsity, and the CPU ratio search/grid (target <= 0.40). The machine is printed with the table; this VM
drifts +-30 %, so read the ratio, not the seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(kind: str, model: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from edgeval import search
    from edgeval.policy import Policy

    policy = Policy.from_dict({"validators": ["size", "bbq", "perplexity"],
                               "bbq": {"limit": args.limit, "early_stop_looks": args.looks, "bootstrap": 500,
                                       "data_dir": args.bbq_data},
                               "perplexity": {"max_tokens": args.ppl_tokens}})
    resolution, strategy = (0.05, "bisect") if kind == "search" else (0.1, "grid")
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = search(model, out, methods=tuple(args.methods.split(",")), sparsity=(args.lo, args.hi, resolution),
                    policy=policy, strategy=strategy, workers=1,
                    settings={"wanda": {"n_samples": args.calib, "seq_len": 128}}, screen=not args.no_screen,
                    progress=lambda m: print(f"  [{kind}] {m}", flush=True))
    counts = result.document["counts"]
    screens = result.document.get("screen") or []
    own = [s for s in screens if "+" not in s["axis"] or not any(  # a chain sharing its pruning step's forecast
        "+" not in o["axis"] and o["points"] == s["points"] and o["elapsed_s"] == s["elapsed_s"] for o in screens)]
    compared = [c for s in screens if "+" not in s["axis"] for c in s["compared"]]  # a chain's forecast: its prune
    return {"kind": kind, "wall_s": time.perf_counter() - wall, "cpu_s": cpu_seconds() - cpu,
            "evaluated": counts["evaluated"], "bbq_items": counts["bbq_items_scored"],
            "screen_probes": sum(len(s["points"]) for s in own), "screen_s": sum(s["elapsed_s"] for s in own),
            "screen_max_rel_diff": max((abs(c["forecast_ratio"] / c["gated_ratio"] - 1) for c in compared),
                                       default=None),
            "highest": result.highest_passing, "recommended": (result.recommended or {}).get("axis"),
            "verdicts": {p["axis"]: p["verdict"] for p in result.points if p["sparsity"] is None},
            "recommended_sparsity": (result.recommended or {}).get("sparsity"), "exit_code": result.exit_code}


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    names = " / ".join(args.methods.split(","))
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; BBQ limit {args.limit} in {args.looks} looks; "
             f"wanda calibration {args.calib} x 128 tokens; perplexity {args.ppl_tokens} tokens; sparsity "
             f"{args.lo:g}..{args.hi:g}",
             "", "| run | grid | wall s | CPU s | candidates | BBQ items | screen probes | highest passing "
                 f"({names}; a quantizer: its verdict) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        best = " / ".join(r["verdicts"].get(k, "—") if k in r["verdicts"] else "—" if v is None else f"{100 * v:g} %"
                          for k, v in r["highest"].items())
        points = round((args.hi - args.lo) / (0.05 if r["kind"] == "search" else 0.1)) + 1
        design = "bisection" + (", screened" if r["screen_probes"] else "")
        grid = f"{points} points, {design}" if r["kind"] == "search" else f"{points} points, all"
        probes = f"{r['screen_probes']} ({r['screen_s']:.0f} s)" if r["screen_probes"] else "—"
        lines.append(f"| {r['kind']} | {grid} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['evaluated']} | "
                     f"{r['bbq_items']} | {probes} | {best} |")
    diffs = [r["screen_max_rel_diff"] for r in rows if r.get("screen_max_rel_diff") is not None]
    if diffs:
        lines.append(f"\nscreen forecast vs gated perplexity ratio: largest relative difference {max(diffs):.1e} "
                     "(single pruning steps; a chain's forecast covers its pruning step only)")
    if len(rows) == 2:
        lines.append(f"\nCPU time search / grid: {rows[0]['cpu_s'] / rows[1]['cpu_s']:.2f} (target <= 0.40)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bbq-data", default=os.environ.get("EDGEVAL_BBQ_DIR"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgeval-search-bench"))
    parser.add_argument("--limit", type=int, default=120, help="BBQ items per candidate (stratified)")
    parser.add_argument("--looks", type=int, default=4, help="early-stop looks of the gate")
    parser.add_argument("--calib", type=int, default=16, help="wanda calibration samples")
    parser.add_argument("--ppl-tokens", type=int, default=1024)
    parser.add_argument("--only", choices=["search", "grid"], help="run one side only")
    parser.add_argument("--lo", type=float, default=0.1, help="lowest sparsity searched")
    parser.add_argument("--hi", type=float, default=0.9, help="highest sparsity searched")
    parser.add_argument("--no-screen", action="store_true", help="search by plain bisection (no perplexity screen)")
    parser.add_argument("--methods", default="magnitude,wanda",
                        help="methods searched (comma-separated; quantizers and chains too: int8,int4,wanda+int8). "
                             "Given the --work of an earlier run, cached candidates are reused: the times are then "
                             "those of the methods added")
    args = parser.parse_args()
    from edgeval.zoo import fetch_smollm2

    model = fetch_smollm2()
    rows = [run(kind, model, args.work / kind, args) for kind in ("search", "grid") if args.only in (None, kind)]
    text = table(rows, args)
    print(text)
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))
    (args.work / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
