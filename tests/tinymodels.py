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


def save_trained_model(directory: Path, steps: int = 60, seed: int = 0) -> Path:
    """The tiny Llama trained for ``steps`` Adam steps on the perplexity text edgeval ships, so that its perplexity
    means something: low on that text, and rising as pruning removes what it learned (the perplexity screen's
    tests need a model whose perplexity gate fails above some sparsity)."""
    from importlib import resources

    import torch

    directory = save_tiny_model("llama", directory, seed)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = resources.files("edgeval").joinpath("data/perplexity.txt").read_text(encoding="utf-8")
    ids = torch.tensor([AutoTokenizer.from_pretrained(directory)(text)["input_ids"][:1024]])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager")
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    windows = ids.unfold(1, 128, 64)[0]  # overlapping 128-token windows of the text
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=windows, labels=windows).loss.backward()
        optimizer.step()
    model.eval().save_pretrained(directory, safe_serialization=True)
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


#: the vocabulary of :func:`save_wide_vocab_model`: Gemma-3-sized (262k), where logits dominate memory
WIDE_VOCAB = 256_000


def widen_tokenizer(directory: Path, vocab: int) -> int:
    """Pad ``directory``'s tokenizer.json with never-produced ``<unused{i}>`` entries up to ``vocab`` ids (no
    merges lead to them, so text encodes as before). Returns how many entries were added."""
    import json

    path = Path(directory) / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    table = data["model"]["vocab"]
    used = max([*table.values(), *(t["id"] for t in data["added_tokens"])]) + 1
    table.update({f"<unused{i}>": i for i in range(used, vocab)})
    path.write_text(json.dumps(data), encoding="utf-8")
    return max(vocab - used, 0)


def save_wide_vocab_model(directory: Path, vocab: int = WIDE_VOCAB, seed: int = 0) -> Path:
    """The tiny Llama with a ``vocab``-token embedding and LM head (tied) and a tokenizer covering every id:
    the shape of a small model with a Gemma-sized vocabulary, where [batch, seq, vocab] logits outweigh the model."""
    import torch
    from transformers import AutoModelForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    build_tokenizer(directory)
    widen_tokenizer(directory, vocab)
    config = tiny_config("llama")
    config.vocab_size = vocab
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).eval().save_pretrained(directory, safe_serialization=True)
    return directory


def save_wide_vocab_onnx(directory: Path, vocab: int = WIDE_VOCAB, hidden: int = 16, next_token: bool = False,
                         seed: int = 0, name: str = "model.onnx") -> Path:
    """A hand-built bigram LM as ``model.onnx`` (plus the widened tiny tokenizer): ``logits[b, t] =
    (E[ids[b, t]] * mask[b, t]) @ W`` over ``vocab`` tokens, optionally with a ``next_token_logits`` output (the
    last position alone), saved as ``name``. Written in a second or two, unlike an export of
    :func:`save_wide_vocab_model`: for fast tests of memory that must not grow with the vocabulary."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "tokenizer.json").is_file():
        build_tokenizer(directory)
        widen_tokenizer(directory, vocab)
    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array(rng.normal(0, 1, shape).astype(np.float32), name)
               for name, shape in (("E", (vocab, hidden)), ("W", (hidden, vocab)))]
    consts = [numpy_helper.from_array(np.asarray(v, np.int64), n)
              for n, v in (("last", [-1]), ("end", [2**62]), ("axis1", [1]), ("axis2", [2]))]
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
             helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
             helper.make_node("Mul", ["emb", "mask3"], ["hidden"]),
             helper.make_node("MatMul", ["hidden", "W"], ["logits"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", vocab])]
    if next_token:
        nodes += [helper.make_node("Slice", ["hidden", "last", "end", "axis1"], ["last_hidden"]),
                  helper.make_node("MatMul", ["last_hidden", "W"], ["next_token_logits"])]
        outputs.append(helper.make_tensor_value_info("next_token_logits", TensorProto.FLOAT, ["batch", 1, vocab]))
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
              for n in ("input_ids", "attention_mask")]
    graph = helper.make_graph(nodes, "wide_bigram", inputs, outputs, initializer=weights + consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, directory / name)
    return directory / name
