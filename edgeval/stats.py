"""Statistics shared by every paired bias comparison: cluster-robust paired differences of rates, normal
quantiles, and group-sequential boundaries. numpy and the standard library only (the gate runs in an
``edgeval[onnx]``-only install, without scipy).

Paired difference of two rates with clusters
    Each model's rate is a ratio ``R = sum(num) / sum(den)`` over the same items (for SRS: biased answers over
    valid answers). Items come in clusters that are not independent (BBQ: the questions of one context). The
    difference ``D = R_cand - R_base`` has the linearised (delta-method) influence of cluster g::

        u_g = (num_c,g - R_c * den_c,g) / sum(den_c)  -  (num_b,g - R_b * den_b,g) / sum(den_b)

    and the cluster-robust variance ``G / (G - 1) * sum_g u_g**2`` (``sum_g u_g = 0``). Because a paired design
    with few discordant items would get a variance near 0 (and a boundless claim), one pseudo discordant pair in
    each direction is added: ``+ 2 / n**2`` — the variance of the difference when one item in n flipped each
    way. With every answer valid and one item per cluster this is the variance of the mean paired difference
    of 0/1 outcomes (the statistic behind McNemar's test), so nothing is lost on independent items.

Group-sequential boundaries
    A test looked at K times (after fractions ``t_1 < ... < t_K = 1`` of the information) must spend its error
    rate over the looks. :func:`sequential_bounds` gives the one-sided critical z of each look for a
    Lan-DeMets spending function of O'Brien-Fleming type, ``a(t) = 2 - 2 * Phi(z_(1 - a/2) / sqrt(t))``:
    early looks need overwhelming evidence, the last one little more than a fixed-sample test. The boundaries
    are exact for the Brownian-motion approximation of the z statistic, computed by recursive numerical
    integration of the density of the sum statistic on a grid (no simulation). ``K = 1`` gives ``z_(1 - a)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Sequence

import numpy as np

_N = NormalDist()


def z_quantile(p: float) -> float:
    """The standard normal quantile ``Phi^-1(p)``."""
    return _N.inv_cdf(p)


def t_from_z(z: float, df: int) -> float:
    """The Student-t quantile with ``df`` degrees of freedom at the probability of the normal quantile ``z``
    (cluster-robust tests with G clusters refer their statistic to t with G - 1 degrees of freedom). ``df < 1``:
    no test is possible, +inf (-inf for z < 0)."""
    if not math.isfinite(z):
        return z
    if df < 1:
        return math.inf if z > 0 else -math.inf
    tail = normal_sf(abs(z))                    # the one-sided tail probability to match
    lo, hi = 0.0, max(1.0, abs(z))
    while _t_sf(hi, df) > tail:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_sf(mid, df) > tail else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return math.copysign((lo + hi) / 2, z)


def _t_sf(t: float, df: int) -> float:
    """P(T > t) for t >= 0, T ~ Student-t(df): half the regularised incomplete beta I_x(df/2, 1/2)."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):           # the fraction converges fast on the other side
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny, f, c, d = 1e-300, 1.0, 1.0, 0.0
    for i in range(0, 400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return math.exp(log_front) * (f - 1.0) / a


def normal_sf(z: float) -> float:
    """``1 - Phi(z)``, accurate in the upper tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True)
class PairedDifference:
    """``delta = R_cand - R_base`` with what is needed for its standard error under any hypothesised value."""

    delta: float
    n: int
    influence: np.ndarray        # u_g per cluster (centred on the estimate)
    weight: np.ndarray           # d u_g / d delta: how a cluster's influence moves with the hypothesised delta

    @property
    def clusters(self) -> int:
        return int(self.influence.size)

    def se(self, null: float | None = None) -> float:
        """Cluster-robust standard error; with ``null`` given, the null-restricted (score-type) one: the
        influences re-centred on the hypothesised difference, which keeps small-sample tests at their level."""
        u = self.influence if null is None else self.influence + (self.delta - null) * self.weight
        g = u.size
        var = (g / (g - 1) if g > 1 else 1.0) * float(np.sum(u ** 2)) + 2.0 / self.n ** 2
        return math.sqrt(var)


def paired_rate_difference(num_c: np.ndarray, den_c: np.ndarray, num_b: np.ndarray, den_b: np.ndarray,
                           clusters: Sequence) -> PairedDifference | None:
    """The paired difference of two rates over per-item arrays (see the module docstring); None when either
    rate is undefined (no valid answer)."""
    num_c, den_c, num_b, den_b = (np.asarray(a, dtype=float) for a in (num_c, den_c, num_b, den_b))
    tot_c, tot_b = den_c.sum(), den_b.sum()
    if tot_c <= 0 or tot_b <= 0:
        return None
    r_c, r_b = num_c.sum() / tot_c, num_b.sum() / tot_b
    item_u = (num_c - r_c * den_c) / tot_c - (num_b - r_b * den_b) / tot_b
    item_w = (den_c / tot_c + den_b / tot_b) / 2.0
    _, inverse = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return PairedDifference(float(r_c - r_b), int(item_u.size), np.bincount(inverse, weights=item_u),
                            np.bincount(inverse, weights=item_w))


def obf_spending(t: float, alpha: float) -> float:
    """Error spent by information fraction ``t`` (Lan-DeMets, O'Brien-Fleming type); ``obf_spending(1) = alpha``."""
    if t <= 0:
        return 0.0
    return min(alpha, 2.0 * normal_sf(z_quantile(1.0 - alpha / 2.0) / math.sqrt(min(t, 1.0))))


def sequential_bounds(fractions: Sequence[float], alpha: float) -> tuple[float, ...]:
    """One-sided critical z values, one per look, for the information ``fractions`` (increasing, last 1)."""
    return _bounds(tuple(round(float(t), 9) for t in fractions), round(float(alpha), 12))


@lru_cache(maxsize=256)
def _bounds(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    if not fractions or any(b <= a for a, b in zip(fractions, fractions[1:])) or fractions[0] <= 0:
        raise ValueError(f"information fractions must increase from > 0: {fractions}")
    if len(fractions) == 1:
        return (_upper_z(alpha),)
    grid = np.linspace(-10.0, 10.0, 8001)            # the sum statistic S_t = Z_t * sqrt(t), on a fixed grid
    offsets = grid[2000:6001] - grid[4000]           # kernel support +-5 (dt <= 1: +-5 sd at least)
    step = grid[1] - grid[0]
    density, prev_t, spent, out = None, 0.0, 0.0, []
    for t in fractions:
        dt = t - prev_t
        target = obf_spending(t, alpha) - spent
        if density is None:                            # first look: S ~ N(0, t)
            density = np.exp(-grid ** 2 / (2 * dt)) / math.sqrt(2 * math.pi * dt)
        else:                                          # convolve the continuing mass with N(0, dt)
            kernel = np.exp(-offsets ** 2 / (2 * dt)) / math.sqrt(2 * math.pi * dt)
            density = np.convolve(density, kernel, mode="same") * step
        crit = (_upper_z(target) if prev_t == 0.0 else _solve_bound(grid, density, step, t, target))
        out.append(crit)
        density = np.where(grid < crit * math.sqrt(t), density, 0.0)
        spent += target
        prev_t = t
    return tuple(out)


def _upper_z(tail: float) -> float:
    """The z whose upper tail is ``tail`` (inf when the tail is too small to represent: that look cannot stop)."""
    if tail < 1e-300:
        return math.inf
    return -z_quantile(tail) if tail < 0.5 else z_quantile(1.0 - tail)


def _solve_bound(grid: np.ndarray, density: np.ndarray, step: float, t: float, target: float) -> float:
    """The z whose upper tail (of the still-continuing density of S_t) carries ``target`` probability."""
    if target < 1e-300:
        return math.inf
    tail = (np.cumsum(density[::-1])[::-1] - density / 2) * step   # P(S >= grid[i], not stopped), trapezoid
    i = int(np.searchsorted(-tail, -target))           # first grid point whose tail is <= target
    i = min(max(i, 1), grid.size - 1)
    lo, hi, t_lo, t_hi = grid[i - 1], grid[i], tail[i - 1], tail[i]
    s = lo + (hi - lo) * (t_lo - target) / (t_lo - t_hi) if t_lo != t_hi else hi
    return float(s / math.sqrt(t))
