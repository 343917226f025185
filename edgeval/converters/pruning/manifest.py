"""Measure what pruning did and describe it in the ``pruning.json`` manifest.

Measured sparsity counts the zeros actually present in each weight after pruning (zeros that were there before
count too), so it is the number a deployment cares about, not the number that was asked for. A layer whose
measured sparsity is more than :data:`TOLERANCE` (0.5 points) away from the requested one raises a loud warning,
which is also recorded under ``warnings`` in the manifest.
"""
from __future__ import annotations

import platform
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from ..._version import __version__
from .discovery import PrunableLayer

if TYPE_CHECKING:
    from torch import nn

MANIFEST_NAME = "pruning.json"
SCHEMA = "edgeval.pruning/1"
TOLERANCE = 0.005


class SparsityWarning(UserWarning):
    """Measured sparsity of a layer is more than 0.5 points away from the requested sparsity."""


def layer_stats(layer: PrunableLayer, requested: float) -> dict[str, Any]:
    """Shape, element count, zeros and requested/measured sparsity of one pruned layer."""
    weight = layer.module.weight.detach()
    zeros = int((weight == 0).sum())
    return {"shape": [int(d) for d in layer.matrix.shape], "numel": int(weight.numel()), "zeros": zeros,
            "requested_sparsity": requested, "measured_sparsity": zeros / weight.numel()}


def _zeros(tensors: Sequence[Any]) -> tuple[int, int]:
    return sum(int((t == 0).sum()) for t in tensors), sum(int(t.numel()) for t in tensors)


def model_totals(model: "nn.Module", all_block_linears: Sequence[PrunableLayer]) -> dict[str, Any]:
    """Zeros over every block linear (pruned or not) and over every parameter of the model (tied ones once)."""
    block_zeros, block_numel = _zeros([layer.module.weight.detach() for layer in all_block_linears])
    model_zeros, model_numel = _zeros([p.detach() for p in model.parameters()])
    return {"block_linear_sparsity": block_zeros / block_numel, "block_linear_params": block_numel,
            "model_sparsity": model_zeros / model_numel, "model_params": model_numel}


def check_layers(per_layer: dict[str, dict[str, Any]]) -> list[str]:
    """One warning line per layer whose measured sparsity misses the requested one by more than 0.5 points."""
    lines = []
    for name, stats in per_layer.items():
        gap = stats["measured_sparsity"] - stats["requested_sparsity"]
        if abs(gap) > TOLERANCE:
            lines.append(f"{name}: measured sparsity {stats['measured_sparsity']:.4f} differs from requested "
                         f"{stats['requested_sparsity']:.4f} by {100 * gap:+.2f} points")
    for line in lines:
        warnings.warn(line, SparsityWarning, stacklevel=5)  # points at prune_model's caller
    return lines


def environment() -> dict[str, Any]:
    """Versions that a pruning run depends on."""
    import torch
    import transformers

    return {"edgeval": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def build_manifest(settings: dict[str, Any], layers: Sequence[PrunableLayer], requested: float,
                   totals: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The manifest: settings and ``extra`` first, then overall and per-layer sparsity, warnings (the calibration
    shortfall, if any, then the layers'), environment."""
    per_layer = {layer.name: layer_stats(layer, requested) for layer in layers}
    calibration = extra.get("calibration") or {}
    calibration_warnings = [calibration["warning"]] if calibration.get("warning") else []
    zeros = sum(s["zeros"] for s in per_layer.values())
    numel = sum(s["numel"] for s in per_layer.values())
    return {"schema": SCHEMA, **settings, **extra, "requested_sparsity": requested,
            "measured_sparsity": zeros / numel, "pruned_params": numel, "pruned_zeros": zeros, **totals,
            "warnings": calibration_warnings + check_layers(per_layer), "layers_included": list(per_layer),
            "layers": per_layer, "edgeval_version": __version__, "environment": environment()}
