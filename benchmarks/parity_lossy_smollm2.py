"""Lossy parity figures on SmolLM2-135M-Instruct: quantized copies (should pass) and broken ones (must fail).

    PYTHONPATH=. python benchmarks/parity_lossy_smollm2.py --dense /work/smol/main/dense/model.onnx \
        --broken /work/smol/main/magnitude-40%/model.onnx --work /tmp/hp-work

The reference is the dense ONNX export (KV cache, next-token output); the candidates are made from it with ONNX
Runtime's own quantizers and reused when they already exist in --work:

- ``int8-dynamic``: ``quantize_dynamic`` (int8 weights, activations quantized at run time);
- ``int4-rtn-b32``: ``MatMulNBitsQuantizer`` with RTN, symmetric, block 32 (MatMulNBits nodes);
- ``int4-rtn-b256``: the same with block 256 (coarser scales; a stress case);
- ``int2-b32`` (broken): 2-bit MatMulNBits, block 32 (ORT's default weight-only quantizer): too aggressive;
- ``--broken`` (optional, repeatable): exports that must fail, e.g. the 40 % magnitude-pruned SmolLM2.

Each candidate is compared with the reference by :func:`edgeval.validators.parity.parity_report` on the 48
parity prompts with every threshold off (report only), in the mode ``auto`` picks (lossy: prompt by prompt).
Prints a markdown table and writes parity_lossy.json; rows already there are reused unless --fresh.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

COLUMNS = ("mode", "batch", "mean_kl", "mean_kl_cached", "max_kl", "top1_agreement", "letter_agreement",
           "option_agreement", "reference_nll", "candidate_nll", "delta_nll", "max_abs_logit_diff")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dense", type=Path, required=True, help="the dense ONNX export (reference)")
    p.add_argument("--broken", type=Path, action="append", default=[], help="an export that must fail")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--only-quantize", action="store_true", help="make the quantized copies and stop")
    p.add_argument("--fresh", action="store_true", help="measure every row again")
    return p.parse_args()


def copy_tokenizer(dense: Path, out_dir: Path) -> None:
    """The tokenizer files beside the dense export, copied beside a quantized copy."""
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (dense.parent / name).exists():
            (out_dir / name).write_bytes((dense.parent / name).read_bytes())


def int8_dynamic(dense: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(dense), str(out), weight_type=QuantType.QInt8)


def int4_rtn(block: int):
    def make(dense: Path, out: Path) -> None:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, RTNWeightOnlyQuantConfig

        quant = MatMulNBitsQuantizer(str(dense), block_size=block, is_symmetric=True,
                                     algo_config=RTNWeightOnlyQuantConfig())
        quant.process()
        quant.model.save_model_to_file(str(out), use_external_data_format=False)
    return make


def int2_default(dense: Path, out: Path) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quant = MatMulNBitsQuantizer(str(dense), bits=2, block_size=32, is_symmetric=True)
    quant.process()
    quant.model.save_model_to_file(str(out), use_external_data_format=False)


QUANTIZERS = {"int8-dynamic": int8_dynamic, "int4-rtn-b32": int4_rtn(32), "int4-rtn-b256": int4_rtn(256),
              "broken:int2-b32": int2_default}


def quantized_copies(dense: Path, work: Path) -> dict[str, Path]:
    """Each quantized copy of ``dense`` under ``work/NAME/model.onnx``, made when missing."""
    out = {}
    for name, make in QUANTIZERS.items():
        path = work / name.removeprefix("broken:") / "model.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            make(dense, path.with_suffix(".tmp.onnx"))
            path.with_suffix(".tmp.onnx").rename(path)
            copy_tokenizer(dense, path.parent)
            print(f"{name}: made in {time.perf_counter() - start:.0f} s", flush=True)
        out[name] = path
    return out


def measure(candidate: Path, reference, threads: int | None) -> dict:
    from edgeval.runtimes import load_runtime
    from edgeval.validators.parity import ParitySettings, parity_report

    off = {k: None for k in ParitySettings().to_json() if k != "mode"}
    runtime = load_runtime(candidate, threads=threads)
    try:
        start = time.perf_counter()
        _, results = parity_report(runtime, reference, off)
        results["seconds"] = round(time.perf_counter() - start, 1)
    finally:
        runtime.close()
    return results


def table(rows: dict[str, dict]) -> str:
    lines = ["| candidate | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, r in rows.items():
        cells = [str(v) if isinstance(v := r.get(c), (str, int)) else f"{v or 0:.4g}" for c in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    candidates = {**quantized_copies(args.dense, args.work), **{f"broken:{p.parent.name}": p for p in args.broken}}
    if args.only_quantize:
        return
    from edgeval.runtimes import load_runtime

    saved = args.work / "parity_lossy.json"
    cached = {} if args.fresh or not saved.exists() else json.loads(saved.read_text())["rows"]
    reference = load_runtime(args.dense, threads=args.threads)
    meta = {"machine": f"{platform.machine()} {platform.processor()} {platform.system()}",
            "date": time.strftime("%Y-%m-%d", time.gmtime()), "reference": str(args.dense)}
    rows = {}
    for name, path in {"dense (itself)": args.dense, **candidates}.items():
        rows[name] = cached.get(name) or measure(path, reference, args.threads)
        print(name, {c: rows[name][c] for c in COLUMNS}, f"{rows[name]['seconds']} s", flush=True)
        saved.write_text(json.dumps({**meta, "rows": {**cached, **rows}}, indent=2, default=str) + "\n")
    reference.close()
    print(table(rows))


if __name__ == "__main__":
    main()
