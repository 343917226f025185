"""ONNX Runtime GenAI bundles of SmolLM2-135M-Instruct scored by edgeval's `ort-genai` runtime: agreement with
torch and the cost of the letter path, side by side with the dense ONNX export on `onnxruntime`.

    PYTHONPATH=. python benchmarks/genai_smollm2.py --work /tmp/genai-bench [--hf DIR] [--onnx dense/model.onnx]

1. builds fp32 and int4 CPU bundles with onnxruntime-genai's model builder from the HF directory (offline; reused
   when already in --work);
2. parity: each bundle against torch on the HF directory, on edgeval's 48 parity prompts (16 items × 3 orders),
   full prompts and the KV-cached letter path (:func:`edgeval.validators.parity.parity_report`, report only);
3. cost: the letter path (`next_token_logits_many`) on the same 48 prompts, CPU seconds of this process (all
   threads) per run, best of --repeats, for: each bundle with prefix sharing (roots batched, later nodes one row
   per call: what GroupQueryAttention accepts), the fp32 bundle with every prompt in full, and (anchor) the dense
   export on `onnxruntime` when --onnx is given. Ratios are against the anchor measured in the same run.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--hf", type=Path, default=None, help="SmolLM2 HF directory (default: edgeval's zoo cache)")
    p.add_argument("--onnx", type=Path, default=None, help="the dense ONNX export (KV cache) as the anchor")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    return p.parse_args()


def build(hf: Path, out: Path, precision: str) -> Path:
    """A CPU bundle at ``precision`` (kept when already built)."""
    if not (out / "genai_config.json").is_file():
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
                        "-p", precision, "-e", "cpu", "-c", str(out.parent / "builder-cache")], check=True,
                       stdout=subprocess.DEVNULL)
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's machine type."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def cpu_cost(runtime, prompts: list[list[int]], repeats: int) -> tuple[float, int]:
    """Best CPU seconds of one letter-path run over ``prompts``, and the tokens it computed."""
    best, computed = float("inf"), 0
    for _ in range(repeats):
        runtime.tokens_computed = 0
        start = time.process_time()
        runtime.next_token_logits_many(prompts)
        best, computed = min(best, time.process_time() - start), runtime.tokens_computed
    return best, computed


def main() -> None:
    args = parse_args()
    from edgeval.artifacts import load_artifact
    from edgeval.runtimes.genai import GenAIRuntime
    from edgeval.runtimes.onnx import OnnxRuntime
    from edgeval.runtimes.torch import TorchRuntime
    from edgeval.validators.parity import build_prompts, load_parity_prompts, parity_report
    from edgeval.zoo import smollm2_dir

    hf = args.hf or smollm2_dir()
    args.work.mkdir(parents=True, exist_ok=True)
    bundles = {p: build(hf, args.work / p, p) for p in ("fp32", "int4")}
    reference = TorchRuntime(load_artifact(hf), threads=args.threads)
    runtimes = {p: GenAIRuntime(load_artifact(b), threads=args.threads) for p, b in bundles.items()}
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs (shared), threads {args.threads}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("\n| bundle | max abs Δlogit | cached max abs Δlogit | mean KL | cached mean KL | top-1 | letter agreement |")
    print("|---|---|---|---|---|---|---|")
    for name, runtime in runtimes.items():
        _, r = parity_report(runtime, reference, None)
        print(f"| {name} | {r['max_abs_logit_diff']:.3g} | {r['max_abs_cached_logit_diff']:.3g} | "
              f"{r['mean_kl']:.3g} | {r['mean_kl_cached']:.3g} | {r['top1_agreement']:.3f} | "
              f"{r['letter_agreement']:.3f} |")
    prompts = build_prompts(runtimes["fp32"], reference, load_parity_prompts()).ids
    rows = {f"{p} bundle, ort-genai, prefix sharing": rt for p, rt in runtimes.items()}
    full = GenAIRuntime(load_artifact(bundles["fp32"]), threads=args.threads)
    full.kv_seq_axes = lambda: None  # type: ignore[method-assign]  # every prompt in full
    rows["fp32 bundle, ort-genai, every prompt in full"] = full
    if args.onnx:
        rows["dense export, onnxruntime, prefix sharing (anchor)"] = OnnxRuntime(load_artifact(args.onnx),
                                                                                 threads=args.threads)
    costs = {name: cpu_cost(rt, prompts, args.repeats) for name, rt in rows.items()}
    anchor = costs.get("dense export, onnxruntime, prefix sharing (anchor)", (None, 0))[0]
    requested = sum(map(len, prompts))
    print(f"\nletter path, {len(prompts)} prompts, {requested} tokens requested, best of {args.repeats}")
    print("| runtime | tokens computed | CPU s | CPU ms / token computed | ratio vs anchor |")
    print("|---|---|---|---|---|")
    for name, (seconds, computed) in costs.items():
        ratio = f"{seconds / anchor:.2f}x" if anchor else "-"
        print(f"| {name} | {computed} | {seconds:.2f} | {1000 * seconds / max(computed, 1):.2f} | {ratio} |")


if __name__ == "__main__":
    main()
