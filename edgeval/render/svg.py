"""Inline SVG charts for the HTML report: one primitive, a horizontal grouped bar chart with optional whiskers.

No scripts, no fonts to fetch: every chart is a string of SVG that scales with its container (``viewBox``).
Each bar carries a ``<title>`` (the exact value, shown as a tooltip); a missing value draws no bar and says "n/a".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Callable, Optional, Sequence, TypeGuard

Number = Optional[float]
Whisker = Optional[tuple[float, float]]

BAR_H, BAR_GAP, GROUP_GAP = 16, 3, 14
WIDTH = 560
TOP, BOTTOM, RIGHT = 44, 26, 16


@dataclass(frozen=True)
class Series:
    """One colour of bars: a value per group, and optionally a (low, high) whisker per group."""

    name: str
    values: Sequence[Number]
    color: str
    whiskers: Sequence[Whisker] | None = None


@dataclass(frozen=True)
class RefLine:
    """A dashed vertical reference line (chance level, tolerance) with a short label."""

    value: float
    label: str


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def _domain(series: Sequence[Series], refs: Sequence[RefLine], domain: tuple[float, float] | None
            ) -> tuple[float, float]:
    if domain and domain[1] > domain[0]:
        return domain
    points = [0.0] + [r.value for r in refs]
    for s in series:
        points += [v for v in s.values if _finite(v)]
        points += [x for w in (s.whiskers or ()) if w for x in w if _finite(x)]
    lo, hi = min(points), max(points)
    pad = (hi - lo) * 0.18 or 1.0  # room for value labels at the bar ends
    lo, hi = (lo - pad if lo < 0 else 0.0), (hi + pad if hi > 0 else 0.0)
    return (lo, hi) if hi > lo else (0.0, 1.0)  # nothing to show: an empty 0..1 axis


def _finite(v: Number) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _text(x: float, y: float, text: str, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'


class _Scale:
    def __init__(self, lo: float, hi: float, x0: float, x1: float):
        self.lo, self.hi, self.x0, self.x1 = lo, hi, x0, x1

    def __call__(self, v: float) -> float:
        return self.x0 + (min(max(v, self.lo), self.hi) - self.lo) / (self.hi - self.lo) * (self.x1 - self.x0)


def _legend(series: Sequence[Series], x: float) -> list[str]:
    out = []
    for s in series:
        out.append(f'<rect x="{x:.1f}" y="8" width="12" height="12" rx="2" fill="{s.color}"/>')
        out.append(_text(x + 17, 18.5, s.name))
        x += 30 + 7.2 * len(s.name)
    return out


def _axis(scale: _Scale, ticks: Sequence[float], y0: float, y1: float, fmt: Callable[[float], str]) -> list[str]:
    out = []
    for t in ticks:
        x = scale(t)
        cls = "zero" if abs(t) < 1e-12 else "gl"
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0:.1f}" y2="{y1:.1f}" class="{cls}"/>')
        out.append(_text(x, y1 + 16, fmt(t), "middle", "tick"))
    return out


def _bar(scale: _Scale, s: Series, i: int, y: float, fmt: Callable[[float], str], group: str) -> list[str]:
    v = s.values[i] if i < len(s.values) else None
    if not _finite(v):
        return [_text(scale(0) + 4, y + BAR_H - 4, "n/a", cls="na")]
    x0, x1 = sorted((scale(0), scale(v)))
    tip = escape(f"{group}: {s.name} {fmt(v)}")
    out = [f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 1):.1f}" height="{BAR_H}" rx="2" '
           f'fill="{s.color}"><title>{tip}</title></rect>']
    end = scale(v)
    w = s.whiskers[i] if s.whiskers and i < len(s.whiskers) else None
    if w and _finite(w[0]) and _finite(w[1]):
        a, b, mid = scale(w[0]), scale(w[1]), y + BAR_H / 2
        out.append(f'<path d="M{a:.1f},{mid:.1f}H{b:.1f}M{a:.1f},{mid - 5:.1f}v10M{b:.1f},{mid - 5:.1f}v10" '
                   f'class="whisker"><title>{escape(f"{group}: 95 % CI {fmt(w[0])} to {fmt(w[1])}")}</title></path>')
        end = max(end, b) if v >= 0 else min(end, a)
    label_x, anchor = (end + 5, "start") if v >= 0 else (end - 5, "end")
    out.append(_text(label_x, y + BAR_H - 4, fmt(v), anchor, "val"))
    return out


def hbar_chart(groups: Sequence[str], series: Sequence[Series], *, fmt: Callable[[float], str],
               label: str, refs: Sequence[RefLine] = (), domain: tuple[float, float] | None = None,
               tick_fmt: Callable[[float], str] | None = None) -> str:
    """A horizontal grouped bar chart: one block of bars per group (a row label), one bar per series.

    ``fmt`` writes the value labels and tooltips, ``tick_fmt`` (default ``fmt``) the axis ticks.
    """
    label_w = min(max((len(g) for g in groups), default=4) * 7.2 + 16, 190)
    lo, hi = _domain(series, refs, domain)
    ticks = nice_ticks(lo, hi)
    scale = _Scale(lo, hi, label_w, WIDTH - RIGHT)
    block = len(series) * (BAR_H + BAR_GAP) - BAR_GAP
    height = TOP + len(groups) * (block + GROUP_GAP) + BOTTOM
    parts = _axis(scale, ticks, TOP - 4, height - BOTTOM, tick_fmt or fmt)
    for r in refs:
        x = scale(r.value)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP - 4}" y2="{height - BOTTOM}" class="ref"/>')
        parts.append(_text(x, TOP - 9, r.label, "middle", "reflabel"))
    for gi, group in enumerate(groups):
        y = TOP + GROUP_GAP / 2 + gi * (block + GROUP_GAP)
        parts.append(_text(label_w - 8, y + block / 2 + 4, group, "end", "group"))
        for si, s in enumerate(series):
            parts += _bar(scale, s, gi, y + si * (BAR_H + BAR_GAP), fmt, group)
    parts += _legend(series, label_w)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}" role="img" '
            f'aria-label="{escape(label)}" class="chart"><title>{escape(label)}</title>{"".join(parts)}</svg>')


__all__ = ["Series", "RefLine", "hbar_chart", "nice_ticks"]
