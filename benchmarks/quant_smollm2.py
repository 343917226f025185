"""Quantized and prune+quantized SmolLM2-135M-Instruct through the whole gate: what each method saves in bytes and
milliseconds, and what it does to bias.

    PYTHONPATH=. python benchmarks/quant_smollm2.py --bbq-data ../shared/bbq/data --work /tmp/edgeval-quant

Steps (every artifact and report is reused when it is already in --work):
  1. SmolLM2-135M-Instruct from the package registry (edgeval.zoo), exported to ONNX the way the other
     benchmarks do (legacy exporter, KV cache, last-position output: `edgeval export --legacy --kv-cache
     --next-token-output`);
  2. each candidate made by `edgeval compress` (one subprocess each, so that its wall time and peak RSS are its
     own): ORT int8 dynamic, int8 static, int4 weight-only (MatMulNBits, RTN), Wanda 50 % -> int8, Wanda 2:4 ->
     int8, and with --tflite the TFLite fp16 and int8 conversions;
  3. `edgeval check` of the dense model alone (its BBQ predictions become the baseline's, reused), then of every
     candidate against it, under the default policy with --limit BBQ items scored in full (no early stop) and the
     validators size, latency, perplexity, bbq and parity (lossy mode for quantized artifacts);
  4. one markdown table: bytes, zlib bytes, bits per weight, latency p50 ratio vs dense, perplexity (ratio),
     SRS and ΔSRS with its interval, verdict; and one of the compression runs (wall time, peak RSS, RSS/weights).
Results go to --work/results.json; the machine is printed with the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: name -> (what it starts from: "onnx" = the dense export, "hf" = the dense HF dir; compress arguments)
CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "int8-dynamic": ("onnx", ["--method", "int8"]),
    "int8-static": ("onnx", ["--method", "int8-static", "--set", "int8-static.n_samples=32",
                             "--set", "int8-static.seq_len=128"]),
    "int4-rtn": ("onnx", ["--method", "int4"]),
    "wanda50-int8": ("hf", ["--method", "wanda", "--sparsity", "0.5", "--set", "wanda.n_samples=64",
                            "--set", "wanda.seq_len=256", "--then", "int8"]),
    "wanda2:4-int8": ("hf", ["--method", "wanda", "--pattern", "2:4", "--set", "wanda.n_samples=64",
                             "--set", "wanda.seq_len=256", "--then", "int8"]),
}
TFLITE: dict[str, tuple[str, list[str]]] = {
    "tflite-fp16": ("hf", ["--method", "tflite-fp16"]),
    "tflite-int8": ("hf", ["--method", "tflite-int8"]),
}
EXPORT_FLAGS = ["--legacy", "--kv-cache", "--next-token-output"]
VALIDATORS = ["size", "latency", "perplexity", "bbq", "parity"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bbq-data", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--limit", type=int, default=1200)
    p.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    p.add_argument("--tflite", action="store_true", help="also the TFLite fp16/int8 candidates")
    p.add_argument("--tflite-limit", type=int, default=300, help="BBQ items for the TFLite candidates (no KV cache)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--early-stop", default="", help="comma-separated candidates scored with the gate's early stop "
                   "(4 looks: scoring stops at the first look that decides), e.g. the slow dynamic-int8 chains")
    p.add_argument("--report-only", action="store_true", help="print the tables from the reports in --work")
    p.add_argument("--compress-only", action="store_true", help="make the candidates, check nothing")
    return p.parse_args()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def edgeval_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "edgeval", *map(str, args)]


def run_measured(cmd: list[str], log_path: Path) -> dict[str, Any]:
    """Run ``cmd`` (output to ``log_path``); its exit code, wall time and peak RSS (os.wait4, this child only)."""
    started = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return {"exit_code": os.waitstatus_to_exitcode(status), "wall_s": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "command": " ".join(cmd[2:])}


def dense_export(args: argparse.Namespace, source: Path) -> tuple[Path, dict[str, Any]]:
    out = args.work / "dense"
    runs = args.work / "runs.json"
    known = json.loads(runs.read_text()) if runs.is_file() else {}
    if not (out / "model.onnx").is_file():
        log("exporting the dense model (legacy, KV cache, next-token output)")
        known["dense"] = run_measured(edgeval_cmd("export", source, "--to", "onnx", "--out", out / "model.onnx",
                                                  *EXPORT_FLAGS), args.work / "dense.log")
        runs.write_text(json.dumps(known, indent=2))
        if known["dense"]["exit_code"]:
            sys.exit(f"the dense export failed: see {args.work / 'dense.log'}")
    return out / "model.onnx", known.get("dense", {})


def compress_candidate(args: argparse.Namespace, name: str, spec: tuple[str, list[str]], source: Path,
                       dense: Path) -> dict[str, Any] | None:
    """Make one candidate with `edgeval compress` unless its output is there; its run's figures."""
    out = args.work / name.replace(":", "-")
    runs = args.work / "runs.json"
    known = json.loads(runs.read_text()) if runs.is_file() else {}
    if (out / "compression.json").is_file() and name in known:
        return known[name]
    start = dense if spec[0] == "onnx" else source
    flags = [] if name.startswith("tflite") else EXPORT_FLAGS
    log(f"{name}: edgeval compress {' '.join(spec[1])}")
    run = run_measured(edgeval_cmd("compress", start, *spec[1], *flags, "--out", out, "--overwrite"),
                       args.work / f"{out.name}.compress.log")
    known[name] = run
    runs.write_text(json.dumps(known, indent=2))
    if run["exit_code"]:
        log(f"{name}: compress failed (exit {run['exit_code']}); see {args.work / f'{out.name}.compress.log'}")
        return None
    return run


