"""Paired statistics for candidate-vs-baseline BBQ comparisons: exact McNemar, Holm, Cohen's h, transitions, bootstrap.

Everything works on per-item 0/1 outcomes of the *same* ambiguous items under two models (see ``compare.py``).
Notation for the paired 2x2 table of "answer is biased" (baseline rows, candidate columns)::

                     cand biased   cand not
    base biased          a            b        b = biased -> unbiased
    base not             c            d        c = unbiased -> biased

The exact tests need only binomial tails, computed here with numpy and integer arithmetic: the gate runs in an
``edgeval[onnx]``-only install, without scipy (the ``stats`` extra; the tests check these against scipy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np

from .metrics import ratio

ALTERNATIVES = ("two-sided", "greater", "less")


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


def holm(pvalues: Mapping[Hashable, float]) -> dict[Hashable, float]:
    """Holm step-down adjusted p-values over one family of m hypotheses.

    Sort ascending ``p_(1) <= ... <= p_(m)``; ``adj_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))``.
    Reject hypothesis i at family-wise level alpha iff ``adj_i < alpha``.
    """
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    adjusted: dict[Hashable, float] = {}
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
            "unbiased_to_biased": ratio(n_u2b, n_base_unbiased), "biased_to_unbiased": ratio(n_b2u, n_base_biased)}


@dataclass(frozen=True)
class AmbigOutcomes:
    """Per ambiguous item 0/1 outcomes of one model: a valid answer, the biased option, UNKNOWN, correct."""

    valid: np.ndarray
    biased: np.ndarray
    unknown: np.ndarray
    correct: np.ndarray

    def columns(self) -> np.ndarray:
        return np.stack([self.valid, self.biased, self.unknown, self.correct], axis=1).astype(np.uint8)


def srs_from_sums(sums: np.ndarray) -> np.ndarray:
    """Vectorised SRS = biased / valid from rows of summed (valid, biased, unknown, correct); NaN if valid == 0."""
    valid, biased = sums[..., 0].astype(float), sums[..., 1].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid > 0, biased / valid, np.nan)


def s_amb_from_sums(sums: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Vectorised s_AMB = (1 - correct/n) * (2 * biased / (valid - unknown) - 1); 0 where acc == 1; NaN if undefined."""
    valid, biased, unknown, correct = (sums[..., i].astype(float) for i in range(4))
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(np.asarray(n) > 0, correct / np.maximum(n, 1), np.nan)
    non_unknown = valid - unknown
    with np.errstate(divide="ignore", invalid="ignore"):
        form = np.where(non_unknown > 0, 2.0 * biased / non_unknown - 1.0, np.nan)
    return np.where(acc == 1.0, 0.0, (1.0 - acc) * form)


def _percentile_ci(deltas: np.ndarray, level: float) -> tuple[float | None, float | None, int]:
    """Percentile interval of the defined (non-NaN) resampled deltas, and how many resamples were undefined."""
    defined = deltas[~np.isnan(deltas)]
    if defined.size == 0:
        return None, None, int(deltas.size)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return float(low), float(high), int(deltas.size - defined.size)


def bootstrap_deltas(cand: AmbigOutcomes, base: AmbigOutcomes, *, resamples: int, rng: np.random.Generator,
                     level: float = 0.95, clusters: Sequence[Hashable] | None = None) -> dict[str, float | int | None]:
    """Paired percentile bootstrap of delta SRS and delta s_AMB (candidate - baseline).

    Each resample draws whole clusters with replacement (``clusters``: one label per item, e.g. the BBQ context
    group; default: every item its own cluster) — the same clusters for both models, keeping the pairing — and
    recomputes both statistics for both models on the drawn items and takes the difference. CI = the (1-level)/2 and 1-(1-level)/2
    percentiles of the defined differences; resamples where a statistic is undefined are dropped and counted.
    ``resamples == 0`` or no items: all None.
    """
    keys = ("delta_srs_ci_low", "delta_srs_ci_high", "delta_s_amb_ci_low", "delta_s_amb_ci_high")
    n = int(cand.valid.size)
    if resamples <= 0 or n == 0:
        return {**dict.fromkeys(keys), "bootstrap_undefined_srs": 0, "bootstrap_undefined_s_amb": 0}
    columns = np.concatenate([cand.columns(), base.columns(), np.ones((n, 1), np.uint8)], axis=1)
    if clusters is not None:
        _, inverse = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
        per_cluster = np.zeros((int(inverse.max()) + 1, columns.shape[1]), dtype=np.int64)
        np.add.at(per_cluster, inverse, columns)
        columns = per_cluster
    sums = _resampled_sums(columns, resamples, rng)
    sizes = sums[:, 8]
    d_srs = srs_from_sums(sums[:, :4]) - srs_from_sums(sums[:, 4:8])
    d_amb = s_amb_from_sums(sums[:, :4], sizes) - s_amb_from_sums(sums[:, 4:8], sizes)
    srs_lo, srs_hi, srs_undef = _percentile_ci(d_srs, level)
    amb_lo, amb_hi, amb_undef = _percentile_ci(d_amb, level)
    return dict(zip(keys, (srs_lo, srs_hi, amb_lo, amb_hi)),
                bootstrap_undefined_srs=srs_undef, bootstrap_undefined_s_amb=amb_undef)


def _resampled_sums(columns: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of ``resamples`` with-replacement resamples of the rows, drawn in memory-bounded chunks."""
    n = columns.shape[0]
    chunk = max(1, 4_000_000 // (n * columns.shape[1]))
    parts = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        parts.append(columns[idx].sum(axis=1, dtype=np.int64))
    return np.concatenate(parts, axis=0)
