"""Tiny random causal LMs and a tiny tokenizer for tests: built in milliseconds, never downloaded.

``save_tiny_model(kind, directory)`` writes a loadable Hugging Face directory (safetensors + tokenizer.json +
tokenizer_config.json with a ChatML chat template) for ``kind`` in {"llama", "gpt2"}.

Tokenizer variants that trip special-token handling (``build_tokenizer`` keywords, also taken by
``save_tiny_model``): ``bos=True`` adds a ``<bos>`` token that the tokenizer puts before every text (post-processor
and ``add_bos_token: true``, as Llama/Gemma files do); ``template=None`` saves no chat template (a base model);
``template=CHATML_BOS`` a template that renders the BOS itself. ``save_always_a_model`` writes a GPT-2 whose next
token is "A" whatever the prompt.
"""
from __future__ import annotations

from pathlib import Path

VOCAB = 1000
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
          "+ '<|im_end|>' + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CHATML_BOS = "{{ bos_token }}" + CHATML
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
BOS = "<bos>"
_CORPUS = ("The quick brown fox jumps over the lazy dog. Who was the doctor? A: the man B: the woman C: unknown. "
           "Answer with A, B or C. Context: two friends met at the park; one was old and one was young. "
           "Question: who forgot the keys? The grandmother, the grandson, can't be determined. ") * 20


def build_tokenizer(directory: Path, *, bos: bool = False, template: str | None = CHATML):
    """Train a byte-level BPE tokenizer of VOCAB tokens and save it in ``directory``: with a ChatML template by
    default; ``bos``: a ``<bos>`` token added before every text; ``template``: the chat template, or None."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    special = SPECIAL + ([BOS] if bos else [])
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator([_CORPUS], trainer=trainer)
    if bos:
        tk.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                          special_tokens=[(BOS, tk.token_to_id(BOS))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token=BOS if bos else "<|im_start|>")
    if template is not None:
        fast.chat_template = template
    fast.save_pretrained(directory)
    if bos:  # what Llama/Gemma tokenizer_config.json files say beside such a post-processor
        config_path = Path(directory) / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config.update(add_bos_token=True, add_eos_token=False)
        config_path.write_text(json.dumps(config, indent=2))
    return fast


def tiny_config(kind: str = "llama"):
    from transformers import GPT2Config, LlamaConfig

    if kind == "llama":
        return LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                           tie_word_embeddings=True, attn_implementation="eager")
    if kind == "gpt2":
        return GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=512, bos_token_id=1,
                          eos_token_id=2, attn_implementation="eager")
    raise ValueError(kind)


def tiny_model(kind: str = "llama", seed: int = 0):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(kind))
    return model.eval()


def save_tiny_model(kind: str, directory: Path, seed: int = 0, **tokenizer_options) -> Path:
    """A complete HF model directory: weights (safetensors), config, tokenizer files (``build_tokenizer``'s
    keywords choose the tokenizer variant)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(directory, **tokenizer_options)
    model = tiny_model(kind, seed)
    if tokenizer_options.get("bos"):  # a loud <bos>: the model's outputs depend on whether it was given one
        import torch

        with torch.no_grad():
            model.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids(BOS)] *= 40.0
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def save_always_a_model(directory: Path, seed: int = 0, strength: float = 30.0) -> Path:
    """A GPT-2 (no chat template) whose next token is "A" after any prompt: its final LayerNorm's output is
    shrunk to a whisper of the input plus a constant bias pointing at the embedding of "A" (tied to the LM head),
    so the letter A wins by about ``strength`` logits and the options barely move the letters' scores."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer(directory, template=None)
    config = tiny_config("gpt2")
    config.n_positions = 1024  # the base prompt's worked examples are ~400 of this tokenizer's tokens
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    a_id = tokenizer.convert_tokens_to_ids("A")
    with torch.no_grad():
        row = model.transformer.wte.weight[a_id]
        model.transformer.ln_f.weight.mul_(0.01)
        model.transformer.ln_f.bias.copy_(strength * row / row.dot(row))
    model.save_pretrained(directory, safe_serialization=True)
    return directory
