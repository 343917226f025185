"""A demo edgeval plugin: the validator ``demo_plugin``, the compressor ``demo-fp16``, the runtime
``demo-onnx`` for ``.onnx`` files, a new format ``bigram`` with its runtime, and an ``edgeval_report_ready`` sink.

Registered through the ``edgeval`` entry-point group (see this package's pyproject.toml), like any third-party
plugin, and written against the public surface only (``edgeval.plugin``). The validator emits one passing check,
``demo_plugin.ok``, and a small result; its settings (:class:`DemoSettings`) are the policy's top-level
``demo_plugin:`` section. The compressor rounds a Hugging Face directory's float32 safetensors weights to
float16 and back (numpy and safetensors only). The sink writes a JSON marker file when ``EDGEVAL_DEMO_MARKER``
names one. ``demo-onnx`` is ONNX Runtime with a counter: it appends one line per forward pass to the file
``EDGEVAL_DEMO_RUNTIME_LOG`` names. A ``.bigram`` file is a numpy ``.npy`` float32 table ``(vocab, vocab)``: the
logits of the next token given the current one (read with ``allow_pickle=False``), with a ``tokenizer.json``
beside it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeval.plugin import (
    BadInputError,
    BaseRuntime,
    Check,
    ModelError,
    Outcome,
    RunContext,
    RuntimeOptions,
    Settings,
    StepContext,
    StepResult,
    carry_tokenizer,
    hookimpl,
    refuse_unsupported,
    runtime,
    setting,
)

MARKER_ENV = "EDGEVAL_DEMO_MARKER"


@dataclass(frozen=True)
class DemoSettings(Settings):
    """The ``demo_plugin`` policy section."""

    greeting: str = setting("hi", "what the validator says", minLength=1)
    repeat: int = setting(1, "how often", minimum=1, maximum=3)


class DemoValidator:
    """Always passes; reports the candidate's format and the settings it was given."""

    name = "demo_plugin"
    summary = "demo plugin validator (tests): one passing check"
    Settings = DemoSettings

    def run(self, ctx: RunContext, settings: DemoSettings) -> Outcome:
        fmt = ctx.candidate.format
        check = Check("demo_plugin.ok", self.name, "pass", "demo", value=settings.repeat,
                      message=f"demo plugin saw a {fmt} model")
        return Outcome((check,), {"format": fmt, "settings": settings.to_json(), "answer": 42})


@hookimpl
def edgeval_validators() -> list[Any]:
    return [DemoValidator()]


@hookimpl
def edgeval_report_ready(report: Any, path: str | None) -> None:
    marker = os.environ.get(MARKER_ENV)
    if marker:
        with open(marker, "w", encoding="utf-8") as fh:
            json.dump({"verdict": report.verdict, "path": path, "checks": [c.id for c in report.checks]}, fh)


@dataclass(frozen=True)
class Fp16Settings(Settings):
    """The ``demo-fp16`` compressor's settings."""

    skip_embeddings: bool = setting(False, "leave tensors whose name contains 'embed' in float32")


class Fp16RoundTrip:
    """float32 weights -> float16 -> float32, in a Hugging Face directory (a lossy 'quantizer')."""

    name = "demo-fp16"
    kind = "quantize"
    summary = "demo plugin compressor (tests): fp16 round trip of safetensors weights"
    Settings = Fp16Settings
    accepts = ("hf",)
    produces = "hf"

    def refuse(self, source: Path) -> str | None:
        return None if list(Path(source).glob("*.safetensors")) else "no *.safetensors weights"

    def apply(self, source: Path, out_dir: Path, settings: Fp16Settings, ctx: StepContext) -> StepResult:
        import shutil

        import numpy as np
        from safetensors.numpy import load_file, save_file

        changed, largest = 0, 0.0
        for file in sorted(Path(source).glob("*.safetensors")):
            tensors = load_file(str(file))
            for name, value in tensors.items():
                if value.dtype == np.float32 and not (settings.skip_embeddings and "embed" in name):
                    rounded = value.astype(np.float16).astype(np.float32)
                    changed += int((rounded != value).sum())
                    largest = max(largest, float(np.abs(rounded - value).max(initial=0.0)))
                    tensors[name] = rounded
            save_file(tensors, str(out_dir / file.name), metadata={"format": "pt"})
        for extra in ("config.json", "generation_config.json"):
            if (Path(source) / extra).is_file():
                shutil.copyfile(Path(source) / extra, out_dir / extra)
        carry_tokenizer(Path(source), out_dir)
        if not changed:
            raise BadInputError("demo-fp16 changed no weight")
        ctx.progress(f"demo-fp16: {changed} values rounded")
        return StepResult(out_dir, measured={"values_changed": changed, "max_abs_change": largest},
                          tools={"numpy": np.__version__})


