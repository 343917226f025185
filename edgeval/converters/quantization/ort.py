"""ONNX Runtime's quantizers as compressors: ``int8`` (dynamic), ``int8-static`` (calibrated) and ``int4``
(weight-only MatMulNBits). Each takes an ONNX file and writes one with quantized weights, through
``onnxruntime.quantization`` alone (no kernels of edgeval's own).

- ``int8``: ``quantize_dynamic``: MatMul weights to int8, activations quantized at run time
  (DynamicQuantizeLinear + MatMulInteger), and the token embedding (Gather) stored in int8, only the rows
  gathered dequantized: ORT's own default, and on SmolLM2-135M 165 MB instead of 250 MB with MatMul alone
  (``op_types: [MatMul]`` keeps the embedding in float32).
- ``int8-static``: ``quantize_static`` with activation ranges calibrated on token windows of a corpus
  (:mod:`.calib`); QDQ (QuantizeLinear/DequantizeLinear pairs) or QOperator (QLinearMatMul) format. Only the
  MatMuls with a weight by default (as dynamic int8 does); ``activation_matmuls: true`` quantizes attention's
  activation x activation MatMuls too. Per-tensor static activation ranges are lossy on a small LLM either
  way: SmolLM2-135M's next-token top-1 agreed with the float model on 1 of 12 prompts (mean KL 3.4; MinMax,
  16 x 128 tokens), 0 of 12 with Percentile or with attention's MatMuls quantized as well.
- ``int4``: ``MatMulNBitsQuantizer``: MatMul weights in blocks of ``block_size`` 4-bit values with a scale (and
  a zero point unless symmetric) per block. Algorithms: ``rtn`` (round to nearest, the default), ``default``
  (ORT's own blockwise quantizer; also 8 bits), ``k_quant`` (llama.cpp's k-quant scale search, on CPU) and
  ``hqq`` (half-quadratic, needs torch). GPTQ is not offered: it needs a calibration pass of the full model per
  layer and a reader of the model's own inputs, which this step does not run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...errors import BadInputError, require
from ...settings import Settings, setting
from ..compressor import StepContext
from . import calib
from . import graph as g
from .base import OrtQuantizer, quiet_ort, save_model, staged

_OP_TYPES = {"type": "string", "enum": ["MatMul", "Gather", "Gemm"]}
_BLOCK_SIZES = [16, 32, 64, 128, 256, 512, 1024]


@dataclass(frozen=True)
class Int8Settings(Settings):
    """``int8`` (quantize_dynamic) settings."""

    per_channel: bool = setting(False, "One scale per output channel of each weight (else one per tensor).")
    weight_type: Literal["QInt8", "QUInt8"] = setting("QInt8", "Integer type of the weights.")
    op_types: list[str] = setting(["MatMul", "Gather"], "Op types whose constant weights are quantized "
                                  "(Gather: the token embedding).", items=_OP_TYPES, minItems=1)
    reduce_range: bool = setting(False, "7-bit weights (for CPUs without VNNI, where 8-bit can saturate).")


@dataclass(frozen=True)
class Int8StaticSettings(Settings):
    """``int8-static`` (quantize_static) settings."""

    calibration: str = setting(calib.BUILTIN, "A text file, a folder of .txt files, a .jsonl with a \"text\" "
                                              "field, or 'builtin' for the corpus edgeval ships.", minLength=1)
    n_samples: int = setting(32, "Calibration windows.", minimum=1)
    seq_len: int = setting(128, "Tokens per calibration window.", minimum=8)
    seed: int = setting(0, "Seed of the windows' offsets.", minimum=0)
    calibrate_method: Literal["MinMax", "Entropy", "Percentile"] = setting("MinMax", "How activation ranges "
                                                                           "are chosen.")
    quant_format: Literal["QDQ", "QOperator"] = setting("QDQ", "QuantizeLinear/DequantizeLinear pairs, or "
                                                               "quantized operators (QLinearMatMul).")
    per_channel: bool = setting(False, "One weight scale per output channel.")
    reduce_range: bool = setting(False, "7-bit weights (for CPUs without VNNI).")
    op_types: list[str] = setting(["MatMul"], "Op types to quantize.", items=_OP_TYPES, minItems=1)
    activation_matmuls: bool = setting(False, "Also quantize the MatMuls of two activations (attention scores); "
                                              "by default only MatMuls with a weight are, as in dynamic int8.")


@dataclass(frozen=True)
class Int4Settings(Settings):
    """``int4`` (MatMulNBits weight-only) settings."""

    algorithm: Literal["rtn", "default", "k_quant", "hqq"] = setting("rtn", "rtn (round to nearest), default "
                                                                     "(ORT's blockwise), k_quant, hqq (torch).")
    block_size: int = setting(32, "Weights per block sharing a scale: a power of two from 16 to 1024.",
                              enum=_BLOCK_SIZES)
    symmetric: bool = setting(False, "Symmetric blocks (no zero points); rtn and default only.")
    accuracy_level: int | None = setting(None, "MatMulNBits accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, "
                                               "4 int8 activations; not with hqq.", minimum=0, maximum=4)
    bits: Literal[4, 8] = setting(4, "Bits per weight; 8 only with algorithm 'default'.")


class Int8Dynamic(OrtQuantizer):
    """int8 weights, activations quantized at run time (``quantize_dynamic``)."""

    name = "int8"
    summary = "ONNX Runtime dynamic int8: MatMul weights int8, activations quantized at run time"
    Settings = Int8Settings

    def quantize(self, source: Path, out: Path, settings: Any, before: g.GraphFacts,
                 ctx: StepContext) -> dict[str, Any]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with staged(source, out.parent, before) as model_path, quiet_ort():
            quantize_dynamic(model_path, out, op_types_to_quantize=list(settings.op_types),
                             per_channel=settings.per_channel, reduce_range=settings.reduce_range,
                             weight_type=QuantType[settings.weight_type],
                             use_external_data_format=before.external,
                             extra_options={"MatMulConstBOnly": True})
        return {}


class Int8Static(OrtQuantizer):
    """int8 weights and activations, activation ranges calibrated on a corpus (``quantize_static``)."""

    name = "int8-static"
    summary = "ONNX Runtime static int8: weights and activations int8, ranges calibrated on a text corpus"
    Settings = Int8StaticSettings

    def check(self, settings: Any) -> None:
        calib.check_corpus(settings.calibration)

    def quantize(self, source: Path, out: Path, settings: Any, before: g.GraphFacts,
                 ctx: StepContext) -> dict[str, Any]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        windows = calib.token_windows(source, settings.calibration, settings.n_samples, settings.seq_len,
                                      settings.seed)
        reader = calib.data_reader(before.inputs, windows.ids, source)
        ctx.progress(f"{self.name}: calibrating on {settings.n_samples} x {settings.seq_len} tokens "
                     f"({settings.calibrate_method})")
        with staged(source, out.parent, before) as model_path, quiet_ort():
            quantize_static(model_path, out, reader, quant_format=QuantFormat[settings.quant_format],
                            op_types_to_quantize=list(settings.op_types), per_channel=settings.per_channel,
                            reduce_range=settings.reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod[settings.calibrate_method],
                            nodes_to_exclude=[] if settings.activation_matmuls else list(before.activation_matmuls),
                            use_external_data_format=before.external)
        record = windows.to_json()
        return {"calibration": record, "activation_matmuls_left_float": 0 if settings.activation_matmuls
                else len(before.activation_matmuls), "warnings": [record["warning"]] if record["warning"] else []}


class Int4WeightOnly(OrtQuantizer):
    """Blockwise 4-bit (or 8-bit) weight-only MatMul quantization into MatMulNBits."""

    name = "int4"
    summary = "ONNX Runtime int4 weight-only: MatMul weights in 4-bit blocks (MatMulNBits), RTN by default"
    Settings = Int4Settings

    def check(self, settings: Any) -> None:
        if settings.bits != 4 and settings.algorithm != "default":
            raise BadInputError(f"int4: bits={settings.bits} needs algorithm 'default' (ONNX Runtime's "
                                f"{settings.algorithm} quantizer writes 4-bit blocks only)")
        if settings.symmetric and settings.algorithm in ("k_quant", "hqq"):
            raise BadInputError(f"int4: algorithm '{settings.algorithm}' is asymmetric only: drop symmetric")
        if settings.accuracy_level is not None and settings.algorithm == "hqq":
            raise BadInputError("int4: algorithm 'hqq' takes no accuracy_level")
        if settings.algorithm == "hqq":
            require("torch", "torch", "int4 quantization with algorithm 'hqq'")

    def quantize(self, source: Path, out: Path, settings: Any, before: g.GraphFacts,
                 ctx: StepContext) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        model = onnx.load(str(source))  # the one copy of the weights (external data read from beside it)
        g.fold_initializer_identities(model)
        quantizer = MatMulNBitsQuantizer(model, bits=settings.bits, block_size=settings.block_size,
                                         is_symmetric=settings.symmetric, accuracy_level=settings.accuracy_level,
                                         algo_config=self.algo_config(settings))
        del model
        with quiet_ort():
            quantizer.process()
        result = quantizer.model.model
        dropped = g.drop_unused_initializers(result)
        save_model(result, out, before.external)
        return {"algorithm": settings.algorithm, "bits": settings.bits, "block_size": settings.block_size,
                "unused_float_weights_dropped": dropped}

    @staticmethod
    def algo_config(settings: Any) -> Any:
        """ORT's configuration object of the chosen algorithm."""
        from onnxruntime.quantization import matmul_nbits_quantizer as nbits

        if settings.algorithm == "rtn":
            return nbits.RTNWeightOnlyQuantConfig()
        if settings.algorithm == "k_quant":
            return nbits.KQuantWeightOnlyQuantConfig()
        if settings.algorithm == "hqq":
            return nbits.HQQWeightOnlyQuantConfig(block_size=settings.block_size, bits=settings.bits)
        return nbits.DefaultWeightOnlyQuantConfig(block_size=settings.block_size, is_symmetric=settings.symmetric,
                                                  accuracy_level=settings.accuracy_level, bits=settings.bits)


__all__ = ["Int8Settings", "Int8StaticSettings", "Int4Settings", "Int8Dynamic", "Int8Static", "Int4WeightOnly"]
