"""Peak RSS of `edgeval check` against the model file, for several source trees and settings, side by side.

Each row runs ``edgeval check CANDIDATE --baseline BASELINE`` in a fresh process under ``/usr/bin/time -v`` and
reads its maximum resident set size and wall time. Every model runs with every source tree given (``--tree
LABEL=PATH [FLAGS]``, a folder holding ``edgeval/`` and, optionally, extra `edgeval check` flags; default: this
checkout as "after"), interleaved, in the same run, so that the trees are compared on the same machine load:

    python benchmarks/memory_vocab.py --tree before=/tmp/edgeval-83ca85a --tree "one=. --resident one" \\
        --tree "both=. --resident both" --tiny-layouts '' --smollm2-onnx /tmp/smol-kv/model.onnx --gemma-shape --alone

Validators (``--validators``): the default policy's (size, latency, bbq, perplexity) with a small BBQ sample and
512 perplexity tokens; parity can be added. Models: the tiny Llama of the tests with a 1k and a 256k vocabulary
(tests/tinymodels.py), exported with the legacy exporter with and without the ``next_token_logits`` output; each
``--smollm2-onnx`` given (against SmolLM2-135M-Instruct from the zoo on torch as the baseline); with
``--gemma-shape`` a Llama with Gemma-3-270M's dimensions and a 256k vocabulary (baseline: a copy of its ONNX);
with ``--alone`` each ONNX model again without a baseline. Columns: file MiB, then per tree peak RSS MiB, peak /
file and wall seconds (wall time moves with the machine's load; RSS does not); "vocab growth" rows give the 256k
minus the 1k peak (memory that grows with the vocabulary).
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VALIDATORS = "size,latency,bbq,perplexity"  # the default policy's


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH [FLAGS]",
                   help="a source tree to run, optionally with extra `edgeval check` flags (repeatable); default: "
                        "after=this checkout")
    p.add_argument("--validators", default=VALIDATORS, help=f"validators of each check (default: {VALIDATORS})")
    p.add_argument("--smollm2-onnx", action="append", default=[], type=Path, help="an ONNX export of SmolLM2")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeval-memory-vocab")
    p.add_argument("--bbq-limit", type=int, default=12)
    p.add_argument("--ppl-tokens", type=int, default=512)
    p.add_argument("--tiny-layouts", default="onnx,onnx-next",
                   help="tiny-model exports to run: onnx (logits only), onnx-next (with next_token_logits); '' none")
    p.add_argument("--gemma-shape", action="store_true",
                   help="also a Llama with Gemma-3-270M's dimensions and a 256k vocabulary (random weights, ~1 GB "
                        "ONNX, as the issue's example), exported as `edgeval search` does (KV cache, last position)")
    p.add_argument("--alone", action="store_true",
                   help="also run each ONNX model without a baseline (bbq, perplexity, latency, size)")
    return p.parse_args(argv)


def trees(specs: list[str]) -> dict[str, tuple[Path, list[str]]]:
    """``LABEL=PATH [FLAGS]`` specs as {label: (path, flags)}; default {"after": (this checkout, [])}."""
    out = {}
    for spec in specs or [f"after={ROOT}"]:
        label, _, rest = spec.partition("=")
        path, *flags = shlex.split(rest)
        if not (Path(path) / "edgeval").is_dir():
            raise SystemExit(f"--tree {spec}: no edgeval/ package in {path}")
        out[label] = (Path(path).resolve(), flags)
    return out


def tiny_models(work: Path, layouts: list[str]) -> list[tuple[str, Path, Path]]:
    """(label, candidate ONNX, baseline HF dir) of the tiny Llama at 1k and 256k vocabularies, in each of
    ``layouts`` (with and without the next_token_logits output); built once in ``work``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tinymodels import VOCAB, WIDE_VOCAB, save_tiny_model, save_wide_vocab_model

    from edgeval.converters.export import export_onnx

    rows = []
    for vocab in (VOCAB, WIDE_VOCAB):
        hf = work / f"tiny-{vocab}" / "hf"
        if not (hf / "model.safetensors").exists():
            save_tiny_model("llama", hf) if vocab == VOCAB else save_wide_vocab_model(hf, vocab)
        for name in layouts:
            out = work / f"tiny-{vocab}" / name / "model.onnx"
            if not out.exists():
                export_onnx(hf, out, legacy=True, next_token_output=name == "onnx-next")
            rows.append((f"tiny Llama, vocab {vocab // 1000}k, {name}", out, hf))
    return rows


