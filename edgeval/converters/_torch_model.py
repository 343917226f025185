"""What the exporters share: load a torch model, wrap it as ``(input_ids, attention_mask) -> logits``, copy its
tokenizer files beside an exported artifact.

The loading itself lives in :mod:`edgeval.runtimes.torch` (a lower floor: runtimes must not import converters), so
the exporters and the torch runtime open models in exactly the same way: float32, eager attention, no remote code.
Importing this module imports torch.
"""
from __future__ import annotations

import inspect
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import TokenizerError
from ..runtimes.torch import auto_tokenizer, load_hf_model

#: tokenizer files written beside an exported artifact (those that exist)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def load_torch_model(model: Any) -> tuple[torch.nn.Module, Path | None]:
    """``(model, source path)`` from an HF directory, a ``.gguf`` file or an already loaded model (which is
    switched to eval mode and eager attention in place).

    The source path is where the tokenizer lives (``None`` when a model object without a local
    ``name_or_path`` was given)."""
    if isinstance(model, torch.nn.Module):
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")  # sdpa turns left-padded rows into NaN in TFLite exports
        origin = Path(str(getattr(model, "name_or_path", "") or ""))
        return model.eval(), origin if str(origin) not in ("", ".") and origin.exists() else None
    return load_hf_model(model), Path(model)


class LogitsWrapper(torch.nn.Module):
    """``(input_ids, attention_mask) -> logits`` with positions that ignore left padding, computed in the graph
    (``clamp(cumsum(mask) - 1, min=0)``, the rule of :func:`edgeval.runtimes.base.position_ids`), no KV cache."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.train(False)  # a fresh Module is in training mode; exporters must see eval mode

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.clamp(torch.cumsum(attention_mask, dim=-1) - 1, min=0)
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                          use_cache=False).logits


class LogitsAndNextWrapper(LogitsWrapper):
    """``(input_ids, attention_mask) -> (logits, next_token_logits)`` for ONNX exports.

    ``next_token_logits`` (batch, 1, vocab) applies the LM head to the last position only. A runtime that asks
    ONNX Runtime for that output alone skips the head at every other position and never materialises the
    (batch, seq, vocab) tensor: for letter scoring, where only the next token matters, that is most of the
    output traffic and about a fifth of the FLOPs of a small model like SmolLM2-135M."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.clamp(torch.cumsum(attention_mask, dim=-1) - 1, min=0)
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                                       use_cache=False).last_hidden_state
        head = self.model.get_output_embeddings()
        return _cap(self.model, head(hidden)), _cap(self.model, head(hidden[:, -1:, :]))


class CachedLogitsWrapper(torch.nn.Module):
    """``(input_ids, attention_mask, position_ids, *past) -> (logits[, next_token_logits], *present)``: the
    with-past layout optimum writes (``past_key_values.N.key/value`` in, ``present.N.key/value`` out, batch first,
    ``(batch, kv_heads, seq, head_dim)``), so that ONNX Runtime can score prompts that share a prefix without
    recomputing it. ``attention_mask`` covers past and new tokens; positions are given, not derived."""

    def __init__(self, model: torch.nn.Module, next_token: bool = False):
        super().__init__()
        self.model, self.next_token = model, next_token
        self.layers = model.config.get_text_config().num_hidden_layers
        self.train(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from ..runtimes.torch import transformers_cache

        cache = transformers_cache(self.model.config)
        for layer in range(self.layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        name = "cache" if "cache" in inspect.signature(self.model.base_model.forward).parameters else "past_key_values"
        out = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                    use_cache=True, **{name: cache})
        head = self.model.get_output_embeddings()
        hidden = out.last_hidden_state
        logits = (_cap(self.model, head(hidden)),) + ((_cap(self.model, head(hidden[:, -1:, :])),)
                                                       if self.next_token else ())
        present = tuple(t for layer in out.past_key_values.layers for t in (layer.keys, layer.values))
        return logits + present

    def sample(self, batch: int = 2, seq_len: int = 8, past_len: int = 3) -> tuple[torch.Tensor, ...]:
        """A traceable sample with a non-empty past (row 0 with padding in the past)."""
        config = self.model.config.get_text_config()
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        ids, new_mask = sample_batch(batch, seq_len)
        new_mask[:] = 1
        mask = torch.cat([torch.ones((batch, past_len), dtype=torch.int64), new_mask], dim=1)
        mask[0, 0] = 0
        positions = torch.clamp(torch.cumsum(mask, dim=-1) - 1, min=0)[:, -seq_len:]
        generator = torch.Generator().manual_seed(0)
        past = [torch.randn((batch, heads, past_len, head_dim), generator=generator) for _ in range(2 * self.layers)]
        return (ids, mask, positions, *past)


def _cap(model: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
    cap = getattr(model.config, "final_logit_softcapping", None)  # Gemma 2 and kin
    return logits if not cap else torch.tanh(logits / cap) * cap


def sample_batch(batch: int, seq_len: int, dtype: torch.dtype = torch.int64) -> tuple[torch.Tensor, torch.Tensor]:
    """A traceable sample: token ids 1.., the first row left-padded (so the padding path is what gets traced)."""
    ids = (torch.arange(batch * seq_len, dtype=dtype).reshape(batch, seq_len) % 97) + 1
    mask = torch.ones((batch, seq_len), dtype=dtype)
    mask[0, : seq_len // 4] = 0
    return ids, mask


def write_tokenizer(source: Path | None, out_dir: Path, explicit: str | Path | None = None) -> list[Path]:
    """Copy the tokenizer files of ``source`` (or ``explicit``) into ``out_dir``; GGUF tokenizers are converted.

    Raises :class:`TokenizerError` when there is none: an artifact without its tokenizer cannot be checked."""
    origin = Path(explicit) if explicit is not None else source
    if origin is None:
        raise TokenizerError("the model object has no local name_or_path: pass tokenizer=PATH to the exporter")
    folder = origin if origin.is_dir() else origin.parent
    if origin.suffix.lower() != ".gguf" and (folder / "tokenizer.json").is_file():
        return _copy_tokenizer_files(folder, out_dir)
    with tempfile.TemporaryDirectory() as tmp:  # e.g. GGUF: let transformers write tokenizer.json
        auto_tokenizer(origin).save_pretrained(tmp)
        return _copy_tokenizer_files(Path(tmp), out_dir)


def _copy_tokenizer_files(folder: Path, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TOKENIZER_FILES:
        if (folder / name).is_file():
            if (folder / name).resolve() != (out_dir / name).resolve():
                shutil.copyfile(folder / name, out_dir / name)
            written.append(out_dir / name)
    return written
