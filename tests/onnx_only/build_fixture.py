"""Build the fixture for the gate-only install check (runs in the full dev venv).

Writes DIR/dense/model.onnx and DIR/pruned/model.onnx (a tiny random Llama and a 50 % magnitude-pruned copy, each
with its tokenizer files beside it), DIR/pruned-kv/model.onnx (the pruned copy exported with a KV cache, so the
torch-free venv runs the prefix-sharing BBQ path), DIR/bbq (the invented BBQ-format fixture under the loader's
file names) and DIR/policy.yaml.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinymodels import save_tiny_model  # noqa: E402


def magnitude_prune_(model, sparsity: float) -> None:
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 2 and "layers." in name:
                k = int(param.numel() * sparsity)
                threshold = param.abs().flatten().kthvalue(k).values
                param[param.abs() <= threshold] = 0.0


def main(out: Path) -> None:
    from transformers import AutoModelForCausalLM

    from edgeval.converters.export import export_onnx

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        dense_dir = save_tiny_model("llama", Path(tmp) / "dense")
        export_onnx(dense_dir, out / "dense" / "model.onnx", legacy=True)
        model = AutoModelForCausalLM.from_pretrained(dense_dir)
        magnitude_prune_(model, 0.5)
        model.save_pretrained(Path(tmp) / "pruned")
        for f in dense_dir.glob("*token*"):
            (Path(tmp) / "pruned" / f.name).write_bytes(f.read_bytes())
        for f in dense_dir.glob("chat_template*"):
            (Path(tmp) / "pruned" / f.name).write_bytes(f.read_bytes())
        export_onnx(Path(tmp) / "pruned", out / "pruned" / "model.onnx", legacy=True)
        export_onnx(Path(tmp) / "pruned", out / "pruned-kv" / "model.onnx", legacy=True, kv_cache=True,
                    next_token_output=True)
    bbq = out / "bbq"
    bbq.mkdir(exist_ok=True)
    for path in (Path(__file__).resolve().parents[1] / "fixtures" / "bbq").glob("*.invented.jsonl"):
        shutil.copyfile(path, bbq / path.name.replace(".invented.jsonl", ".jsonl"))
    (out / "policy.yaml").write_text("latency: {runs: 5, warmup: 1, seq_len: 16}\n"
                                     "perplexity: {window: 64, stride: 32, max_tokens: 256}\n")
    print(f"fixture written to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
