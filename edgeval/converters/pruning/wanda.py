"""Wanda (Sun et al., 2023): prune by ``|W_ij| * ||X_j||_2``, block by block, through already-pruned blocks.

What this module does, step by step:

1. **Block calls.** One full forward pass of the first micro-batch of windows records, for every decoder block, the
   positional and keyword arguments the model passes besides the hidden states (attention mask, rotary
   ``position_embeddings``, ``position_ids``, …). Recording every block, not just block 0, keeps models whose
   blocks differ (Gemma 3 and Qwen2 sliding-window layers get their own masks) right. The windows are unpadded and
   equally long, so these arguments do not depend on the window's content and are reused for all windows.
2. **Block-0 inputs.** Each micro-batch of windows runs through the model with a pre-hook on block 0 that stores
   its hidden-state input and raises a stop exception, so only the embedding (and whatever precedes block 0) runs.
3. **Stream through the blocks**, holding one ``(n_samples, seq_len, hidden)`` buffer (and one micro-batch's
   activations), no more:
   a. forward hooks on every linear of the block (q, k, v, o, gate, up, down — whatever the block holds)
      accumulate the sum over all calibration tokens of ``x_j**2`` per input feature ``j``; one pass over the
      *unpruned* block records the inputs of all its sublayers (as in the paper and its reference code);
   b. every selected linear of the block is then pruned with the score ``|W_ij| * sqrt(sum_t x_tj**2)``;
   c. the *pruned* block runs again on the buffer and its outputs overwrite it: they are the next block's inputs.
   So block ``i`` is calibrated on activations that went through the already-pruned blocks ``0..i-1``.

Windows run in micro-batches of up to :data:`MICRO_BATCH` (the largest divisor of ``n_samples`` not above it, so
every call has the batch size the block calls were recorded with); the reference code runs them one at a time,
which gives the same sums up to float rounding, about 1.6 times slower on CPU. Per-window sums of squares are
float32; the running total over windows is float64. Sublayers fed the same tensor (q/k/v, gate/up) share one sum.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from ...errors import ModelError
from .discovery import PrunableLayer

if TYPE_CHECKING:
    import torch
    from torch import nn

#: called with the (out, in) score matrix of a layer, returns its keep-mask
Selector = Callable[["torch.Tensor", PrunableLayer], "torch.Tensor"]
Progress = Callable[[int, int, str], None]
MICRO_BATCH = 8


class _Stop(Exception):
    """Raised by a block pre-hook to end a forward pass once what it needed has been recorded."""


@dataclass(frozen=True)
class BlockCall:
    """How the model calls a block, minus the hidden states: replay with :meth:`run`."""

    args: tuple
    kwargs: dict
    hidden_as_kwarg: bool

    @classmethod
    def split(cls, args: tuple, kwargs: dict) -> tuple["torch.Tensor", "BlockCall"]:
        """Separate the hidden states (first positional or ``hidden_states=``) from the rest of a block call."""
        if args:
            return args[0], cls(tuple(args[1:]), dict(kwargs), False)
        rest = dict(kwargs)
        return rest.pop("hidden_states"), cls((), rest, True)

    def run(self, block: "nn.Module", hidden: "torch.Tensor") -> "torch.Tensor":
        """The block's output hidden states for ``hidden`` (tuple outputs give their first element)."""
        if self.hidden_as_kwarg:
            out = block(*self.args, hidden_states=hidden, **self.kwargs)
        else:
            out = block(hidden, *self.args, **self.kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out


def _forward(model: "nn.Module", ids: "torch.Tensor") -> None:
    model(input_ids=ids, use_cache=False)


def micro_batch(n_samples: int, limit: int = MICRO_BATCH) -> int:
    """The largest divisor of ``n_samples`` that is at most ``limit``."""
    return max(d for d in range(1, min(n_samples, limit) + 1) if n_samples % d == 0)


def _batches(n_samples: int, size: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, n_samples, size)]


