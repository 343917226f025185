"""Shared, session-scoped fixtures: tiny models and their exports, built once per test session.

Models (built in milliseconds, never downloaded; see :mod:`tinymodels`):
    tiny_llama_dir, tiny_gpt2_dir       Hugging Face directories with tokenizer.json and a ChatML template
    tiny_llama_gguf                     the Llama as a float32 GGUF file (see tiny_gguf.py)
Exports of them (each a directory holding the artifact and its tokenizer files):
    tiny_llama_onnx, tiny_gpt2_onnx     legacy (TorchScript) exporter, dynamic batch/seq: < 1 s
    tiny_llama_onnx_dynamo              dynamo exporter: ~6 s; use only from tests marked ``slow``
    tiny_llama_tflite                   litert-torch, static bucket batch 2 × seq 32: ~9 s; tests marked ``tflite``
    optimum_layout_onnx                 GPT-2 with position_ids + past_key_values.* inputs, present.* outputs
    optimum_layout_onnx_int32           the same layout from the Llama, int32 input_ids (see onnx_layouts.py)
    tiny_llama_pruned_onnx              a 50 %-magnitude-pruned copy of the Llama's block weights, legacy export

Heavy imports (torch, litert) happen inside the fixtures, so collecting tests stays cheap.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # test helpers (tinymodels, onnx_layouts) import as top-level modules


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (vocab 1000, hidden 64, GQA 4/2 heads, tied embeddings) saved as an HF directory."""
    from tinymodels import save_tiny_model

    return save_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 (learned absolute positions) saved as an HF directory."""
    from tinymodels import save_tiny_model

    return save_tiny_model("gpt2", tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_gguf(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama as a float32 ``.gguf`` (llama.cpp layout, gpt2 tokenizer, chat template), alone in its folder."""
    pytest.importorskip("gguf")
    from tiny_gguf import write_tiny_llama_gguf

    return write_tiny_llama_gguf(tiny_llama_dir, tmp_path_factory.mktemp("llama-gguf") / "tiny-llama.f32.gguf")


@pytest.fixture(scope="session")
def tiny_llama_onnx(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.onnx`` of the tiny Llama, legacy exporter (fast), tokenizer files beside it."""
    from edgeval.converters.export import export_onnx

    return export_onnx(tiny_llama_dir, tmp_path_factory.mktemp("llama-onnx") / "model.onnx", legacy=True)


@pytest.fixture(scope="session")
def tiny_gpt2_onnx(tiny_gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.onnx`` of the tiny GPT-2, legacy exporter."""
    from edgeval.converters.export import export_onnx

    return export_onnx(tiny_gpt2_dir, tmp_path_factory.mktemp("gpt2-onnx") / "model.onnx", legacy=True)


@pytest.fixture(scope="session")
def tiny_llama_onnx_dynamo(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.onnx`` of the tiny Llama from the dynamo exporter (opset 18). Slow: mark its users ``slow``."""
    from edgeval.converters.export import export_onnx

    return export_onnx(tiny_llama_dir, tmp_path_factory.mktemp("llama-onnx-dynamo") / "model.onnx")


@pytest.fixture(scope="session")
def tiny_llama_tflite(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.tflite`` of the tiny Llama, static bucket (batch 2, seq 32). Mark its users ``tflite``."""
    pytest.importorskip("litert_torch")
    from edgeval.converters.export import export_tflite

    out = tmp_path_factory.mktemp("llama-tflite") / "model.tflite"
    return export_tflite(tiny_llama_dir, out, batch=2, seq_len=32)


@pytest.fixture(scope="session")
def optimum_layout_onnx(tiny_gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 in an optimum-like layout (position_ids, past_key_values.*, present.*), int64 ids.

    GPT-2, because its positions are absolute: a runtime feeding wrong ``position_ids`` gets wrong logits."""
    return _optimum_layout(tiny_gpt2_dir, tmp_path_factory.mktemp("gpt2-optimum"), "int64")


@pytest.fixture(scope="session")
def optimum_layout_onnx_int32(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama (GQA: 2 key/value heads) in the optimum-like layout, declaring int32 ``input_ids``."""
    return _optimum_layout(tiny_llama_dir, tmp_path_factory.mktemp("llama-optimum-int32"), "int32")


def _optimum_layout(model_dir: Path, out_dir: Path, ids_dtype: str) -> Path:
    import torch
    from onnx_layouts import export_optimum_layout

    from edgeval.converters._torch_model import write_tokenizer

    write_tokenizer(model_dir, out_dir)
    return export_optimum_layout(model_dir, out_dir / "model.onnx", getattr(torch, ids_dtype))


@pytest.fixture(scope="session")
def tiny_llama_pruned_onnx(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with half of each decoder-block matrix zeroed (magnitude), exported like tiny_llama_onnx."""
    import torch
    from transformers import AutoModelForCausalLM

    from edgeval.converters.export import export_onnx

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and ".layers." in f".{name}":
                p[p.abs() <= p.abs().flatten().kthvalue(p.numel() // 2).values] = 0
    root = tmp_path_factory.mktemp("llama-pruned")
    model.save_pretrained(root / "hf")
    return export_onnx(root / "hf", root / "onnx" / "model.onnx", legacy=True, tokenizer=tiny_llama_dir)
