"""Find the prunable linear layers inside a causal LM's decoder blocks, whatever the architecture.

The decoder blocks are found generically: the ``nn.ModuleList`` whose members all share one class and that holds
the most parameters (``model.layers`` in Llama, Qwen2, Gemma, Phi-3, Mistral; ``transformer.h`` in GPT-2). Any
list nested inside a block (MoE experts, say) is smaller than the block list itself, so it never wins.

Inside each block every ``nn.Linear`` and every transformers ``Conv1D`` (GPT-2; its weight is stored transposed,
``(in, out)``) is a candidate. Embeddings and ``lm_head`` sit outside the blocks and are never pruned (with tied
embeddings, pruning ``lm_head`` would prune the input embeddings too).

Include / exclude patterns select among the candidates. A pattern prefixed ``re:`` is a regular expression
searched in the full name; any other pattern is an ``fnmatch`` glob matched against the full name
(``model.layers.0.mlp.down_proj``) or the name inside the block (``mlp.down_proj``).
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ...errors import BadInputError, ModelError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class PrunableLayer:
    """One prunable weight matrix: its module, where it lives, and whether its weight is stored ``(in, out)``."""

    name: str
    local_name: str
    block: int
    module: Any
    transposed: bool

    @property
    def matrix(self) -> "torch.Tensor":
        """The weight as an ``(out_features, in_features)`` view (shares storage with the module's weight)."""
        weight = self.module.weight.data
        return weight.t() if self.transposed else weight

    @property
    def in_features(self) -> int:
        return int(self.matrix.shape[1])


def find_blocks(model: "nn.Module") -> tuple[str, "nn.ModuleList"]:
    """Name and module of the decoder-block list. Raises :class:`ModelError` when there is none."""
    from torch import nn

    best: tuple[int, int, str, Any] | None = None
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if size and (best is None or (size, len(module)) > best[:2]):
            best = (size, len(module), name, module)
    if best is None:
        raise ModelError(f"{type(model).__name__} has no list of identical decoder blocks (nn.ModuleList): "
                         "cannot tell which layers to prune")
    return best[2], best[3]


def _conv1d_class() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return None
    return Conv1D


def _candidates(prefix: str, blocks: "nn.ModuleList") -> list[PrunableLayer]:
    from torch import nn

    conv1d = _conv1d_class()
    found = []
    for index, block in enumerate(blocks):
        for local, module in block.named_modules():
            transposed = conv1d is not None and isinstance(module, conv1d)
            if not (transposed or isinstance(module, nn.Linear)) or module.weight.dim() != 2:
                continue
            name = f"{prefix}.{index}.{local}" if prefix else f"{index}.{local}"
            found.append(PrunableLayer(name, local, index, module, transposed))
    return found


def _compile(patterns: Iterable[str] | str | None, what: str) -> list[Any]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    compiled: list[Any] = []
    for pattern in patterns:
        if pattern.startswith("re:"):
            try:
                compiled.append(re.compile(pattern[3:]))
            except re.error as exc:
                raise BadInputError(f"{what} pattern {pattern!r} is not a valid regular expression: {exc}") from None
        else:
            compiled.append(pattern)
    return compiled


def _matches(layer: PrunableLayer, patterns: Sequence[Any]) -> bool:
    for pattern in patterns:
        if isinstance(pattern, str):
            if fnmatch.fnmatchcase(layer.name, pattern) or fnmatch.fnmatchcase(layer.local_name, pattern):
                return True
        elif pattern.search(layer.name):
            return True
    return False


def find_layers(model: "nn.Module", include: Iterable[str] | str | None = None,
                exclude: Iterable[str] | str | None = None) -> list[PrunableLayer]:
    """The block linears to prune, block by block in module order; ``include``/``exclude`` filter them (see module doc).

    Raises :class:`ModelError` when the blocks hold no linear layer, :class:`BadInputError` when the patterns
    leave nothing to prune or are invalid.
    """
    prefix, blocks = find_blocks(model)
    layers = _candidates(prefix, blocks)
    if not layers:
        raise ModelError(f"no prunable linear layers (nn.Linear or Conv1D) found in the decoder blocks "
                         f"'{prefix}' of {type(model).__name__}")
    wanted, unwanted = _compile(include, "include"), _compile(exclude, "exclude")
    chosen = [layer for layer in layers if (not wanted or _matches(layer, wanted)) and not _matches(layer, unwanted)]
    if not chosen:
        example = ", ".join(sorted({layer.local_name for layer in layers})[:8])
        raise BadInputError(f"include/exclude patterns leave no layer to prune ({len(layers)} candidates, "
                            f"named like: {example})")
    return chosen
