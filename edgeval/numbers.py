"""How numbers are written wherever a person reads them (tables, summaries, HTML, Markdown): one place.

Every formatter first snaps values within :data:`ZERO_TOLERANCE` (1e-12) of zero to 0, so that floating-point
residue (a Δ of ``-4.857e-17`` between two equal rates) prints as ``0`` and never as ``-0.000``. ``None`` (not
measured) prints as an em dash. Precision by kind: check values 4 significant digits; rates, scores and ratios 3
decimals; statistics in sentences (z, SE, deltas in check messages) 3 significant digits; percentages 1 decimal;
bytes 3 significant digits in decimal units; milliseconds 2 decimals;
p-values 3 significant digits, ``<0.001`` below.
"""
from __future__ import annotations

from typing import Any

DASH = "—"
ZERO_TOLERANCE = 1e-12


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def clean(x: Any) -> Any:
    """``x`` with values within 1e-12 of zero (floats, numpy scalars) replaced by 0.0; anything else unchanged."""
    if hasattr(x, "item") and not isinstance(x, (int, float)):
        x = x.item()
    if isinstance(x, float) and abs(x) < ZERO_TOLERANCE:
        return 0.0
    return x


def fmt_value(x: Any, signed: bool = False) -> str:
    """A check value for a table: 4 significant digits, thousands separators for big integers, ``—`` for None."""
    x = clean(x)
    if x is None:
        return DASH
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return f"{x:+.4g}" if signed else f"{x:.4g}"
    if isinstance(x, int):
        return f"{x:+,}" if signed else f"{x:,}" if abs(x) >= 10_000 else str(x)
    return str(x)


def fmt_sig(x: Any, signed: bool = False, digits: int = 3, missing: str = DASH) -> str:
    """``digits`` significant digits (a statistic in a sentence: z, SE, a delta); ``missing`` for None (check
    messages say ``n/a``, tables ``—``)."""
    x = clean(x)
    if x is None:
        return missing
    return f"{x:+.{digits}g}" if signed else f"{x:.{digits}g}"


def fmt_bytes(n: Any) -> str:
    """Bytes in decimal units (kB, MB, GB) with three significant digits; ``—`` for None."""
    if not _number(n):
        return DASH
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def fmt_pct(x: Any, signed: bool = False) -> str:
    """A share as a percentage with one decimal (``12.5 %``); ``—`` for None."""
    x = clean(x)
    if not _number(x):
        return DASH
    return f"{100 * x:+.1f} %" if signed else f"{100 * x:.1f} %"


def fmt_fixed(x: Any, signed: bool = False, digits: int = 3) -> str:
    """Fixed decimals (bias scores, rates, deltas, ratios: 3); ``—`` for None; no ``-0.000``."""
    x = clean(x)
    if not _number(x):
        return DASH
    if round(x, digits) == 0:
        x = 0.0
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def fmt_ms(x: Any) -> str:
    """Milliseconds with two decimals (``12.34 ms``)."""
    return DASH if not _number(x) else f"{fmt_fixed(x, digits=2)} ms"


def fmt_p(p: Any) -> str:
    """A p-value: three significant digits, ``<0.001`` below that; ``—`` for None."""
    p = clean(p)
    if not _number(p):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def fmt_ci(low: Any, high: Any) -> str:
    """``[-0.012, +0.034]``, or an empty string when either end is missing."""
    return "" if low is None or high is None else f"[{fmt_fixed(low, True)}, {fmt_fixed(high, True)}]"
