"""Keep-masks from scores: pure functions shared by every pruning method.

Every method produces a score matrix laid out as ``(out_features, in_features)`` (one row per output unit, one
column per input feature) and the functions here turn it into a boolean *keep* mask of the same shape: ``True``
keeps the weight, ``False`` zeroes it. Lower scores are pruned first. Methods differ only in the score:

* random: uniform noise from a seeded :class:`torch.Generator` (:func:`random_scores`);
* magnitude: ``|W|``;
* wanda: ``|W_ij| * ||X_j||_2`` (see :mod:`.wanda`).

Counts are exact, never thresholds (ties cannot change how many weights go):

* per row (Wanda's comparison group): each row loses ``floor(in_features * s)`` weights;
* per matrix: the matrix loses ``round(numel * s)`` weights (halves round up);
* N:M: each row loses the ``N`` lowest-scoring weights of every ``M`` consecutive input columns, so the pattern
  ``2:4`` zeroes 2 of every 4 (sparsity ``N/M``; the convention of the Wanda code, ``prune_n`` of ``prune_m``).
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import BadInputError

if TYPE_CHECKING:
    import torch

_EPS = 1e-9
_NM = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class Pattern:
    """A sparsity pattern: ``unstructured`` (n = m = 0) or ``N:M`` (zero N of every M consecutive inputs)."""

    n: int = 0
    m: int = 0

    @property
    def structured(self) -> bool:
        return self.m > 0

    @property
    def sparsity(self) -> float | None:
        """The sparsity an N:M pattern implies; ``None`` for unstructured."""
        return self.n / self.m if self.structured else None

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.structured else "unstructured"


def parse_pattern(text: str) -> Pattern:
    """``"unstructured"`` or ``"N:M"`` with ``0 < N < M``; anything else raises :class:`BadInputError`."""
    if not isinstance(text, str):
        raise BadInputError(f"pattern must be 'unstructured' or 'N:M' (e.g. '2:4'), got {text!r}")
    if text.strip().lower() == "unstructured":
        return Pattern()
    found = _NM.match(text)
    if not found:
        raise BadInputError(f"pattern must be 'unstructured' or 'N:M' (e.g. '2:4'), got {text!r}")
    n, m = int(found.group(1)), int(found.group(2))
    if n <= 0 or m <= 0 or n >= m:
        raise BadInputError(f"N:M pattern needs 0 < N < M (N zeros in every M inputs), got {n}:{m}")
    return Pattern(n, m)


def zero_count(size: int, sparsity: float) -> int:
    """``floor(size * sparsity)`` without float fuzz (``100 * 0.29`` is 28.999…, and must give 29)."""
    return math.floor(size * sparsity + _EPS)


def _zero_lowest(scores: "torch.Tensor", k: int) -> "torch.Tensor":
    """Keep-mask of a 2-D tensor with exactly the ``k`` lowest entries of every row set to False."""
    import torch

    keep = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if k > 0:
        lowest = torch.topk(scores, k, dim=1, largest=False).indices
        keep.scatter_(1, lowest, False)
    return keep


def unstructured_mask(scores: "torch.Tensor", sparsity: float, *, per_row: bool) -> "torch.Tensor":
    """Zero the lowest ``floor(in * s)`` scores of each row (``per_row``) or ``round(numel * s)`` of the matrix."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D (out, in), got shape {tuple(scores.shape)}")
    if per_row:
        return _zero_lowest(scores, zero_count(scores.shape[1], sparsity))
    k = math.floor(scores.numel() * sparsity + 0.5)
    return _zero_lowest(scores.reshape(1, -1), k).reshape(scores.shape)


def nm_mask(scores: "torch.Tensor", n: int, m: int) -> "torch.Tensor":
    """Zero the ``n`` lowest scores in every group of ``m`` consecutive input columns of each row."""
    rows, cols = scores.shape
    if cols % m:
        raise BadInputError(f"N:M pattern {n}:{m} needs in_features divisible by {m}, got {cols}")
    groups = scores.reshape(rows * (cols // m), m)
    return _zero_lowest(groups, n).reshape(rows, cols)


def select(scores: "torch.Tensor", sparsity: float, pattern: Pattern, *, per_row: bool) -> "torch.Tensor":
    """The keep-mask for ``scores`` under ``pattern`` (N:M ignores ``sparsity`` and ``per_row``)."""
    if pattern.structured:
        return nm_mask(scores, pattern.n, pattern.m)
    return unstructured_mask(scores, sparsity, per_row=per_row)


def layer_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one layer, derived from the run's seed and the layer's name.

    Deriving it per layer keeps a layer's random mask the same whatever other layers are included or excluded.
    """
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def random_scores(shape: tuple[int, int], seed: int) -> "torch.Tensor":
    """Uniform [0, 1) scores from a :class:`torch.Generator` seeded with ``seed`` (reproducible on CPU)."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.rand(shape, generator=generator)
