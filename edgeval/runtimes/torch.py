"""Torch runtime: a Hugging Face model directory or a GGUF file, run by transformers in float32 with eager attention.

This is the reference runtime (the exporters in :mod:`edgeval.converters` start from the same model); for a GGUF
file it is the alternative to llama.cpp (``--runtime torch``): transformers dequantizes the weights to float.
``trust_remote_code`` is never set: only architectures transformers ships are loaded.
Needs the ``torch`` extra (torch, transformers; GGUF also gguf + accelerate).
"""
from __future__ import annotations

import inspect
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts import Artifact, detect_format
from ..errors import DeviceError, ModelError, TokenizerError, UsageError, require
from ._util import one_line
from .base import BaseRuntime, pad_left, position_ids
from .options import DTYPES, RuntimeOptions, refuse_unsupported
from .tokenizer import TransformersTokenizer


def _load_errors() -> tuple[type[BaseException], ...]:
    """What transformers / safetensors / gguf raise on a broken or unsupported model."""
    builtin = (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError, struct.error)  # struct: bad GGUF
    try:
        from safetensors import SafetensorError
    except ImportError:  # without safetensors transformers reads only .bin files, whose errors are builtin ones
        return builtin
    return (*builtin, SafetensorError)


def pretrained_source(path: Path) -> tuple[str, dict[str, str]]:
    """``from_pretrained`` arguments for a model path: ``(directory, {})`` or ``(parent, {"gguf_file": name})``."""
    if path.is_file():
        require("gguf", "torch", "loading GGUF files")
        require("accelerate", "torch", "loading GGUF files")
        return str(path.parent), {"gguf_file": path.name}
    return str(path), {}


def load_hf_model(path: str | Path) -> Any:
    """A float32 causal LM in eval mode, eager attention, from an HF directory (safetensors only) or a ``.gguf``."""
    torch = require("torch", "torch", "running Hugging Face or GGUF models")
    transformers = require("transformers", "torch", "running Hugging Face or GGUF models")
    path = Path(path)
    fmt = detect_format(path)  # missing path, directory without config.json, bad magic: one line, exit 3
    if fmt not in ("hf", "gguf"):
        raise ModelError(f"a {fmt} file is not a Hugging Face directory or .gguf file", path=path)
    source, extra = pretrained_source(path)
    safe = {} if extra else {"use_safetensors": True}  # never unpickle .bin weights
    bars = transformers.utils.logging
    shown = bars.is_progress_bar_enabled()
    bars.disable_progress_bar()  # a "Loading weights" bar on stderr would bury edgeval's one-line messages
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source, dtype=torch.float32, attn_implementation="eager", trust_remote_code=False, **extra, **safe)
    except _load_errors() as exc:
        raise ModelError(f"transformers cannot load it as a causal LM: {one_line(exc)}", path=path) from None
    finally:
        if shown:
            bars.enable_progress_bar()
    return model.eval()


