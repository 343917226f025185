"""The compressor contract: one protocol for every compression method, built-in or plugin.

A compressor turns one model artifact into a smaller one: a pruner (``kind = "prune"``: a Hugging Face directory
in, a Hugging Face directory with zeros out), a quantizer (``kind = "quantize"``: e.g. an ONNX file in, an ONNX
file with int8/int4 weights out). Each declares

- ``name`` (the CLI's ``--method`` / ``--then`` value and the manifest's ``method``), ``kind``, ``summary``;
- ``Settings``: a frozen :class:`edgeval.settings.Settings` dataclass; every value is checked against the schema
  built from it **before** any work starts (a bad ``--set`` fails in a second, not after an hour of pruning);
- ``accepts`` (input formats, from :data:`edgeval.artifacts.FORMATS`) and ``produces`` (its output format);
- ``refuse(source) -> str | None`` (optional): why this input cannot be compressed this way (an already
  quantized model, say), checked before :meth:`apply`;
- ``apply(source, out_dir, settings, ctx) -> StepResult``: write the compressed artifact into the empty folder
  ``out_dir`` (with the tokenizer files beside it: :func:`carry_tokenizer`) and say what was measured.

Built-ins and plugins register the same way, through the ``edgeval_compressors`` hook
(:func:`edgeval.plugins.registered_compressors`). Chains of compressors, the export between them and the
``compression.json`` manifest are :mod:`edgeval.converters.chain`'s business, not the compressor's.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

KINDS = ("prune", "quantize")
#: files that travel with a model artifact (what the runtimes read the tokenizer and chat template from)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


@dataclass(frozen=True)
class StepContext:
    """What a compressor may use besides its settings: progress lines and the thread budget."""

    progress: Callable[[str], None] = lambda message: None
    threads: int | None = None


@dataclass(frozen=True)
class StepResult:
    """One compressor's output: the artifact it wrote (inside its ``out_dir``) and what it measured.

    ``measured``: whole-model figures (measured sparsity, quantized tensors, bits per weight …); ``layers``: per
    layer figures by layer name; ``tools``: versions of the libraries that did the work; ``warnings``: lines the
    user must see (they are printed and kept in the manifest)."""

    path: Path
    measured: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@runtime_checkable
class Compressor(Protocol):
    """A compression method (see the module docstring)."""

    name: str
    kind: str
    summary: str
    Settings: type
    accepts: tuple[str, ...]
    produces: str

    def apply(self, source: Path, out_dir: Path, settings: Any, ctx: StepContext) -> StepResult:
        """Compress ``source`` into the empty folder ``out_dir``; raise an :class:`~edgeval.errors.EdgevalError`
        with one line when it cannot."""
        ...


def carry_tokenizer(source: Path, out_dir: Path) -> list[Path]:
    """Copy the tokenizer files that sit beside ``source`` (or inside it, for a directory) into ``out_dir``."""
    folder = source if source.is_dir() else source.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (folder / name).is_file() and (folder / name).resolve() != (out_dir / name).resolve():
            shutil.copyfile(folder / name, out_dir / name)
            copied.append(out_dir / name)
    return copied


def refusal(compressor: Any, source: Path) -> str | None:
    """The compressor's reason to refuse ``source`` (None: it accepts it). A compressor without ``refuse``
    accepts every input of an accepted format."""
    refuse = getattr(compressor, "refuse", None)
    return refuse(source) if callable(refuse) else None


__all__ = ["KINDS", "TOKENIZER_FILES", "StepContext", "StepResult", "Compressor", "carry_tokenizer", "refusal"]
