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
from typing import Hashable, Mapping, Sequence, TypeVar

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
    if not fractions or any(b <= a for a, b in zip(fractions, fractions[1:], strict=False)) or fractions[0] <= 0:
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


# -- exact tests on paired 0/1 outcomes ------------------------------------------------------------------------
# The paired 2x2 table of "outcome is 1" (baseline rows, candidate columns)::
#
#                      cand 1   cand 0
#     base 1             a        b        b = 1 -> 0
#     base 0             c        d        c = 0 -> 1
#
# The exact tests need only binomial tails, computed with numpy and integer arithmetic (no scipy; the tests
# check them against scipy).
ALTERNATIVES = ("two-sided", "greater", "less")
K = TypeVar("K", bound=Hashable)


def mcnemar_exact(b: int, c: int, alternative: str = "two-sided") -> float:
    """Exact McNemar p-value: under H0, c ~ Binomial(b + c, 1/2) given the b + c discordant pairs.

    two-sided: ``min(1, 2 * P(X <= min(b, c)))`` (equals ``scipy.stats.binomtest(c, b + c).pvalue``, the
    distribution being symmetric); greater (bias rose, c > b): ``P(X >= c)``; less: ``P(X <= c)``.
    ``b + c == 0`` gives 1.0.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    if alternative == "greater":
        return half_binom_tail(c, n, upper=True)
    if alternative == "less":
        return half_binom_tail(c, n, upper=False)
    return min(1.0, 2.0 * half_binom_tail(min(b, c), n, upper=False))


def half_binom_tail(k: int, n: int, upper: bool) -> float:
    """``P(X >= k)`` (``upper``) or ``P(X <= k)`` for X ~ Binomial(n, 1/2), exactly: the tail itself is summed
    in integers and divided once, so a p-value of 1e-90 is 1e-90, not 1 - (1 - 1e-90) = 0."""
    terms = range(max(k, 0), n + 1) if upper else range(0, min(k, n) + 1)
    return sum(math.comb(n, i) for i in terms) / 2 ** n


def _log_binom_pmf(n: int, p: float) -> np.ndarray:
    """log P(X = i), i = 0..n, for X ~ Binomial(n, p), 0 < p < 1."""
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    i = np.arange(n + 1)
    return log_fact[n] - log_fact[i] - log_fact[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)


def binom_tail(k: int, n: int, p: float, upper: bool) -> float:
    """``P(X >= k)`` (``upper``) or ``P(X <= k)`` for X ~ Binomial(n, p), summed in log space."""
    if p <= 0.0 or p >= 1.0:
        x = 0 if p <= 0.0 else n
        return float(x >= k) if upper else float(x <= k)
    lp = _log_binom_pmf(n, p)
    part = lp[max(k, 0):] if upper else lp[:max(k + 1, 0)]
    if part.size == 0:
        return 0.0
    top = part.max()
    return float(min(1.0, math.exp(top) * np.exp(part - top).sum()))


def clopper_pearson(k: int, n: int, level: float) -> tuple[float, float]:
    """Two one-sided exact bounds, each with error ``level``, for a binomial proportion k/n: the lower bound is
    the p where ``P(X >= k) = level``, the upper the p where ``P(X <= k) = level`` (bisection to 1e-13)."""
    if n == 0:
        return 0.0, 1.0

    def solve(f, target: float) -> float:  # f increasing in p from f(0) < target to f(1) > target
        lo, hi = 0.0, 1.0
        while hi - lo > 1e-13:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) < target else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: binom_tail(k, n, p, upper=True), level)
    upper = 1.0 if k == n else solve(lambda p: -binom_tail(k, n, p, upper=False), -level)
    return lower, upper


def holm(pvalues: Mapping[K, float]) -> dict[K, float]:
    """Holm step-down adjusted p-values over one family of m hypotheses.

    Sort ascending ``p_(1) <= ... <= p_(m)``; ``adj_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))``.
    Reject hypothesis i at family-wise level alpha iff ``adj_i < alpha``.
    """
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    adjusted: dict[K, float] = {}
    running = 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(pvalues[key])))
        adjusted[key] = running
    return {key: adjusted[key] for key in pvalues}


def cohens_h(p1: float | None, p2: float | None) -> float | None:
    """Cohen's h between two proportions: ``2*asin(sqrt(p1)) - 2*asin(sqrt(p2))``; None if either is None.

    Signed: positive when ``p1`` (the candidate's) is larger. |h| 0.2 / 0.5 / 0.8 = small / medium / large.
    """
    if p1 is None or p2 is None:
        return None
    return 2.0 * math.asin(math.sqrt(p1)) - 2.0 * math.asin(math.sqrt(p2))


def transitions(base_biased: np.ndarray, cand_biased: np.ndarray) -> dict[str, float | int | None]:
    """Per-item transitions between two runs on the same items (0/1 "biased" outcomes).

    unbiased_to_biased = c / (c + d)  (share of baseline-unbiased items that the candidate answers biased)
    biased_to_unbiased = b / (a + b)  (share of baseline-biased items that the candidate no longer answers biased)
    """
    base, cand = np.asarray(base_biased, bool), np.asarray(cand_biased, bool)
    n_base_biased = int(base.sum())
    n_u2b, n_b2u = int((~base & cand).sum()), int((base & ~cand).sum())
    n_base_unbiased = int(base.size - n_base_biased)
    return {"n_baseline_biased": n_base_biased, "n_baseline_unbiased": n_base_unbiased,
            "n_unbiased_to_biased": n_u2b, "n_biased_to_unbiased": n_b2u,
            "unbiased_to_biased": _ratio(n_u2b, n_base_unbiased), "biased_to_unbiased": _ratio(n_b2u, n_base_biased)}


def _ratio(num: float, den: float) -> float | None:
    """``num / den``; None (undefined) when ``den == 0``."""
    return None if den == 0 else float(num) / float(den)
