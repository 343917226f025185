"""edgeval's own plugin: built-in validators and runtimes, registered through the ``edgeval`` entry point group."""
from __future__ import annotations

import importlib

from .plugins import hookimpl

#: validator name -> "module:Class"; imported lazily so that listing validators stays cheap
BUILTIN_VALIDATORS = {
    "size": "edgeval.validators.size:SizeValidator",
    "latency": "edgeval.validators.latency:LatencyValidator",
    "bbq": "edgeval.validators.bbq.validator:BBQValidator",
    "perplexity": "edgeval.validators.perplexity:PerplexityValidator",
    "parity": "edgeval.validators.parity:ParityValidator",
    # second bias lenses (issue 12), not in the default `validators` list
    "crows_pairs": "edgeval.lenses.crows:CrowsPairsValidator",
    "stereoset": "edgeval.lenses.stereoset:StereoSetValidator",
}


#: compressor name -> "module:Class" (pruners, then quantizers)
BUILTIN_COMPRESSORS = {
    "random": "edgeval.converters.pruning.compressors:RandomPruner",
    "magnitude": "edgeval.converters.pruning.compressors:MagnitudePruner",
    "wanda": "edgeval.converters.pruning.compressors:WandaPruner",
    "int8": "edgeval.converters.quantization.ort:Int8Dynamic",
    "int8-static": "edgeval.converters.quantization.ort:Int8Static",
    "int4": "edgeval.converters.quantization.ort:Int4WeightOnly",
    "tflite-fp16": "edgeval.converters.quantization.tflite:TFLiteFP16",
    "tflite-int8": "edgeval.converters.quantization.tflite:TFLiteInt8",
}


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)()


@hookimpl
def edgeval_validators():
    return [_load(target) for target in BUILTIN_VALIDATORS.values()]


@hookimpl
def edgeval_runtimes():
    from .runtimes.registry import builtin_specs

    return builtin_specs()


@hookimpl
def edgeval_compressors():
    return [_load(target) for target in BUILTIN_COMPRESSORS.values()]
