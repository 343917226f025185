"""Test-only: write the tiny Llama as a float32 GGUF file, the way llama.cpp's converter lays it out.

Tensors get llama.cpp names (``token_embd``, ``blk.N.attn_q`` …, from gguf's own name map), q/k weights get
llama.cpp's head permutation (transformers undoes it on load), and the byte-level BPE tokenizer is stored as a
``gpt2`` GGUF tokenizer. Loaded back by transformers, the model gives the same logits as the HF directory.
"""
from __future__ import annotations

import json
from pathlib import Path


def _permute(weights, n_head: int):
    """llama.cpp's q/k permutation (convert_hf_to_gguf.py ``LlamaModel.permute``)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _add_config(writer, cfg) -> None:
    writer.add_name("tiny-llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)


def _add_tokenizer(writer, model_dir: Path, vocab_size: int) -> None:
    """The byte-level BPE as a ``gpt2`` GGUF tokenizer, its token list padded to the model's ``vocab_size`` with
    unused ``[PADn]`` tokens (as llama.cpp's converter does: llama.cpp refuses a list shorter than the embedding)."""
    data = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    special = {t["content"]: t["id"] for t in data["added_tokens"]}
    types = [3 if t in special else 1 for t in tokens]  # 3 = control, 1 = normal
    padding = range(len(tokens), vocab_size)
    tokens += [f"[PAD{i}]" for i in padding]
    types += [5] * len(padding)  # 5 = unused
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # GPT-2's pre-tokenizer regex, as the byte-level BPE was trained with
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]])
    writer.add_bos_token_id(special["<|im_start|>"])
    writer.add_eos_token_id(special["<|im_end|>"])
    writer.add_pad_token_id(special["<pad>"])
    template = model_dir / "chat_template.jinja"
    if template.is_file():
        writer.add_chat_template(template.read_text())


def write_tiny_llama_gguf(model_dir: Path, out_path: Path, qtype: str | None = None) -> Path:
    """The HF Llama at ``model_dir`` (tokenizer included) as a float32 GGUF at ``out_path``; with ``qtype`` (a
    GGMLQuantizationType name such as ``Q8_0``) its 2-D weights quantized the llama.cpp way."""
    import gguf
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    cfg = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    writer = gguf.GGUFWriter(str(out_path), "llama")
    _add_config(writer, cfg)
    _add_tokenizer(writer, model_dir, cfg.vocab_size)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight":
            continue  # tied to the embeddings: llama.cpp omits output.weight
        base, suffix = hf_name.rsplit(".", 1)
        weights = tensor.float().numpy()
        if base.endswith("q_proj"):
            weights = _permute(weights, cfg.num_attention_heads)
        elif base.endswith("k_proj"):
            weights = _permute(weights, cfg.num_key_value_heads)
        if qtype is not None and weights.ndim == 2:
            kind = gguf.GGMLQuantizationType[qtype]
            writer.add_tensor(f"{names.get_name(base)}.{suffix}", gguf.quants.quantize(weights, kind), raw_dtype=kind)
            continue
        writer.add_tensor(f"{names.get_name(base)}.{suffix}", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path