def dequantized(model: Any) -> Any:
    """``model`` made saveable: a GGUF-loaded model holds dequantized float weights but ``save_pretrained``
    refuses it while it carries the quantizer marker and ``quantization_config``; both are dropped."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


#: any of these in a directory means transformers may find a tokenizer there
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tokenizer_config.json")


def _tokenizer_source(model_path: Path, explicit: str | Path | None) -> tuple[str, dict[str, str]]:
    """Where AutoTokenizer should look: ``--tokenizer`` (directory, file in one, or .gguf), else beside the model."""
    if explicit is None:
        return pretrained_source(model_path)
    explicit = Path(explicit)
    if explicit.suffix.lower() == ".gguf":
        return pretrained_source(explicit)
    return str(explicit.parent if explicit.is_file() else explicit), {}


def auto_tokenizer(path: str | Path, explicit: str | Path | None = None) -> Any:
    """The transformers tokenizer of a model (or the one given with ``--tokenizer``); TokenizerError if none."""
    transformers = require("transformers", "torch", "loading Hugging Face tokenizers")
    where = Path(explicit if explicit is not None else path)
    source, extra = _tokenizer_source(Path(path), explicit)
    if not extra and not any((Path(source) / name).is_file() for name in HF_TOKENIZER_FILES):
        raise TokenizerError(f"no tokenizer files ({', '.join(HF_TOKENIZER_FILES)}) in {source}; "
                             "pass --tokenizer PATH", path=where)
    try:
        return transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=False, **extra)
    except _load_errors() as exc:
        raise TokenizerError(f"no usable tokenizer: {one_line(exc)}; pass --tokenizer PATH", path=where) from None


def load_hf_tokenizer(path: str | Path, explicit: str | Path | None = None) -> TransformersTokenizer:
    """:func:`auto_tokenizer` wrapped in the interface validators use."""
    return TransformersTokenizer(auto_tokenizer(path, explicit), source=str(explicit if explicit is not None else path))


def transformers_cache(config: Any) -> Any:
    """An empty DynamicCache for a model of ``config``."""
    from transformers import DynamicCache

    return DynamicCache(config=config)


def torch_device(torch: Any, name: str | None) -> Any:
    """The torch device for ``--device`` (None: the CPU). A malformed name is a UsageError; a device this
    machine does not have (no CUDA build, no GPU, no MPS) is a MissingExtraError (exit 3) naming it."""
    try:
        device = torch.device(name or "cpu")
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {name}: not a torch device ({one_line(exc)})") from None
    probes = {"cuda": lambda: torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
              "mps": lambda: torch.backends.mps.is_available(), "cpu": lambda: True}
    usable = probes.get(device.type, lambda: False)()
    if not usable:
        raise DeviceError(f"device '{name}' is not available here (torch {torch.__version__}, "
                                f"{torch.cuda.device_count()} CUDA device(s)): install a torch build for it and run "
                                "on a machine that has it, or leave --device out to run on the CPU")
    return device


class TorchRuntime(BaseRuntime):
    """Runs an HF directory or a GGUF file with torch (eager attention; the CPU in float32 unless the options name
    another device or dtype)."""

    name = "torch"
    has_devices = True
    dtypes = DTYPES

    @classmethod
    def check_options(cls, options: RuntimeOptions) -> None:
        """Before anything runs: the requested device exists here (DeviceError naming it if not)."""
        if options.device is not None:
            torch_device(require("torch", "torch", "running Hugging Face or GGUF models"), options.device)

    def __init__(self, artifact: Artifact, tokenizer_path: str | Path | None = None,
                 options: RuntimeOptions | None = None, threads: int | None = None):
        self.options = (options or RuntimeOptions()).with_(threads=threads)
        refuse_unsupported(self.options, self)
        self._torch = require("torch", "torch", "running Hugging Face or GGUF models")
        self.device = torch_device(self._torch, self.options.device)
        self.dtype = self.options.dtype or "float32"
        if self.options.threads:
            self._torch.set_num_threads(self.options.threads)
        self.threads = self._torch.get_num_threads()
        tokenizer = load_hf_tokenizer(artifact.path, tokenizer_path)
        super().__init__(artifact, tokenizer)
        self.model = load_hf_model(artifact.path).to(device=self.device, dtype=getattr(self._torch, self.dtype))
        parameters = inspect.signature(self.model.forward).parameters
        self._keeps_last = "logits_to_keep" in parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"  # renamed in transformers 5.2x
        self._layers = self.model.config.get_text_config().num_hidden_layers
        self.check_vocab_width(self._model_width(), "the model's embedding and LM head")

    def _model_width(self) -> int | None:
        """The number of token ids the model can embed and score (the smaller of its embedding and LM head)."""
        sizes = []
        for module, attr in ((self.model.get_input_embeddings(), "num_embeddings"),
                             (self.model.get_output_embeddings(), "out_features")):
            value = getattr(module, attr, None) if module is not None else None
            if isinstance(value, int):
                sizes.append(value)
        return min(sizes) if sizes else None

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray, **extra: Any) -> np.ndarray:
        """Logits from one forward pass (no KV cache), positions that ignore left padding."""
        torch = self._torch
        with torch.inference_mode():
            out = self.model(input_ids=self._tensor(input_ids), attention_mask=self._tensor(attention_mask),
                             position_ids=self._tensor(position_ids(attention_mask)), use_cache=False, **extra)
        return out.logits.float().cpu().numpy()

    def _tensor(self, array: np.ndarray) -> Any:
        """``array`` as a tensor on the runtime's device (float arrays in its dtype)."""
        tensor = self._torch.from_numpy(np.ascontiguousarray(array))
        if tensor.is_floating_point():
            tensor = tensor.to(getattr(self._torch, self.dtype))
        return tensor.to(self.device)

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self._run(input_ids, attention_mask)

    def next_token_logits(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Only the last position's logits are computed (``logits_to_keep=1``) when the model supports it."""
        if not self._keeps_last:
            return super().next_token_logits(sequences)
        ids, mask = pad_left(sequences, self.tokenizer.pad_id)
        return self.check_finite(self._run(ids, mask, logits_to_keep=1)[:, -1, :])

    def computes_last_only(self) -> bool:
        """True when the model takes ``logits_to_keep`` (next-token and cached passes keep one position)."""
        return self._keeps_last

    def kv_seq_axes(self) -> list[int]:
        """Keys and values of every layer, ``(batch, heads, seq, head_dim)``: transformers' cache layout."""
        return [2] * (2 * self._layers)

    def _cached_step(self, input_ids, attention_mask, positions, past, keep):
        """One pass after ``past`` (rebuilt as a DynamicCache); logits at the last position only."""
        torch = self._torch
        cache = transformers_cache(self.model.config)
        if past is not None:
            for layer in range(self._layers):
                cache.update(self._tensor(past[2 * layer]), self._tensor(past[2 * layer + 1]), layer)
        extra = {"logits_to_keep": 1} if self._keeps_last else {}
        with torch.inference_mode():
            out = self.model(input_ids=self._tensor(input_ids), attention_mask=self._tensor(attention_mask),
                             position_ids=self._tensor(positions), use_cache=True,
                             **{self._cache_arg: cache}, **extra)
        logits = out.logits[:, -1, :].float().cpu().numpy()
        if not keep:
            return logits, None
        layers = out.past_key_values.layers
        return logits, [t.float().cpu().numpy() for layer in layers for t in (layer.keys, layer.values)]

    def describe(self) -> dict:
        transformers = require("transformers", "torch", "describing the torch runtime")
        return {"runtime": self.name, "version": self._torch.__version__, "transformers": transformers.__version__,
                "threads": self.threads, "providers": [str(self.device)], "device": str(self.device),
                "dtype": self.dtype, "attention": "eager",
                "architecture": type(self.model).__name__, "kv_cache": True}

    def close(self) -> None:
        self.model = None
        if str(getattr(self, "device", "cpu")).startswith("cuda"):  # cached blocks back, for the next model
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()
