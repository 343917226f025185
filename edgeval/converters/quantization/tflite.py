"""TFLite quantizers as compressors: ``tflite-fp16`` (float16 weights) and ``tflite-int8`` (dynamic-range int8).

Both take a Hugging Face directory (or ``.gguf``) and write ``model.tflite`` with its tokenizer files: the float
model is exported with :func:`edgeval.converters.export.export_tflite` (litert-torch, one static ``(batch,
seq_len)`` int32 bucket, eager attention) and quantized **at conversion** by litert-torch's own recipes
(``litert_torch.generative.quantize.quant_recipes``, applied to every op by the AI Edge Quantizer):

- ``tflite-fp16``: ``full_fp16_recipe()``: weights stored as float16, DEQUANTIZE ops in front of the float
  kernels (weight-only; activations stay float32);
- ``tflite-int8``: ``full_dynamic_recipe()``: weights int8, symmetric, per output channel; the hybrid
  (dynamic-range) kernels quantize activations on the fly.

The result is checked from the file itself (:func:`edgeval.validators.tensorstats.tflite_stats`): a conversion
that stored no weight in the target dtype is an error, not a pass.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ...errors import EdgevalError, ModelError, require
from ...settings import Settings, setting
from ..compressor import StepContext, StepResult

#: the output file's name inside ``out_dir``
MODEL_FILE = "model.tflite"
#: float32 weight elements (share of all weight elements) above which a warning says the quantization is partial
FLOAT32_WARN_SHARE = 0.01
_TOOLS = ("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torch", "transformers")


@dataclass(frozen=True)
class TFLiteQuantizeSettings(Settings):
    """The static bucket the file is exported for (as ``edgeval export --to tflite``)."""

    batch: int = setting(1, "Rows per call of the static (batch, seq_len) bucket.", minimum=1)
    seq_len: int = setting(256, "Tokens per row of the static bucket: longer prompts cannot be scored.", minimum=1)


class _TFLiteQuantizer:
    """litert-torch export with one of its quantization recipes applied at conversion."""

    kind = "quantize"
    accepts = ("hf", "gguf")
    produces = "tflite"
    Settings: type = TFLiteQuantizeSettings
    name = ""
    summary = ""
    #: the recipe function of ``litert_torch.generative.quantize.quant_recipes`` and the dtype weights get
    recipe = ""
    weight_dtype = ""

    def quant_config(self) -> Any:
        """litert-torch's ``QuantConfig`` for this method (its own recipe, applied to every op)."""
        recipes = require("litert_torch.generative.quantize.quant_recipes", "torch", "quantizing to TFLite")
        return getattr(recipes, self.recipe)()

    def apply(self, source: Path, out_dir: Path, settings: Any, ctx: StepContext) -> StepResult:
        from ..export import export_tflite

        out = Path(out_dir) / MODEL_FILE
        ctx.progress(f"litert-torch: converting with {self.recipe} (batch {settings.batch}, seq {settings.seq_len})")
        try:
            export_tflite(source, out, batch=settings.batch, seq_len=settings.seq_len,
                          quant_config=self.quant_config())
        except EdgevalError:
            raise
        except Exception as exc:  # noqa: BLE001  (litert/MLIR raise anything; the user gets one line)
            from ...runtimes._util import one_line

            raise ModelError(f"litert-torch cannot convert it with {self.recipe}: {one_line(exc)}",
                             path=source) from None
        measured = measure(out)
        self.check_stored(out, measured)
        return StepResult(out, measured={**measured, "recipe": self.recipe},
                          tools=tool_versions(), warnings=self.warnings(measured))

    def check_stored(self, path: Path, measured: dict[str, Any]) -> None:
        """Fail closed: the file must hold weights in the target dtype."""
        if not measured["weight_tensors"].get(self.weight_dtype):
            raise ModelError(f"{self.recipe} stored no {self.weight_dtype} weight tensor "
                             f"(weights: {measured['weight_tensors']})", path=path)

    def warnings(self, measured: dict[str, Any]) -> list[str]:
        """A line when more than :data:`FLOAT32_WARN_SHARE` of the weight elements stayed float32."""
        share = measured["float32_weight_share"]
        return [f"{share:.1%} of the weight elements stayed float32 ({measured['weight_tensors'].get('float32', 0)} "
                "tensors): only part of the model was quantized"] if share > FLOAT32_WARN_SHARE else []


class TFLiteFP16(_TFLiteQuantizer):
    name = "tflite-fp16"
    summary = "TFLite export (litert-torch) with float16 weights (weight-only, float32 compute)"
    recipe = "full_fp16_recipe"
    weight_dtype = "float16"


class TFLiteInt8(_TFLiteQuantizer):
    name = "tflite-int8"
    summary = "TFLite export (litert-torch) with dynamic-range int8 weights (per channel, hybrid kernels)"
    recipe = "full_dynamic_recipe"
    weight_dtype = "int8"


def measure(path: Path) -> dict[str, Any]:
    """Weight tensors by dtype (count and stored bytes), the float32 share of weight elements, file bytes."""
    from ...validators.tensorstats import tflite_stats

    weights = [s for s in tflite_stats(path) if s.is_weight]
    counts, stored = Counter(s.dtype for s in weights), Counter[str]()
    for stat in weights:
        stored[stat.dtype] += stat.stored_bytes
    elements = sum(s.elements for s in weights)
    float32 = sum(s.elements for s in weights if s.dtype == "float32")
    return {"weight_tensors": dict(counts), "weight_bytes": dict(stored), "weight_elements": elements,
            "float32_weight_share": float32 / elements if elements else 0.0, "bytes": path.stat().st_size}


def tool_versions() -> dict[str, str]:
    """Installed versions of the packages that did the conversion."""
    found = {}
    for package in _TOOLS:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


__all__ = ["TFLiteQuantizeSettings", "TFLiteFP16", "TFLiteInt8", "MODEL_FILE", "measure", "tool_versions"]