def gemma_shaped(work: Path) -> tuple[str, Path, Path]:
    """(label, ONNX, baseline ONNX): a Llama with Gemma-3-270M's width, depth and 256k vocabulary (random weights,
    tied embeddings), exported with a KV cache and a last-position output; the baseline is a copy of the file."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tinymodels import WIDE_VOCAB, build_tokenizer, widen_tokenizer

    from edgeval.converters.export import export_onnx

    hf, out = work / "gemma-shape" / "hf", work / "gemma-shape" / "onnx" / "model.onnx"
    if not (hf / "model.safetensors").exists():
        import torch
        from transformers import AutoModelForCausalLM, LlamaConfig

        hf.mkdir(parents=True, exist_ok=True)
        build_tokenizer(hf)
        widen_tokenizer(hf, WIDE_VOCAB)
        config = LlamaConfig(vocab_size=WIDE_VOCAB, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                             num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                             max_position_embeddings=2048, tie_word_embeddings=True, attn_implementation="eager")
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).eval().save_pretrained(hf, safe_serialization=True)
    if not out.exists():
        export_onnx(hf, out, legacy=True, kv_cache=True, next_token_output=True)
    copy = work / "gemma-shape" / "baseline" / "model.onnx"
    if not copy.exists():
        import shutil

        shutil.copytree(out.parent, copy.parent)
    return "Gemma-3-270M-shaped Llama, vocab 256k, KV cache + last position", out, copy


def peak_rss_mib(tree: tuple[Path, list[str]], candidate: Path, baseline: Path | None, bbq: Path,
                 args: argparse.Namespace, report: Path) -> tuple[float | None, int, float | None]:
    """Maximum RSS (MiB) of one `edgeval check` run with ``tree`` on the path (and its flags), its exit code and
    its wall seconds (no baseline: the same validators on the candidate alone)."""
    path, flags = tree
    against = (["--baseline", str(baseline)] if baseline else []) + ["--validators", args.validators, *flags]
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "edgeval", "check", str(candidate), *against,
           "--bbq-data", str(bbq), "--bbq-limit", str(args.bbq_limit),
           "--set", f"perplexity.max_tokens={args.ppl_tokens}", "--set", "latency.runs=5", "--set",
           "latency.warmup=1", "--no-resume", "-q", "--report", str(report)]
    env = {**os.environ, "PYTHONPATH": str(path)}  # run outside any checkout: `-m` puts the cwd first on sys.path
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=report.parent, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    code = int(re.search(r"Exit status: (\d+)", done.stderr).group(1)) if "Exit status" in done.stderr else -1
    if code not in (0, 1, 5):
        print(f"  exit {code}: {done.stderr.strip().splitlines()[-25:]}", file=sys.stderr)
    return (int(match.group(1)) / 1024 if match else None), code, wall


def bbq_fixture(work: Path) -> Path:
    """The tests' invented BBQ items under the names the loader expects."""
    target = work / "bbq"
    target.mkdir(parents=True, exist_ok=True)
    for path in (ROOT / "tests" / "fixtures" / "bbq").glob("*.invented.jsonl"):
        (target / path.name.replace(".invented.jsonl", ".jsonl")).write_bytes(path.read_bytes())
    return target


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from edgeval.environment import cpu_name
    from edgeval.zoo import fetch_smollm2

    args.work.mkdir(parents=True, exist_ok=True)
    labels = trees(args.tree)
    layouts = [name for name in args.tiny_layouts.split(",") if name]
    models = tiny_models(args.work, layouts) if layouts else []
    smol = fetch_smollm2() if args.smollm2_onnx else None
    models += [(f"SmolLM2-135M, {p.parent.name}", p, smol) for p in args.smollm2_onnx]
    if args.gemma_shape:
        models.append(gemma_shaped(args.work))
    if args.alone:
        models += [(f"{label}, no baseline", c, None) for label, c, _ in models if c.suffix == ".onnx"]
    bbq = bbq_fixture(args.work)
    print(f"memory_vocab: {cpu_name()}, {os.cpu_count()} CPUs, {platform.system()}, Python "
          f"{platform.python_version()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; `edgeval check` with "
          f"{args.validators} (BBQ {args.bbq_limit} items, perplexity {args.ppl_tokens} tokens), baseline = HF "
          "dir on torch (the Gemma-shaped model: a copy of its ONNX); trees: "
          + "; ".join(f"{t} = {p} {' '.join(f)}".strip() for t, (p, f) in labels.items()) + "\n")
    head = "| model | file MiB | " + " | ".join(f"{t} peak MiB | {t} / file | {t} wall s" for t in labels) + " |"
    print(head + "\n|" + "---|" * (2 + 3 * len(labels)))
    peaks: dict[tuple[str, str], float] = {}
    for label, candidate, baseline in models:
        size = candidate.stat().st_size / 2**20
        cells = []
        for tree_label, tree in labels.items():
            peak, code, wall = peak_rss_mib(tree, candidate, baseline, bbq, args,
                                            args.work / f"report-{tree_label}.json")
            peaks[(label, tree_label)] = peak or float("nan")
            cells.append(f"{peak:,.0f} | {peak / size:.1f}x | {wall:.0f}" if peak else f"failed (exit {code}) | - | -")
        print(f"| {label} | {size:,.0f} | " + " | ".join(cells) + " |", flush=True)
    growth_rows(peaks, labels)


def growth_rows(peaks: dict[tuple[str, str], float], labels: dict[str, tuple[Path, list[str]]]) -> None:
    """Peak of the 256k-vocabulary tiny model minus that of the 1k one, per export layout and tree."""
    for name in ("onnx", "onnx-next"):
        small, large = f"tiny Llama, vocab 1k, {name}", f"tiny Llama, vocab 256k, {name}"
        if (small, next(iter(labels))) not in peaks:
            return
        cells = " | ".join(f"{peaks[(large, t)] - peaks[(small, t)]:+,.0f} | - | -" for t in labels)
        print(f"| vocab growth 1k -> 256k, {name} | - | {cells} |")


if __name__ == "__main__":
    main()
