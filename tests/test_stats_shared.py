"""edgeval/stats.py: group-sequential bounds, t quantiles, and the cluster-robust paired difference of rates."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeval.stats import obf_spending, paired_rate_difference, sequential_bounds, t_from_z, z_quantile


# -- O'Brien-Fleming-type (Lan-DeMets) boundaries -------------------------------------------------------------
def test_sequential_bounds_match_published_lan_demets_obf():
    """Lan-DeMets O'Brien-Fleming spending, one-sided 0.025, 4 equally spaced looks (published, e.g. gsDesign /
    Jennison & Turnbull): 4.3326, 2.9631, 2.3590, 2.0141."""
    got = sequential_bounds([0.25, 0.5, 0.75, 1.0], 0.025)
    assert got == pytest.approx((4.3326, 2.9631, 2.3590, 2.0141), abs=1e-3)


@pytest.mark.parametrize("alpha", [0.15, 0.05, 0.025, 0.05 / 12])
def test_single_look_is_the_fixed_sample_quantile(alpha):
    assert sequential_bounds([1.0], alpha) == (pytest.approx(z_quantile(1 - alpha), abs=1e-9),)


def test_spending_function_ends_at_alpha_and_increases():
    ts = np.linspace(0.05, 1.0, 20)
    spent = [obf_spending(t, 0.05) for t in ts]
    assert spent[-1] == pytest.approx(0.05) and all(a < b for a, b in zip(spent, spent[1:], strict=False))
    assert obf_spending(0.0, 0.05) == 0.0


@pytest.mark.parametrize("fractions, alpha", [((0.25, 0.5, 0.75, 1.0), 0.025),
                                              ((0.2, 0.45, 0.7, 1.0), 0.15),
                                              ((0.3, 1.0), 0.05 / 12)])
def test_bounds_spend_their_alpha_on_brownian_motion(fractions, alpha):
    """Crossing probabilities of the bounds by Monte Carlo of the Brownian-motion model they are exact for:
    look k crosses with (about) the spent increment, the total is alpha. 400k paths: the MC standard error
    of a rate near 0.025 is 0.00025; the tolerance is 5 of them (or 10 % for the tiny alpha)."""
    bounds = np.array(sequential_bounds(fractions, alpha))
    t = np.array(fractions)
    rng = np.random.default_rng(11)
    steps = rng.standard_normal((400_000, t.size)) * np.sqrt(np.diff(t, prepend=0.0))
    z = np.cumsum(steps, axis=1) / np.sqrt(t)
    crossed = z >= bounds
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    total = float(np.mean(first >= 0))
    se = math.sqrt(alpha * (1 - alpha) / first.size)
    assert abs(total - alpha) <= max(5 * se, 0.1 * alpha)
    spent_first = float(np.mean(first == 0))
    assert abs(spent_first - obf_spending(t[0], alpha)) <= max(5 * math.sqrt(spent_first / first.size), 2e-5)
    assert all(a > b for a, b in zip(bounds, bounds[1:], strict=False))  # O'Brien-Fleming: strict early, lenient late


def test_bounds_reject_bad_fractions():
    with pytest.raises(ValueError):
        sequential_bounds([0.5, 0.5, 1.0], 0.05)


# -- Student t from z --------------------------------------------------------------------------------------
@pytest.mark.parametrize("z", [1.0, 1.2816, 1.6449, 1.96, 2.2414, 2.6383, 3.0, 4.3326, 5.6])
def test_t_from_z_matches_scipy(z):
    """Every quantile the gate uses (alpha_pass 0.15 -> 1.04; alpha/2 -> 1.96; alpha/12 -> 2.64; first
    O'Brien-Fleming looks 4.33 and 5.6) at df 1..300: scipy's exact t quantile to 1e-6 (relative)."""
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 40)) + list(range(40, 301, 13)):
        exact = stats.t.ppf(stats.norm.sf(-z), df)
        assert t_from_z(z, df) == pytest.approx(exact, rel=1e-6), df
        assert t_from_z(-z, df) == pytest.approx(-exact, rel=1e-6), df


def test_t_from_z_limits():
    assert t_from_z(1.96, 0) == math.inf and t_from_z(-1.96, 0) == -math.inf
    assert t_from_z(1.96, 10_000) == pytest.approx(1.96, abs=1e-3)
    assert t_from_z(1.96, 10) > t_from_z(1.96, 30) > 1.96


# -- paired difference of rates ----------------------------------------------------------------------------
def _paired(rng, n, p_base=0.3, flip=0.2):
    base = (rng.random(n) < p_base).astype(float)
    cand = np.where(rng.random(n) < flip, 1.0 - base, base)
    return cand, base


def test_item_clusters_give_the_mcnemar_variance():
    """Every item its own cluster, every answer valid (den = 1): R = mean(x), the influence of item i is
    (d_i - D) / n with d_i = x_c,i - x_b,i, and its derivative in the hypothesised difference is 1/n. So the
    null-restricted variance at 0 is n/(n-1) * sum(d_i^2) / n^2 + 2/n^2 = n/(n-1) * (b + c) / n^2 + 2/n^2, where
    b + c is the number of discordant items: McNemar's variance of (c - b)/n (with the G/(G-1) small-sample
    factor and the one pseudo discordant pair each way). Hence z_rise = (c - b) / sqrt((b + c) n/(n-1) + 2)."""
    rng = np.random.default_rng(3)
    n = 500
    cand, base = _paired(rng, n)
    ones = np.ones(n)
    diff = paired_rate_difference(cand, ones, base, ones, list(range(n)))
    b = int(np.sum((base == 1) & (cand == 0)))
    c = int(np.sum((base == 0) & (cand == 1)))
    assert diff.delta == pytest.approx((c - b) / n) and diff.clusters == n
    assert diff.se(null=0.0) ** 2 == pytest.approx(n / (n - 1) * (b + c) / n ** 2 + 2 / n ** 2, rel=1e-12)
    assert diff.delta / diff.se(null=0.0) == pytest.approx((c - b) / math.sqrt((b + c) * n / (n - 1) + 2))
    d = cand - base
    assert diff.se() ** 2 == pytest.approx(n / (n - 1) * np.sum((d - d.mean()) ** 2) / n ** 2 + 2 / n ** 2)
    assert diff.se(null=0.05) ** 2 == pytest.approx(n / (n - 1) * np.sum((d - 0.05) ** 2) / n ** 2 + 2 / n ** 2)


def test_perfectly_correlated_clusters_widen_the_se():
    """Both questions of a context answered alike: clustering by context doubles the variance (SE x sqrt 2)
    compared with treating the 2n items as independent."""
    rng = np.random.default_rng(4)
    cand, base = _paired(rng, 300)
    cand, base = np.repeat(cand, 2), np.repeat(base, 2)
    ones = np.ones(cand.size)
    by_item = paired_rate_difference(cand, ones, base, ones, list(range(cand.size)))
    by_context = paired_rate_difference(cand, ones, base, ones, list(np.arange(cand.size) // 2))
    assert by_context.delta == pytest.approx(by_item.delta)
    assert by_context.se() > 1.3 * by_item.se()
    assert by_context.se() / by_item.se() == pytest.approx(math.sqrt(2), rel=0.02)


def test_rates_are_ratios_over_valid_answers():
    num_c, den_c = np.array([1, 0, 0, 1]), np.array([1, 1, 0, 1])      # candidate: 2 biased of 3 valid
    num_b, den_b = np.array([0, 0, 1, 1]), np.array([1, 1, 1, 1])      # baseline: 2 of 4
    diff = paired_rate_difference(num_c, den_c, num_b, den_b, ["a", "a", "b", "b"])
    assert diff.delta == pytest.approx(2 / 3 - 2 / 4) and diff.clusters == 2 and diff.n == 4
    assert float(np.sum(diff.influence)) == pytest.approx(0.0, abs=1e-12)
    assert paired_rate_difference(num_c, np.zeros(4), num_b, den_b, list("abcd")) is None
