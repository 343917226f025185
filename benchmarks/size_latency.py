"""Size and latency of an ONNX model (and optionally its baseline), as a table, with the machine noted.

Runs edgeval's own SizeValidator and LatencyValidator, so the figures are exactly those a report would hold:

    python benchmarks/size_latency.py pruned.onnx --baseline dense.onnx --runs 20 --threads 2
    python benchmarks/size_latency.py --demo /tmp/edgeval-demo     # builds a tiny dense + 50 %-pruned pair first

The tokenizer is looked up beside the model (or given with --tokenizer); latency inputs are seeded random ids.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", type=Path, help="candidate .onnx (or any format edgeval reads)")
    p.add_argument("--baseline", type=Path)
    p.add_argument("--tokenizer", type=Path)
    p.add_argument("--demo", type=Path, metavar="DIR", help="build a tiny dense/pruned ONNX pair in DIR and use it")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--threads", type=int, help="intra-op threads (default: the runtime's own)")
    p.add_argument("--compress-level", type=int, default=1)
    p.add_argument("--no-latency", action="store_true", help="size only")
    args = p.parse_args(argv)
    if args.demo is None and args.model is None:
        p.error("give a model, or --demo DIR")
    return args


def build_demo(directory: Path, vocab: int = 1000, hidden: int = 64, ffn: int = 256) -> tuple[Path, Path]:
    """dense.onnx and pruned.onnx (the block's two matrices 50 % magnitude-pruned) + a tokenizer.json."""
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    dense = {"embed": rng.standard_normal((vocab, hidden)), "up": rng.standard_normal((hidden, ffn)),
             "down": rng.standard_normal((ffn, hidden)), "lm_head": rng.standard_normal((hidden, vocab))}
    dense = {k: v.astype(np.float32) for k, v in dense.items()}
    pruned = {k: (_prune_half(v) if k in ("up", "down") else v) for k, v in dense.items()}
    _save_lm(dense, directory / "dense.onnx")
    _save_lm(pruned, directory / "pruned.onnx")
    _save_tokenizer(directory, vocab)
    return directory / "pruned.onnx", directory / "dense.onnx"


def _prune_half(w):
    w = w.copy()
    w.reshape(-1)[abs(w).reshape(-1).argsort()[: w.size // 2]] = 0.0
    return w


def _save_lm(weights: dict, path: Path) -> None:
    """ids -> Gather(embed) -> MatMul(up) -> Relu -> MatMul(down) -> MatMul(lm_head) -> logits, mask applied."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "last_axis"))
    chain = [("Gather", ["embed", "input_ids"], "h0"), ("MatMul", ["h0", "up"], "h1"), ("Relu", ["h1"], "h2"),
             ("MatMul", ["h2", "down"], "h3"), ("Mul", ["h3", "m3"], "h4"), ("MatMul", ["h4", "lm_head"], "logits")]
    nodes = [helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "last_axis"], ["m3"])]
    nodes += [helper.make_node(op, ins, [out]) for op, ins, out in chain]
    io = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
          for n in ("input_ids", "attention_mask")]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", weights["lm_head"].shape[1]])
    graph = helper.make_graph(nodes, "demo_lm", io, [out], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _save_tokenizer(directory: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, models

    word_level = models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0")
    Tokenizer(word_level).save(str(directory / "tokenizer.json"))


def measure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run the size (and latency) validators; returns their results (latency None when skipped)."""
    from edgeval.validators.base import run_validator
    from edgeval.validators.latency import LatencyValidator
    from edgeval.validators.size import SizeValidator

    ctx = _context(args)
    try:
        size = run_validator(SizeValidator(), ctx)
        latency = None if args.no_latency else run_validator(LatencyValidator(), ctx)
    finally:
        ctx.close()
    for check in size.checks + (latency.checks if latency else ()):
        if check.status == "error":
            raise SystemExit(f"{check.id}: {check.message}")
    return size.results, None if latency is None else latency.results


def _context(args: argparse.Namespace):
    from edgeval.artifacts import load_artifact
    from edgeval.policy import Policy
    from edgeval.validators.base import RunContext

    policy = Policy.default().with_overrides("size", compress_level=args.compress_level).with_overrides(
        "latency", runs=args.runs, warmup=args.warmup, batch=args.batch, seq_len=args.seq_len)
    baseline = load_artifact(args.baseline) if args.baseline else None
    return RunContext(load_artifact(args.model), baseline, policy, threads=args.threads,
                      tokenizer=None if args.tokenizer is None else str(args.tokenizer))


SIZE_ROWS = [("bytes on disk", "bytes", "{:,}"), ("zlib-compressed bytes", "compressed_bytes", "{:,}"),
             ("sparse-encoded bytes", "sparse_encoded_bytes", "{:,}"), ("parameters", "params", "{:,}"),
             ("weight parameters", "weight_params", "{:,}"), ("weight sparsity", "weight_sparsity", "{:.1%}"),
             ("tensors", "tensors", "{:,}")]
LATENCY_ROWS = [("latency p50 (ms)", "p50_ms", "{:.3f}"), ("latency p90 (ms)", "p90_ms", "{:.3f}"),
                ("latency p99 (ms)", "p99_ms", "{:.3f}"), ("latency mean (ms)", "mean_ms", "{:.3f}"),
                ("latency std (ms)", "std_ms", "{:.3f}"), ("items/s", "items_per_s", "{:.1f}"),
                ("tokens/s", "tokens_per_s", "{:.0f}")]


def table(size: dict[str, Any], latency: dict[str, Any] | None) -> list[str]:
    """Rows: metric | candidate | baseline | candidate/baseline."""
    has_base = "baseline_bytes" in size
    lines = [f"{'metric':<24}{'candidate':>16}" + (f"{'baseline':>16}{'cand/base':>12}" if has_base else "")]
    for results, rows in ((size, SIZE_ROWS), (latency or {}, LATENCY_ROWS if latency else [])):
        for label, key, fmt in rows:
            lines.append(_row(label, results.get(key), results.get(f"baseline_{key}"), fmt, has_base))
    return lines


def _row(label: str, cand: Any, base: Any, fmt: str, has_base: bool) -> str:
    show = lambda v: "n/a" if v is None else fmt.format(v)  # noqa: E731
    line = f"{label:<24}{show(cand):>16}"
    if has_base:
        ratio = f"{cand / base:.3f}" if cand is not None and base else "n/a"
        line += f"{show(base):>16}{ratio:>12}"
    return line


def machine(latency: dict[str, Any] | None) -> str:
    from edgeval.environment import cpu_name

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rt = (latency or {}).get("runtime") or {}
    threads = rt.get("threads") or "runtime default"
    where = f"{rt.get('runtime', '')} {rt.get('version', '')}".strip() or "no runtime (size only)"
    python = sys.version.split()[0]
    return f"machine: {cpu_name()}, {cores} cores available, threads: {threads}, {where}, Python {python}"


def print_report(args: argparse.Namespace, size: dict[str, Any], latency: dict[str, Any] | None) -> None:
    """The machine line, the inputs, the table and the two plain-words summaries."""
    print(machine(latency))
    print(f"candidate: {args.model}" + (f"   baseline: {args.baseline}" if args.baseline else ""))
    if latency:
        print(f"latency: batch {latency['batch']} x {latency['seq_len']} tokens, {latency['warmup']} warm-up, "
              f"{latency['runs']} runs" + (" (interleaved A/B)" if latency["interleaved"] else ""))
    print("\n".join(table(size, latency)))
    print(f"\nsize: {size['summary']}")
    if latency and "ratio_to_baseline" in latency:
        low, high = latency["ratio_ci95"]
        print(f"latency: p50 ratio {latency['ratio_to_baseline']:.3f}; median of {latency['pairs']} paired ratios "
              f"{latency['ratio_pairs_median']:.3f} (95 % CI {low:.3f}-{high:.3f})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.demo is not None:
        args.model, args.baseline = build_demo(args.demo)
    from edgeval.errors import EdgevalError

    try:
        size, latency = measure(args)
    except EdgevalError as exc:
        raise SystemExit(f"error: {exc}") from None
    print_report(args, size, latency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