def artifact_of(folder: Path) -> Path:
    doc = json.loads((folder / "compression.json").read_text())
    return Path(doc["output"]["path"])


def policy_file(args: argparse.Namespace, limit: int, looks: int = 0) -> Path:
    path = args.work / f"policy-{limit}-{looks}.yaml"
    policy = {"validators": VALIDATORS, "bbq": {"limit": limit, "data_dir": str(args.bbq_data), "bootstrap": 1000,
                                                "early_stop_looks": looks},
              "latency": {"runs": 20, "warmup": 3}}
    path.write_text(json.dumps(policy))
    return path


def check(args: argparse.Namespace, name: str, model: Path, baseline: Path | None, limit: int,
          saved: str | None) -> dict[str, Any]:
    """`edgeval check` of one model (reused when its report is there); the report."""
    report = args.work / "reports" / f"{name.replace(':', '-')}.json"
    if report.is_file():
        return json.loads(report.read_text())
    report.parent.mkdir(parents=True, exist_ok=True)
    looks = 4 if name in args.early_stop.split(",") else 0
    cmd = ["check", model, "--policy", policy_file(args, limit, looks), "--report", report, "-q"]
    if baseline is not None:
        cmd += ["--baseline", baseline]
    else:
        cmd += ["--validators", "size,latency,perplexity,bbq"]
    if saved:
        cmd += ["--input", f"bbq.baseline_predictions={saved}"]
    if args.threads:
        cmd += ["--threads", args.threads]
    log(f"{name}: edgeval check ({limit} BBQ items)")
    run = run_measured(edgeval_cmd(*cmd), report.with_suffix(".log"))
    if not report.is_file():
        sys.exit(f"{name}: no report (exit {run['exit_code']}); see {report.with_suffix('.log')}")
    doc = json.loads(report.read_text())
    doc["_run"] = run
    report.write_text(json.dumps(doc, indent=2))
    return doc


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    return f"{x:,}" if isinstance(x, int) else f"{x:.{digits}f}"


BLOCK_GROUPS = ("q", "k", "v", "o", "gate", "up", "down")


def block_bits(groups: dict[str, Any] | None) -> float | None:
    """Bits per weight over the decoder-block linears (q..down), from the size validator's groups."""
    parts = [g for name, g in (groups or {}).items() if name in BLOCK_GROUPS]
    if not parts or any(g.get("bits_per_weight") is None for g in parts):
        return None
    return sum(g["bits_per_weight"] * g["params"] for g in parts) / sum(g["params"] for g in parts)


def bits(size: dict[str, Any], prefix: str = "") -> str:
    whole, block = size.get(f"{prefix}bits_per_weight"), block_bits(size.get(f"{prefix}groups"))
    return f"{fmt(whole, 1)} · {fmt(block, 2)}"


