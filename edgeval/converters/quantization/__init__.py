"""Quantizers: ONNX Runtime's int8 (dynamic, static) and int4 weight-only (MatMulNBits) as compressors
(:class:`edgeval.converters.compressor.Compressor`), an ONNX file in and an ONNX file out.

onnxruntime and onnx are imported when a quantizer runs, not when this package is imported.
"""
from .ort import Int4Settings, Int4WeightOnly, Int8Dynamic, Int8Settings, Int8Static, Int8StaticSettings

__all__ = ["Int8Dynamic", "Int8Static", "Int4WeightOnly", "Int8Settings", "Int8StaticSettings", "Int4Settings"]
