"""An ONNX Runtime pipeline with an edgeval gate: prune → export → quantize_dynamic → gate_onnx.

    python examples/onnx_pipeline.py --out /tmp/edgeval-onnx              # builds a tiny Llama (seconds)
    python examples/onnx_pipeline.py --out /tmp/edgeval-onnx --model ./my-hf-model-dir

Steps:
1. the dense model: ``--model`` (a Hugging Face directory or .gguf), or a tiny random Llama built here;
2. ``edgeval.converters.pruning.api.prune_directory``: magnitude pruning, 50 % of every block linear;
3. ``export_onnx`` of both (legacy exporter: fast; ``--dynamo`` for the dynamo exporter);
4. gate the pruned export as it is: *blocked*, because unstructured zeros save no bytes in a dense file;
5. ``onnxruntime.quantization.quantize_dynamic`` (int8 weights) of the pruned export, tokenizer copied beside it;
6. ``gate_onnx`` of the quantized model against the dense export: size (``require_savings``) and latency
   (reported, not gated: timing on a shared machine is noisy), ``BLESSED`` written on pass.

Needs ``edgeval[torch,onnx]``. Exits with the final gate's exit code (0 pass, 1 blocked, 3 bad input, 4 internal).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeval import Report
from edgeval.hooks.onnxruntime import copy_tokenizer, gate_onnx

POLICY = {"size": {"require_savings": True},
          "latency": {"warmup": 2, "runs": 10, "seq_len": 32, "max_ratio_to_baseline": None}}
CORPUS = ("The quick brown fox jumps over the lazy dog. Who was the doctor? A: the man B: the woman C: unknown. "
          "Answer with A, B or C. Two friends met at the park; one was old and one was young. ") * 20


def build_tiny_llama(directory: Path) -> Path:
    """A random 2-layer Llama (vocab 1000, hidden 64) with a byte-level BPE tokenizer, saved as an HF dir."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         attn_implementation="eager")
    AutoModelForCausalLM.from_config(config).eval().save_pretrained(directory)
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer, tk.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>", "<pad>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([CORPUS], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<pad>")
    tokenizer.save_pretrained(directory)
    return directory


def prune_and_export(dense: Path, out: Path, legacy: bool) -> tuple[Path, Path]:
    """Prune ``dense`` (magnitude 50 %) and export both models to ONNX; return (dense.onnx, pruned.onnx)."""
    from edgeval.converters.export import export_onnx
    from edgeval.converters.pruning.api import prune_directory

    pruned = prune_directory(dense, out / "pruned-hf", "magnitude", 0.5, overwrite=True)
    print(f"pruned: measured sparsity {pruned.measured_sparsity:.1%} -> {pruned.out_dir}")
    dense_onnx = export_onnx(dense, out / "dense-onnx" / "model.onnx", legacy=legacy)
    pruned_onnx = export_onnx(pruned.out_dir, out / "pruned-onnx" / "model.onnx", legacy=legacy)
    return dense_onnx, pruned_onnx


def quantize(pruned_onnx: Path, out: Path) -> Path:
    """``quantize_dynamic`` with int8 weights; the tokenizer files are copied beside the result."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = out / "pruned-int8-onnx" / "model.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(pruned_onnx, target, weight_type=QuantType.QInt8)
    copy_tokenizer(pruned_onnx.parent, target)
    return target


def show(title: str, report: Report, report_path: Path) -> None:
    print(f"\n== {title}: verdict {report.verdict.upper()} (exit {report.exit_code})")
    for check in report.checks:
        print(f"  [{check.status:5}] {check.id}: {check.message}")
    print(f"  report: {report_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Directory for every artifact and report.")
    parser.add_argument("--model", type=Path, help="Dense HF model directory or .gguf (default: a tiny Llama).")
    parser.add_argument("--dynamo", action="store_true", help="Use the dynamo ONNX exporter (slower).")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dense = args.model or build_tiny_llama(args.out / "dense-hf")
    dense_onnx, pruned_onnx = prune_and_export(dense, args.out, legacy=not args.dynamo)
    pruned_report = pruned_onnx.with_name("model.edgeval-report.json")
    report = gate_onnx(pruned_onnx, dense_onnx, policy=POLICY, validators=["size"], report_path=pruned_report,
                       on_block="record")
    show("pruned ONNX, not quantized", report, pruned_report)
    int8 = quantize(pruned_onnx, args.out)
    int8_report = int8.with_name("model.edgeval-report.json")
    report = gate_onnx(int8, dense_onnx, policy=POLICY, validators=["size", "latency"], report_path=int8_report,
                       bless_dir=int8.parent, on_block="record")
    show("pruned + quantize_dynamic (int8)", report, int8_report)
    marker = "BLESSED" if (int8.parent / "BLESSED").exists() else "NOT_BLESSED"
    print(f"  marker: {int8.parent / marker}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