def table_row(name: str, doc: dict[str, Any], dense_size: dict[str, Any] | None = None) -> str:
    r = doc.get("results", {})
    size, lat, ppl, bbq = (r.get(k) or {} for k in ("size", "latency", "perplexity", "bbq"))
    shown = bits(size) if dense_size is None else bits(dense_size, "baseline_")
    ratio = lat.get("ratio_to_baseline") if "ratio_to_baseline" in lat else (1.0 if name == "dense" else None)
    perplexity = (ppl.get("candidate") or {}).get("perplexity")
    overall = (bbq.get("candidate") or {}).get("overall") or {}
    comp = (bbq.get("comparison") or {}).get("overall") or {}
    ci = ("" if comp.get("delta_srs_ci_low") is None
          else f" [{fmt(comp['delta_srs_ci_low'])}, {fmt(comp['delta_srs_ci_high'])}]")
    delta = "—" if comp.get("delta_srs") is None else f"{comp['delta_srs']:+.3f}{ci}"
    scored = bbq.get("n_scored") or bbq.get("n_items")
    return (f"| {name} | {fmt(size.get('bytes'))} | {fmt(size.get('compressed_bytes'))} | "
            f"{shown} | {fmt(ratio, 2)} | {fmt(perplexity, 2)} | "
            f"{fmt(scored)} | {fmt(overall.get('srs'))} | {delta} | "
            f"{'(baseline)' if name == 'dense' else doc.get('verdict', '—')} |")


def print_tables(reports: dict[str, dict[str, Any]], runs: dict[str, Any], args: argparse.Namespace) -> None:
    from edgeval.environment import cpu_name

    print(f"\nMachine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d')}; BBQ items: {args.limit}"
          + (f" (TFLite: {args.tflite_limit})" if any(n.startswith("tflite") for n in reports) else "") + "\n")
    print("| model | bytes | zlib bytes | bits/weight (all · block linears) | latency p50 vs dense | perplexity | "
          "BBQ items scored | SRS | ΔSRS [95% CI] | verdict |\n|---|---|---|---|---|---|---|---|---|---|")
    # the dense row's bits come from a candidate's baseline figures (the dense report may predate them)
    with_base = next((d["results"]["size"] for n, d in reports.items()
                      if n != "dense" and (d.get("results") or {}).get("size", {}).get("baseline_groups")), None)
    for name, doc in reports.items():
        print(table_row(name, doc, with_base if name == "dense" else None))
    weights = (reports["dense"].get("results") or {}).get("size", {}).get("payload_bytes") or 0
    print("\n| step | wall s | peak RSS MB | peak RSS / fp32 weights |\n|---|---|---|---|")
    for name, run in runs.items():
        share = "—" if not weights else f"{run['peak_rss_mb'] * 2**20 / weights:.1f}x"
        print(f"| {name}: {run['command'][:60]} | {run['wall_s']} | {run['peak_rss_mb']:,} | {share} |")


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    from edgeval.zoo import fetch_smollm2

    source = fetch_smollm2(progress=log)
    dense, _ = dense_export(args, source)
    chosen = {**CANDIDATES, **(TFLITE if args.tflite else {})}
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    if args.compress_only:
        for name, spec in chosen.items():
            compress_candidate(args, name, spec, source, dense)
        return
    reports = {"dense": check(args, "dense", dense, None, args.limit, None)}
    saved = ((reports["dense"].get("results") or {}).get("bbq") or {}).get("candidate_predictions", {}).get("path")
    for name, spec in chosen.items():
        if args.report_only and not (args.work / "reports" / f"{name.replace(':', '-')}.json").is_file():
            continue
        if not args.report_only and compress_candidate(args, name, spec, source, dense) is None:
            continue
        limit = args.tflite_limit if name.startswith("tflite") else args.limit
        reports[name] = check(args, name, artifact_of(args.work / name.replace(":", "-")), dense, limit,
                              saved if limit == args.limit else None)
    runs = json.loads((args.work / "runs.json").read_text()) if (args.work / "runs.json").is_file() else {}
    (args.work / "results.json").write_text(json.dumps({"reports": {k: v.get("verdict") for k, v in reports.items()},
                                                        "runs": runs}, indent=2))
    print_tables(reports, runs, args)


if __name__ == "__main__":
    main()
