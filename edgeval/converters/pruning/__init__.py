"""Pruning of the linear layers in an LLM's decoder blocks: random, magnitude, Wanda; unstructured or N:M.

    >>> from edgeval.converters.pruning import prune_directory
    >>> result = prune_directory("./model", "./pruned", "wanda", 0.5)
    >>> result.manifest["measured_sparsity"]

torch and transformers are imported only when a function needs them.
"""
from .api import METHODS, PruneResult, PruneSettings, prune_directory, prune_model
from .calibration import Calibration, CalibrationWarning, load_calibration
from .discovery import PrunableLayer, find_blocks, find_layers
from .manifest import MANIFEST_NAME, SparsityWarning
from .masks import Pattern, nm_mask, parse_pattern, unstructured_mask

__all__ = ["METHODS", "PruneResult", "PruneSettings", "prune_model", "prune_directory", "Calibration",
           "CalibrationWarning", "load_calibration", "PrunableLayer", "find_blocks", "find_layers", "MANIFEST_NAME",
           "SparsityWarning", "Pattern", "parse_pattern", "unstructured_mask", "nm_mask"]
