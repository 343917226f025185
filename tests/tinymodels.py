"""Tiny random causal LMs and a tiny tokenizer for tests: built in milliseconds, never downloaded.

``save_tiny_model(kind, directory)`` writes a loadable Hugging Face directory (safetensors + tokenizer.json +
tokenizer_config.json with a ChatML chat template) for ``kind`` in {"llama", "gpt2"}.
"""
from __future__ import annotations

from pathlib import Path

VOCAB = 1000
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
          "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
_CORPUS = ("The quick brown fox jumps over the lazy dog. Who was the doctor? A: the man B: the woman C: unknown. "
           "Answer with A, B or C. Context: two friends met at the park; one was old and one was young. "
           "Question: who forgot the keys? The grandmother, the grandson, can't be determined. ") * 20


def build_tokenizer(directory: Path):
    """Train a byte-level BPE tokenizer of VOCAB tokens and save it (with a ChatML template) in ``directory``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator([_CORPUS], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token="<|im_start|>")
    fast.chat_template = CHATML
    fast.save_pretrained(directory)
    return fast


def tiny_config(kind: str = "llama"):
    from transformers import GPT2Config, LlamaConfig

    if kind == "llama":
        return LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                           tie_word_embeddings=True, attn_implementation="eager")
    if kind == "gpt2":
        return GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=512, bos_token_id=1, eos_token_id=2,
                          attn_implementation="eager")
    raise ValueError(kind)


def tiny_model(kind: str = "llama", seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(kind))
    return model.eval()


def save_tiny_model(kind: str, directory: Path, seed: int = 0) -> Path:
    """A complete HF model directory: weights (safetensors), config, tokenizer files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tiny_model(kind, seed).save_pretrained(directory, safe_serialization=True)
    build_tokenizer(directory)
    return directory
