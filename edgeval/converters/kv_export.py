"""What makes a KV-cache ONNX export cheap to run on prompt trees: grouped attention and a last-logits switch.

ONNX Runtime's cost per cached step on a small model is dominated by weight traffic and by copies proportional to
the past, not by the attention FLOPs. Two changes, both exact (same arithmetic, fewer copies / less work):

- **grouped attention** (:func:`grouped_attention`): for models with grouped-query attention (fewer key/value
  heads than query heads), transformers' eager attention repeats every key and value head (``repeat_kv``: an
  ``Expand`` and a copy of the whole past, per layer and call). Here the query heads that share a key/value head
  are folded into the query's sequence axis instead, so one MatMul against the un-repeated keys serves the whole
  group; masks, scaling and softmax are the eager ones, so arbitrary (left-padded, compacted) masks still work.
  ORT's transformer optimizer does not fuse the exported eager graph (no MultiHeadAttention match), and its
  GroupQueryAttention op derives the mask from per-row sequence lengths (right padding), which the prompt tree's
  left-padded compacted pasts are not: so the fusion is done here, at the source.
- **last-logits switch** (:func:`add_last_logits_switch`): ONNX Runtime runs every node of the graph whatever
  outputs are asked for, so a graph whose ``logits`` output spans every position pays the LM head at every new
  token even when only the last one is read. The switch is an overridable initializer ``logits_last_only``
  (int64 ``[1]``, default 0: all positions, as before); fed 1, ``logits`` is computed for the last position only
  (shape ``(batch, 1, vocab)``). A runtime that does not know the input never sees it (ORT lists it among the
  overridable initializers, not the inputs). A ``next_token_logits`` output becomes a slice of ``logits``, and the
  second LM head that computed it is dropped (it ran at every call, whatever was asked for).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

#: model types whose attention module calls the eager attention function with (module, q, k, v, mask, scaling,
#: dropout) and nothing else that changes the result (no soft-capping, no sinks): grouped attention is exact there
GROUPED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3"})
GROUPED_NAME = "edgeval_grouped"
SWITCH_INPUT = "logits_last_only"
NEXT_OUTPUT = "next_token_logits"


def grouped_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float,
                      dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """Eager attention without repeating key/value heads: ``(batch, seq, heads, head_dim)`` output, as
    transformers' attention functions return it. Query head ``h`` uses key/value head ``h // group`` (repeat_kv's
    order), so the ``group`` query heads of a key/value head are laid out along the sequence axis."""
    import torch

    batch, heads, seq, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    scores = torch.matmul(query.reshape(batch, kv_heads, group * seq, dim), key.transpose(2, 3)) * scaling
    scores = scores.reshape(batch, heads, seq, -1)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(probs.reshape(batch, kv_heads, group * seq, -1), value)
    return out.reshape(batch, heads, seq, dim).transpose(1, 2).contiguous(), None


def supports_grouped(model: Any) -> bool:
    """Whether :func:`grouped_attention` is exact for ``model`` (a listed model type with grouped KV heads)."""
    config = model.config.get_text_config()
    kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return config.model_type in GROUPED_MODEL_TYPES and kv < config.num_attention_heads


@contextlib.contextmanager
def grouped(model: Any, enabled: bool) -> Iterator[bool]:
    """Within the block, ``model`` attends with :func:`grouped_attention` when ``enabled`` and supported; yields
    whether it does. The model's attention implementation is restored afterwards."""
    if not (enabled and supports_grouped(model)):
        yield False
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(GROUPED_NAME, grouped_attention)
    AttentionMaskInterface.register(GROUPED_NAME, eager_mask)  # eager's additive float mask, causal included
    before = model.config._attn_implementation
    model.set_attn_implementation(GROUPED_NAME)
    try:
        yield True
    finally:
        model.set_attn_implementation(before)


def _lm_head(graph: Any, output: str) -> Any:
    """The MatMul/Gemm that computes graph output ``output``, found by walking back through one-input
    elementwise ops (soft-capping: Div, Tanh, Mul; Cast); None when there is none."""
    producers = {out: node for node in graph.node for out in node.output}
    name = output
    for _ in range(8):
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type in ("MatMul", "Gemm"):
            return node
        if node.op_type not in ("Div", "Tanh", "Mul", "Cast", "Identity"):
            return None
        name = node.input[0]
    return None


