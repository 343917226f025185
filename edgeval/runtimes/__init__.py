"""Runtimes: load any supported artifact as a :class:`Runtime` that returns logits.

``load_runtime(artifact, options=...)`` opens the artifact on the runtime the registry chooses for its format
(:mod:`edgeval.runtimes.registry`: an explicit ``options.runtime`` first, then plugins, then the built-ins:
``onnx`` → ONNX Runtime, ``tflite`` → ai-edge-litert, ``hf`` → torch + transformers, ``gguf`` → llama.cpp, or
torch with ``--runtime torch``). Backends are
imported lazily; a missing one names the extra to install. Options (threads, provider, device, dtype) are typed:
:class:`RuntimeOptions`.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Iterable

from ..artifacts import Artifact, load_artifact
from .base import BaseRuntime, Runtime, pad_left, position_ids
from .options import RuntimeOptions
from .registry import BUILTIN_RUNTIMES, RuntimeSpec, all_runtimes, resolve
from .tokenizer import FastTokenizer, Tokenizer, find_tokenizer


def runtime_class(fmt: str, choice: str | None = None, disabled: Iterable[str] = ()) -> type:
    """The runtime class a run uses for ``fmt`` files (see :func:`edgeval.runtimes.registry.resolve`)."""
    return resolve(fmt, choice, disabled).load()


def load_runtime(model: Artifact | str | Path, *, tokenizer: str | Path | None = None,
                 options: RuntimeOptions | None = None, threads: int | None = None,
                 disabled: Iterable[str] = ()) -> Runtime:
    """Open ``model`` on its runtime. ``threads`` is shorthand for ``options.threads``. Raises ModelError /
    TokenizerError / MissingExtraError on bad input, UsageError for a runtime that cannot be chosen."""
    options = (options or RuntimeOptions()).with_(threads=threads)
    artifact = model if isinstance(model, Artifact) else load_artifact(model, disabled=disabled)
    cls = runtime_class(artifact.format, options.runtime, disabled)
    return construct(cls, artifact, tokenizer, options)


def construct(cls: type, artifact: Artifact, tokenizer: str | Path | None, options: RuntimeOptions) -> Runtime:
    """Call a runtime class: ``cls(artifact, tokenizer_path=..., options=...)``; a class written for the older
    ``(artifact, tokenizer_path, threads)`` signature gets ``threads`` (and refuses the other options)."""
    params = inspect.signature(cls).parameters
    if "options" in params:
        return cls(artifact, tokenizer_path=tokenizer, options=options)
    from .options import refuse_unsupported

    refuse_unsupported(options, cls)
    return cls(artifact, tokenizer_path=tokenizer, threads=options.threads)


__all__ = ["BaseRuntime", "Runtime", "RuntimeOptions", "RuntimeSpec", "Tokenizer", "FastTokenizer",
           "find_tokenizer", "load_runtime", "pad_left", "position_ids", "runtime_class", "all_runtimes",
           "BUILTIN_RUNTIMES", "construct"]