@hookimpl
def edgeval_compressors() -> list[Any]:
    return [Fp16RoundTrip()]


# -- runtimes ------------------------------------------------------------------------------------------------
RUNTIME_LOG_ENV = "EDGEVAL_DEMO_RUNTIME_LOG"


def _log_forward(name: str, rows: int) -> None:
    log = os.environ.get(RUNTIME_LOG_ENV)
    if log:
        with open(log, "a") as fh:
            fh.write(f"{name} {rows}\n")


def _demo_onnx_class() -> type:
    """ONNX Runtime with a forward counter (built lazily: the plugin must import without onnxruntime)."""
    from edgeval.runtimes.onnx import OnnxRuntime

    class DemoOnnxRuntime(OnnxRuntime):
        name = "demo-onnx"

        def _forward(self, input_ids: Any, attention_mask: Any, *args: Any) -> Any:
            _log_forward(self.name, len(input_ids))
            return super()._forward(input_ids, attention_mask, *args)

        def _cached_step(self, input_ids: Any, *args: Any) -> Any:
            _log_forward(self.name, len(input_ids))
            return super()._cached_step(input_ids, *args)

        def describe(self) -> dict:
            return {**super().describe(), "runtime": self.name, "plugin": "demo"}

    return DemoOnnxRuntime


class BigramRuntime(BaseRuntime):
    """Logits of a ``.bigram`` table: row ``t`` is the next-token logits after token ``t``."""

    name = "bigram"

    def __init__(self, artifact: Any, tokenizer_path: Any = None, options: RuntimeOptions | None = None,
                 threads: int | None = None):
        from edgeval.runtimes.tokenizer import find_tokenizer

        self.options = (options or RuntimeOptions()).with_(threads=threads)
        refuse_unsupported(self.options, self)
        try:
            self.table = np.load(artifact.path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ModelError(f"not a bigram table: {exc}", path=artifact.path) from None
        if self.table.ndim != 2 or self.table.shape[0] != self.table.shape[1] or self.table.dtype != np.float32:
            raise ModelError(f"a bigram table is float32 (vocab, vocab), not {self.table.dtype}{self.table.shape}",
                             path=artifact.path)
        super().__init__(artifact, find_tokenizer(artifact.path, tokenizer_path))
        self.check_vocab_width(self.table.shape[1], "the bigram table")

    def _forward(self, input_ids: Any, attention_mask: Any) -> Any:
        _log_forward(self.name, len(input_ids))
        return self.table[np.clip(input_ids, 0, self.table.shape[0] - 1)]

    def describe(self) -> dict:
        return {"runtime": self.name, "vocab": int(self.table.shape[0]), "threads": None}

    def close(self) -> None:
        self.table = None


@hookimpl
def edgeval_runtimes() -> list[Any]:
    return [runtime("onnx", "demo-onnx", _demo_onnx_class()), runtime("bigram", "bigram", BigramRuntime)]


@hookimpl
def edgeval_detect_format(path: str) -> str | None:
    """``.bigram`` files that start like a numpy array file are this plugin's format."""
    file = Path(path)
    if file.suffix != ".bigram" or not file.is_file():
        return None
    with file.open("rb") as fh:
        return "bigram" if fh.read(6) == b"\x93NUMPY" else None
