"""Test-only ONNX files in layouts other exporters write, built from the tiny models.

``export_optimum_layout`` writes what optimum's ``text-generation-with-past`` export looks like from the outside:
inputs ``input_ids, attention_mask, position_ids, past_key_values.N.key/value`` (past length symbolic), outputs
``logits, present.N.key/value``. The graph uses the given ``position_ids`` (not a cumsum of the mask), so a runtime
that feeds wrong positions gets wrong logits (on GPT-2, whose positions are absolute: Llama's rotary attention
is blind to a constant position offset), and attends to the past it is given (a real KV cache: edgeval's
prefix sharing runs on it). It is written independently of edgeval's own ``--kv-cache`` exporter.
"""
from __future__ import annotations

from pathlib import Path

import torch


class _OptimumLike(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, layers: int):
        super().__init__()
        self.model, self.layers = model, layers
        self.train(False)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids.long(), attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=cache, use_cache=True)
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def export_optimum_layout(model_dir: Path, out_path: Path, ids_dtype: torch.dtype = torch.int64) -> Path:
    """Legacy-export the tiny model at ``model_dir`` in an optimum-like layout (token inputs of ``ids_dtype``)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    cfg = model.config
    layers = cfg.num_hidden_layers
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    ids = torch.arange(1, 17, dtype=ids_dtype).reshape(2, 8)
    mask = torch.ones((2, 11), dtype=torch.int64)  # 3 past + 8 new tokens: a non-empty past is what gets traced
    positions = torch.arange(3, 11).expand(2, 8)
    past = [torch.randn((2, heads, 3, head_dim)) for _ in range(2 * layers)]
    kv = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    axes = {"input_ids": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"}, "logits": {0: "batch_size", 1: "sequence_length"},
            **{name: {0: "batch_size", 2: "past_sequence_length"} for name in kv},
            **{name: {0: "batch_size", 2: "total_sequence_length"} for name in present}}
    torch.onnx.export(_OptimumLike(model, layers), (ids, mask, positions, *past), str(out_path), dynamo=False,
                      opset_version=17, input_names=["input_ids", "attention_mask", "position_ids", *kv],
                      output_names=["logits", *present], dynamic_axes=axes)
    return out_path
