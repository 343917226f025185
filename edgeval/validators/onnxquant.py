"""What each ONNX initializer is for, read from the graph, and the zeros of quantized weights.

:func:`onnx_uses` maps every initializer to a :class:`Use`: its role (which input of which operator consumes it:
``MatMulNBits`` B/scales/zero_points, ``MatMulInteger`` B/zero point, ``DequantizeLinear`` x/scale/zero point …;
else the quantizer's naming, ``*_quantized`` / ``*_scale`` / ``*_zero_point``), its layer group (from its name, else
from the names of the nodes that consume it, one hop further when that names none: ``DequantizeLinear`` → MatMul;
the dynamo exporter's ``namespace`` node metadata counts as a name), and, for a quantized weight, how to count its
zeros in the dequantized domain:

- :class:`NBits` (``com.microsoft.MatMulNBits``): B holds ``N × ceil(K / block_size)`` blocks of ``block_size``
  values at ``bits`` bits, low bits first; the logical weight is ``K × N`` (node attributes). An element is zero
  when its quantized value equals its block's zero point (packed the same way, ``N × ceil(blocks · bits / 8)``
  bytes; ``2^(bits-1)`` when absent). Attributes that do not fit the stored bytes make the tensor unmeasured.
- :class:`ZeroPointed` (int8/uint8 with a zero point: ``quantize_dynamic``, QDQ): zero iff ``q == zero_point``,
  per tensor or per channel along ``axis``.

Data is read in row chunks from the memory map, so a packed model never sits in memory unpacked.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .weightgroups import group_of, role_from_name

_CHUNK = 1 << 22  # elements per pass
#: (op_type, input index) -> role of the initializer fed there
_INPUT_ROLES = {
    "MatMulNBits": {1: "weight", 2: "scale", 3: "zero_point"},
    "MatMulInteger": {1: "weight", 2: "zero_point", 3: "zero_point"},
    "DynamicQuantizeMatMul": {1: "weight", 2: "scale", 3: "zero_point"},
    "DequantizeLinear": {0: "weight", 1: "scale", 2: "zero_point"},
    "QuantizeLinear": {1: "scale", 2: "zero_point"},
    "QLinearMatMul": {1: "scale", 2: "zero_point", 3: "weight", 4: "scale", 5: "zero_point", 6: "scale",
                      7: "zero_point"},
    "GatherBlockQuantized": {0: "weight", 2: "scale", 3: "zero_point"},
}
RawOf = Callable[[str], "np.ndarray | None"]


class Unmeasurable(ValueError):
    """A quantized tensor whose stored bytes do not match what its node says; it is reported unmeasured."""


@dataclass(frozen=True)
class Use:
    """What one initializer is for: role, layer group, and how to count its zeros when it is quantized."""

    role: str = ""
    group: str = "other"
    quant: Any = None  # NBits | ZeroPointed | Unsupported | None


@dataclass(frozen=True)
class Unsupported:
    """A quantized layout this module does not decode (its weight is reported unmeasured, with the reason)."""

    why: str

    def measure(self, raw: np.ndarray, dtype: str, shape: tuple[int, ...], raw_of: RawOf) -> tuple[int, int, str]:
        raise Unmeasurable(self.why)


# -- the graph -------------------------------------------------------------------------------------------------
def onnx_uses(graph) -> dict[str, Use]:
    """Role, group and zero-counting rule of every initializer of ``graph`` (top level)."""
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))
    return {t.name: _use(t, consumers.get(t.name, []), consumers) for t in graph.initializer}


def _use(tensor, uses: list[tuple[Any, int]], consumers: dict) -> Use:
    role = next((_INPUT_ROLES[n.op_type][i] for n, i in uses if i in _INPUT_ROLES.get(n.op_type, {})), "")
    role = role or role_from_name(tensor.name)
    if role == "weight" and len(tensor.dims) < 2 and not any(n.op_type == "MatMulNBits" for n, _ in uses):
        role = "other"  # a DequantizeLinear'd bias or a 1-D constant
    group = group_of(tensor.name) or _group_from(uses, consumers) or "other"
    return Use(role, group, _quant(tensor, uses) if role == "weight" else None)


def _node_text(node) -> str:
    scope = " ".join(p.value for p in node.metadata_props if p.key == "namespace")
    return f"{node.name} {scope}"


def _group_from(uses: list[tuple[Any, int]], consumers: dict) -> str | None:
    nodes = [n for n, _ in uses]
    for hop in range(2):
        found = next((g for n in nodes if (g := group_of(_node_text(n)))), None)
        if found or hop:
            return found
        nodes = [c for n in nodes for out in n.output for c, _ in consumers.get(out, [])]
    return None


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _quant(tensor, uses: list[tuple[Any, int]]) -> Any:
    """How to count the zeros of the quantized weight ``tensor`` (None: as stored)."""
    for node, index in uses:
        inputs, attrs = list(node.input), _attrs(node)
        if node.op_type == "MatMulNBits" and index == 1:
            return _nbits(inputs, attrs)
        if node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") and index == 1:
            return ZeroPointed(inputs[3] if len(inputs) > 3 else "", len(tensor.dims) - 1)
        if node.op_type == "DequantizeLinear" and index == 0:
            if attrs.get("block_size"):
                return Unsupported("blocked DequantizeLinear weights are not decoded")
            return ZeroPointed(inputs[2] if len(inputs) > 2 else "", int(attrs.get("axis", 1)))
        if node.op_type in ("QLinearMatMul", "GatherBlockQuantized"):
            return Unsupported(f"{node.op_type} weights are not decoded")
    if tensor.name.endswith("_quantized"):  # quantize_dynamic's Gather: zero point beside, by name
        return ZeroPointed(tensor.name[: -len("_quantized")] + "_zero_point", None)
    return None


def _nbits(inputs: list[str], attrs: dict[str, Any]) -> Any:
    if len(inputs) > 4 and inputs[4]:
        return Unsupported("MatMulNBits with g_idx (act-order) is not decoded")
    try:
        k, n, block, bits = int(attrs["K"]), int(attrs["N"]), int(attrs["block_size"]), int(attrs.get("bits", 4))
    except (KeyError, TypeError, ValueError):
        return Unsupported("MatMulNBits node lacks K, N or block_size")
    return NBits(k, n, bits, block, inputs[3] if len(inputs) > 3 else "")


# -- counting zeros ------------------------------------------------------------------------------------------
def unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Values of ``bits`` bits packed low bits first in the uint8 rows of ``packed`` (rows × bytes)."""
    if bits == 8:
        return packed
    per, mask = 8 // bits, (1 << bits) - 1
    return np.stack([(packed >> (bits * i)) & mask for i in range(per)], axis=-1).reshape(packed.shape[0], -1)