def capture_block_calls(model: "nn.Module", blocks: "nn.ModuleList", ids: "torch.Tensor") -> list[BlockCall]:
    """Run ``ids`` (one micro-batch) through the model up to the last block and record each block's call.

    The pass stops on entering the last block, so the final norm and the (vocabulary-sized) logits never run.
    """
    calls: dict[int, BlockCall] = {}

    def recorder(index: int):
        def hook(_module, args, kwargs):
            calls[index] = BlockCall.split(args, kwargs)[1]
            if index == len(blocks) - 1:
                raise _Stop
        return hook

    handles = [block.register_forward_pre_hook(recorder(i), with_kwargs=True) for i, block in enumerate(blocks)]
    try:
        _forward(model, ids)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i in range(len(blocks)) if i not in calls]
    if missing:
        raise ModelError(f"{type(model).__name__}.forward never called decoder block(s) {missing}: cannot "
                         "replay them for calibration")
    return [calls[i] for i in range(len(blocks))]


def capture_block0_inputs(model: "nn.Module", block0: "nn.Module", ids: "torch.Tensor") -> "torch.Tensor":
    """The hidden states entering block 0 for every window: ``(n_samples, seq_len, hidden)``."""
    import torch

    inputs: list[torch.Tensor] = []

    def hook(_module, args, kwargs):
        inputs.append(BlockCall.split(args, kwargs)[0].detach())
        raise _Stop

    handle = block0.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for part in _batches(ids.shape[0], micro_batch(ids.shape[0])):
            try:
                _forward(model, ids[part])
            except _Stop:
                pass
    finally:
        handle.remove()
    return torch.cat(inputs, dim=0)


def record_input_norms(block: "nn.Module", call: BlockCall, layers: Sequence[PrunableLayer],
                       hidden: "torch.Tensor") -> dict[str, "torch.Tensor"]:
    """Sum over all tokens of ``x_j**2`` for each layer's input feature ``j`` (float64), in one pass of ``block``."""
    import torch

    sums = {layer.name: torch.zeros(layer.in_features, dtype=torch.float64) for layer in layers}
    last: list = [None, None]  # (input tensor, its sum of squares): q/k/v and gate/up see the same tensor

    def accumulator(name: str):
        def hook(_module, inputs, _output):
            if inputs[0] is not last[0]:
                x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
                last[:] = [inputs[0], (x * x).sum(dim=0).to("cpu", torch.float64)]
            sums[name] += last[1]
        return hook

    handles = [layer.module.register_forward_hook(accumulator(layer.name)) for layer in layers]
    try:
        for part in _batches(hidden.shape[0], micro_batch(hidden.shape[0])):
            call.run(block, hidden[part])
    finally:
        for handle in handles:
            handle.remove()
    return sums


def wanda_scores(layer: PrunableLayer, sum_squares: "torch.Tensor") -> "torch.Tensor":
    """``|W_ij| * ||X_j||_2`` as an ``(out, in)`` float64 matrix."""
    weight = layer.matrix.detach().abs().to("cpu", dtype=sum_squares.dtype)
    return weight * sum_squares.sqrt().unsqueeze(0)


def apply_mask(layer: PrunableLayer, keep: "torch.Tensor") -> None:
    """Zero the weights of ``layer`` where ``keep`` (``(out, in)``) is False, in place."""
    matrix = layer.matrix
    matrix.mul_(keep.to(device=matrix.device, dtype=matrix.dtype))


def _advance(block: "nn.Module", call: BlockCall, hidden: "torch.Tensor") -> None:
    """Replace the windows' hidden states with the (pruned) block's output, one micro-batch at a time."""
    for part in _batches(hidden.shape[0], micro_batch(hidden.shape[0])):
        hidden[part] = call.run(block, hidden[part])


def prune_wanda(model: "nn.Module", blocks: "nn.ModuleList", layers: Sequence[PrunableLayer], ids: "torch.Tensor",
                select: Selector, progress: Progress | None = None) -> None:
    """Prune ``layers`` of ``model`` in place with Wanda, calibrated on ``ids`` ``(n_samples, seq_len)``."""
    import torch

    device = next(model.parameters()).device
    ids = ids.to(device)
    with torch.no_grad():
        calls = capture_block_calls(model, blocks, ids[:micro_batch(ids.shape[0])])
        hidden = capture_block0_inputs(model, blocks[0], ids)
        last = max(layer.block for layer in layers)
        for index in range(last + 1):
            mine = [layer for layer in layers if layer.block == index]
            if mine:
                sums = record_input_norms(blocks[index], calls[index], mine, hidden)
                for layer in mine:
                    apply_mask(layer, select(wanda_scores(layer, sums[layer.name]), layer))
            if index < last:
                _advance(blocks[index], calls[index], hidden)
            if progress:
                progress(index + 1, last + 1, f"block {index}")
