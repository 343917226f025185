"""Runtimes: load any supported artifact as a :class:`Runtime` that returns logits.

``load_runtime(artifact)`` picks the backend by format: ``onnx`` → ONNX Runtime, ``tflite`` → ai-edge-litert,
``hf``/``gguf`` → torch + transformers. Backends are imported lazily; a missing one names the extra to install.
Plugins may add backends for further formats (see :mod:`edgeval.plugins`).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from ..artifacts import Artifact, load_artifact
from ..errors import UsageError
from .base import BaseRuntime, Runtime, pad_left, position_ids
from .tokenizer import FastTokenizer, Tokenizer, find_tokenizer

#: format -> "module:Class"; each class takes (artifact, tokenizer_path=None, threads=None).
BUILTIN_RUNTIMES = {
    "onnx": "edgeval.runtimes.onnx:OnnxRuntime",
    "tflite": "edgeval.runtimes.tflite:TFLiteRuntime",
    "hf": "edgeval.runtimes.torch:TorchRuntime",
    "gguf": "edgeval.runtimes.torch:TorchRuntime",
}


def runtime_class(fmt: str):
    """The runtime class registered for a format (built-ins, then plugins)."""
    from ..plugins import registered_runtimes

    table = {**BUILTIN_RUNTIMES, **registered_runtimes()}
    if fmt not in table:
        raise UsageError(f"no runtime for format '{fmt}'; known formats: {', '.join(sorted(table))}")
    target = table[fmt]
    if isinstance(target, str):
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)
    return target


def load_runtime(model: Artifact | str | Path, *, tokenizer: str | Path | None = None,
                 threads: int | None = None) -> Runtime:
    """Open ``model`` on its runtime. Raises ModelError / TokenizerError / MissingExtraError on bad input."""
    artifact = model if isinstance(model, Artifact) else load_artifact(model)
    return runtime_class(artifact.format)(artifact, tokenizer_path=tokenizer, threads=threads)


__all__ = ["BaseRuntime", "Runtime", "Tokenizer", "FastTokenizer", "find_tokenizer", "load_runtime",
           "pad_left", "position_ids", "runtime_class", "BUILTIN_RUNTIMES"]