@dataclass(frozen=True)
class NBits:
    """A ``MatMulNBits`` weight: logical ``K × N`` at ``bits`` bits, blocks of ``block`` along K, zero points
    in the initializer ``zero_point`` (empty: the default ``2^(bits-1)``)."""

    k: int
    n: int
    bits: int
    block: int
    zero_point: str

    def measure(self, raw: np.ndarray, dtype: str, shape: tuple[int, ...], raw_of: RawOf) -> tuple[int, int, str]:
        """``(logical elements, zeros, storage)`` of the packed bytes ``raw``."""
        blocks, blob, zp_row = self._layout(raw)
        zps = self._zero_points(raw_of, zp_row)
        rows = max(1, _CHUNK // (blocks * self.block))
        zeros = 0
        for r0 in range(0, self.n, rows):
            r1 = min(self.n, r0 + rows)
            q = unpack(np.asarray(raw[r0 * blocks * blob:r1 * blocks * blob]).reshape(r1 - r0, -1), self.bits)
            zp = (1 << (self.bits - 1)) if zps is None else \
                np.repeat(unpack(zps[r0:r1], self.bits)[:, :blocks], self.block, axis=1)[:, :self.k]
            zeros += int(np.count_nonzero(q[:, :self.k] == zp))
        return self.k * self.n, zeros, f"int{self.bits}"

    def _layout(self, raw: np.ndarray) -> tuple[int, int, int]:
        if self.bits not in (2, 4, 8) or self.k <= 0 or self.n <= 0 or self.block <= 0 \
                or self.block * self.bits % 8:
            raise Unmeasurable(f"MatMulNBits attributes K={self.k} N={self.n} bits={self.bits} "
                               f"block_size={self.block} are not a layout it can decode")
        blocks = math.ceil(self.k / self.block)
        blob = self.block * self.bits // 8
        if raw.size != self.n * blocks * blob:
            raise Unmeasurable(f"packed weight holds {raw.size:,} B but K={self.k} N={self.n} at {self.bits} bits "
                               f"in blocks of {self.block} need {self.n * blocks * blob:,} B")
        return blocks, blob, math.ceil(blocks * self.bits / 8)

    def _zero_points(self, raw_of: RawOf, zp_row: int) -> np.ndarray | None:
        if not self.zero_point:
            return None
        zps = raw_of(self.zero_point)
        if zps is None or zps.dtype != np.uint8 or zps.size != self.n * zp_row:
            raise Unmeasurable(f"zero points '{self.zero_point}' are not {self.n * zp_row:,} packed uint8 values")
        return np.asarray(zps).reshape(self.n, zp_row)


@dataclass(frozen=True)
class ZeroPointed:
    """An int8/uint8 weight dequantized as ``(q - zero_point) · scale``; ``axis``: the per-channel axis."""

    zero_point: str
    axis: int | None

    def measure(self, raw: np.ndarray, dtype: str, shape: tuple[int, ...], raw_of: RawOf) -> tuple[int, int, str]:
        """``(elements, zeros, storage)`` of the int8 or uint8 bytes ``raw`` of the given ``shape``."""
        if dtype not in ("int8", "uint8"):
            raise Unmeasurable(f"a {dtype} weight with a zero point is not decoded")
        values = raw.view(np.dtype(dtype))
        zp = raw_of(self.zero_point) if self.zero_point else np.zeros(1, values.dtype)  # no input: zero
        if zp is None:
            raise Unmeasurable(f"zero point '{self.zero_point}' is not a stored initializer")
        if zp.dtype != values.dtype:
            raise Unmeasurable(f"zero point '{self.zero_point}' is {zp.dtype}, the weight {values.dtype}")
        return values.size, _count_equal(values, np.asarray(zp).reshape(-1), shape, self.axis), str(values.dtype)


def _count_equal(values: np.ndarray, zp: np.ndarray, shape: tuple[int, ...], axis: int | None) -> int:
    if zp.size == 1:
        return sum(int(np.count_nonzero(values[i:i + _CHUNK] == zp[0])) for i in range(0, values.size, _CHUNK))
    axis = None if axis is None or not shape else axis % len(shape)
    if axis is None or zp.size != shape[axis] or math.prod(shape) != values.size:
        raise Unmeasurable(f"{zp.size} zero points do not fit a weight of shape {list(shape)}")
    mid, inner = shape[axis], math.prod(shape[axis + 1:])
    view, zp3 = values.reshape(-1, mid, inner), zp.reshape(1, mid, 1)
    rows = max(1, _CHUNK // (mid * inner))
    return sum(int(np.count_nonzero(view[r:r + rows] == zp3)) for r in range(0, view.shape[0], rows))
