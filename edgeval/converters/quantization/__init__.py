"""Quantizers as compressors (:class:`edgeval.converters.compressor.Compressor`): ONNX Runtime's int8 (dynamic,
static) and int4 weight-only (MatMulNBits), an ONNX file in and an ONNX file out (:mod:`.ort`); TFLite fp16 and
dynamic-range int8 through litert-torch's quantization recipes, a float model in and a ``.tflite`` out
(:mod:`.tflite`).

onnxruntime, onnx, torch and litert-torch are imported when a quantizer runs, not when this package is imported.
"""
from .ort import Int4Settings, Int4WeightOnly, Int8Dynamic, Int8Settings, Int8Static, Int8StaticSettings

__all__ = ["Int8Dynamic", "Int8Static", "Int4WeightOnly", "Int8Settings", "Int8StaticSettings", "Int4Settings"]