def add_last_logits_switch(path: Path) -> bool:
    """Rewrite the ONNX model at ``path`` so that its ``logits`` output covers the last position only when the
    overridable input ``logits_last_only`` is fed 1 (default 0: every position). Returns False (file unchanged)
    when the graph has no ``logits`` output computed by a MatMul. Weights stay where they are (external data
    untouched: only the graph is rewritten)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    head = _lm_head(graph, "logits")
    if head is None or any(i.name == SWITCH_INPUT for i in graph.input):
        return False
    import numpy as np

    hidden, p = head.input[0], "/edgeval_last_logits/"
    graph.initializer.append(numpy_helper.from_array(np.zeros(1, np.int64), SWITCH_INPUT))
    graph.input.append(helper.make_tensor_value_info(SWITCH_INPUT, TensorProto.INT64, [1]))
    consts = {"one": 1, "axis": 1, "end": np.iinfo(np.int64).max}
    for key, value in consts.items():
        graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), p + key))
    nodes = [
        helper.make_node("Shape", [hidden], [p + "seq"], start=1, end=2, name=p + "Shape"),
        helper.make_node("Sub", [p + "seq", p + "one"], [p + "last"], name=p + "Sub"),
        helper.make_node("Mul", [p + "last", SWITCH_INPUT], [p + "start"], name=p + "Mul"),
        helper.make_node("Slice", [hidden, p + "start", p + "end", p + "axis"], [p + "hidden"], name=p + "Slice"),
    ]
    at = list(graph.node).index(head)  # the new nodes go right before the head: the graph stays sorted
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    head.input[0] = p + "hidden"
    _next_from_logits(graph, p, helper)
    onnx.save_model(model, str(path))
    return True


def _next_from_logits(graph: Any, p: str, helper: Any) -> None:
    """Make the ``next_token_logits`` output (when the graph has one) a slice of ``logits``' last position, and
    drop the second LM head that computed it: ONNX Runtime runs every node whatever outputs are asked for, so
    that head cost a full head pass per call (and per position-free forward pass) for nothing. With the switch at
    1 ``logits`` is already the last position alone; at 0 the slice is the last row of the full logits, the
    number the second head computed."""
    if NEXT_OUTPUT not in {o.name for o in graph.output}:
        return
    for node in graph.node:
        for k, name in enumerate(node.output):
            if name == NEXT_OUTPUT:
                node.output[k] = p + "replaced_next"
    # the start computed in the graph (as the switch's): with constant starts ONNX Runtime's shape inference reads
    # them, and cannot where a model keeps even small tensors as external data
    graph.node.extend([
        helper.make_node("Shape", ["logits"], [p + "logits_seq"], start=1, end=2, name=p + "NextShape"),
        helper.make_node("Sub", [p + "logits_seq", p + "one"], [p + "logits_last"], name=p + "NextSub"),
        helper.make_node("Slice", ["logits", p + "logits_last", p + "end", p + "axis"], [NEXT_OUTPUT],
                         name=p + "NextSlice"),
    ])
    _drop_dead_nodes(graph)


def _drop_dead_nodes(graph: Any) -> None:
    """Remove nodes none of whose outputs is read (by a node, a subgraph or a graph output), repeatedly, and the
    initializers only they read."""
    def used_in(g: Any) -> set[str]:
        names = {i for node in g.node for i in node.input}
        for node in g.node:
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    names |= used_in(sub) | {o.name for o in sub.output}
        return names

    dropped: set[str] = set()
    while True:
        read = used_in(graph) | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(name in read for name in node.output if name)]
        if not dead:
            break
        for node in dead:
            dropped.update(node.input)
            graph.node.remove(node)
    read = used_in(graph) | {o.name for o in graph.output} | {i.name for i in graph.input}
    for tensor in [t for t in graph.initializer if t.name in dropped and t.name not in read]:
        graph.initializer.remove(tensor)
