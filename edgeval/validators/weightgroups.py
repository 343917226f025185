"""Layer groups and roles of stored tensors, and the size figures per group.

A tensor's **group** says which part of a transformer it belongs to: the block linears ``q``, ``k``, ``v``, ``o``,
``gate``, ``up``, ``down`` (and the fused ``qkv`` / ``gate_up``), ``embeddings``, ``lm_head``, ``norm`` or
``other``. It is read from a name: the tensor's own (Hugging Face names say it directly), or, for ONNX, the names
of the nodes that consume it (:mod:`edgeval.validators.onnxquant`), because the legacy exporter calls transposed
MatMul weights ``onnx::MatMul_1234`` and the dynamo exporter ``val_80``.

A tensor's **role** is ``weight``, ``scale``, ``zero_point`` or ``other``; an empty role means "decide by dtype and
shape" (floating point or int8 with two or more dimensions is a weight), which is what a plain float model gets.

:func:`group_figures` sums, per group: logical weight parameters and their measured zeros, bytes of every tensor
in the group, and bits per weight (stored bits of weights, scales and zero points over logical weight parameters).
A group holding a weight that could not be measured reports ``None`` for its sparsity and bits per weight.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    from .tensorstats import TensorStat

#: groups in the order reports list them
GROUPS = ("q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down", "embeddings", "lm_head", "norm", "other")
#: groups shown before the "·" in the compact sparsity line; the rest come after it
BLOCK_GROUPS = GROUPS[:9]
_SEP = r"(?:^|[^a-z0-9])"
_END = r"(?:[^a-z0-9]|$)"
#: (group, alternatives) in the order they are tried: fused and specific names before general ones
_ALIASES = (
    ("qkv", r"qkv_proj|c_attn|query_key_value|wqkv|qkv"),
    ("gate_up", r"gate_up_proj"),
    ("q", r"q_proj|wq|attn_q"),
    ("k", r"k_proj|wk|attn_k"),
    ("v", r"v_proj|wv|attn_v"),
    ("o", r"o_proj|out_proj|wo|attn_output|attn[a-z_]*[^a-z0-9]c_proj|(?:attention|attn)[^a-z0-9]dense"),
    ("gate", r"gate_proj|w1|ffn_gate"),
    ("up", r"up_proj|w3|c_fc|fc1|dense_h_to_4h|ffn_up"),
    ("down", r"down_proj|w2|fc2|dense_4h_to_h|ffn_down|mlp[^a-z0-9]c_proj"),
    ("lm_head", r"lm_head|embed_out|^output\.weight"),
    ("embeddings", r"embed_tokens|embed_positions|wte|wpe|word_embeddings|tok_embeddings|token_embd|embeddings?"),
    ("norm", r"[a-z_]*norm|ln_f|ln_[0-9]"),
)
_PATTERNS = tuple((group, re.compile(f"{_SEP}(?:{alts}){_END}")) for group, alts in _ALIASES)
_SCALE = re.compile(r"(?:[._]scales?|[._]weight_scale)$")
_ZERO_POINT = re.compile(r"(?:[._]zero_points?|[._]zp|[._]qzeros)$")
_QUANTIZED = re.compile(r"(?:[._]quantized|[._]qweight)$")


def group_of(text: str) -> str | None:
    """The layer group a name (or a node's name and scope) points at, or None when it names none."""
    low = text.lower()
    return next((group for group, pattern in _PATTERNS if pattern.search(low)), None)


def role_from_name(name: str) -> str:
    """``scale`` / ``zero_point`` / ``weight`` from a quantizer's naming, or ``""`` (decide by dtype and shape)."""
    low = name.lower()
    if _SCALE.search(low):
        return "scale"
    if _ZERO_POINT.search(low):
        return "zero_point"
    return "weight" if _QUANTIZED.search(low) else ""


# -- figures per group ------------------------------------------------------------------------------------
#: storage figures (see :func:`storage_summary`); ``None`` when tensors are not measured
QUANT_KEYS = ("bits_per_weight", "weight_storage", "quantized_weight_bytes", "scale_bytes", "zero_point_bytes",
              "groups", "unmeasured")


def storage_summary(stats: Sequence[TensorStat]) -> dict[str, Any]:
    """How the weights are stored: bits per logical weight (weights, scales and zero points; ``None`` when a
    weight is unmeasured), logical parameters per storage type, quantized/scale/zero-point bytes, the figures per
    layer group, and the unmeasured tensors with the reason."""
    weights = [s for s in stats if s.is_weight]
    storage: dict[str, int] = {}
    for s in weights:
        storage[s.storage or s.dtype] = storage.get(s.storage or s.dtype, 0) + s.elements
    logical = sum(s.elements for s in weights)
    complete = logical and not any(s.weight_role and not s.measured for s in stats)
    stored = sum(s.stored_bytes for s in stats if s.weight_storage_part)
    integer = [s for s in weights if not (s.storage or s.dtype).startswith(("float", "bfloat"))]
    return {"bits_per_weight": 8 * stored / logical if complete else None, "weight_storage": storage,
            "quantized_weight_bytes": sum(s.stored_bytes for s in integer),
            "scale_bytes": sum(s.stored_bytes for s in stats if s.role == "scale"),
            "zero_point_bytes": sum(s.stored_bytes for s in stats if s.role == "zero_point"),
            "groups": group_figures(stats),
            "unmeasured": [{"name": s.name, "why": s.note or f"{s.dtype} tensors are not decoded"}
                           for s in stats if not s.measured][:20]}


def group_figures(stats: Iterable[TensorStat]) -> dict[str, dict[str, Any]]:
    """``{group: {params, zeros, sparsity, bytes, bits_per_weight, tensors, unmeasured_weights}}``, in
    :data:`GROUPS` order, for the groups that hold at least one tensor."""
    sums: dict[str, dict[str, int]] = {}
    for s in stats:
        g = sums.setdefault(s.group, dict.fromkeys(("params", "zeros", "bytes", "stored", "tensors", "unmeasured"), 0))
        g["tensors"] += 1
        g["bytes"] += s.stored_bytes
        g["stored"] += s.stored_bytes if s.weight_storage_part else 0
        if s.weight_role and s.measured:
            g["params"] += s.elements
            g["zeros"] += s.zeros
        elif s.weight_role:
            g["unmeasured"] += 1
    return {group: _finish(sums[group]) for group in GROUPS if group in sums}


def _finish(g: dict[str, int]) -> dict[str, Any]:
    known = g["params"] > 0 and not g["unmeasured"]
    return {"params": g["params"], "zeros": g["zeros"],
            "sparsity": g["zeros"] / g["params"] if known else None, "bytes": g["bytes"],
            "bits_per_weight": 8 * g["stored"] / g["params"] if known else None,
            "tensors": g["tensors"], "unmeasured_weights": g["unmeasured"]}


def compact_pct(share: float) -> str:
    """A share in whole percent for the one-line group view; never rounds a nonzero share to 0 % or 100 %."""
    if 0 < share < 0.005:
        return "<1%"
    if 0.995 <= share < 1:
        return ">99%"
    return f"{100 * share:.0f}%"


def sparsity_line(groups: Any) -> str:
    """``q 50% k 50% … down 0% · embeddings 0% lm_head 0%`` from a results ``groups`` mapping (``?`` where a group
    holds an unmeasured weight); groups without weights are left out. ``""`` when there is nothing to show."""
    if not isinstance(groups, dict):
        return ""

    def part(names: Iterable[str]) -> str:
        cells = []
        for name in names:
            g = groups.get(name)
            if isinstance(g, dict) and (g.get("params") or g.get("unmeasured_weights")):
                share = g.get("sparsity")
                cells.append(f"{name} {'?' if not isinstance(share, (int, float)) else compact_pct(share)}")
        return " ".join(cells)

    rest = [name for name in GROUPS if name not in BLOCK_GROUPS]
    return " · ".join(p for p in (part(BLOCK_GROUPS), part(rest)) if p)
