"""Forward-pass latency on the target runtime, and the candidate/baseline ratio from interleaved A/B runs.

Protocol (policy section ``latency``):

1. Inputs: a fixed batch of token ids drawn with ``numpy.random.Generator(seed)`` uniformly from ``[0, vocab)``,
   shape ``(batch, seq_len)``, with an all-ones attention mask. ``vocab`` is the last dimension of the logits of
   one probe forward (on zeros); with a baseline the smaller of the two vocabularies is used, so that both models
   see exactly the same ids.
2. ``warmup`` untimed forwards per model (after the probe), then ``runs`` timed forwards per model, each timed
   with ``time.perf_counter_ns`` around ``runtime.forward(ids, mask)``.
3. With a baseline the runs are interleaved in pairs, and the pair's order alternates (candidate first, then
   baseline first, …), so that machine drift (thermal state, other tenants: ±15 % on a shared box) hits both
   models alike. ``ratio_to_baseline`` = candidate p50 / baseline p50 is gated; the median of the per-pair ratios
   and its 95 % bootstrap interval (2,000 resamples of the pairs, seeded) are reported beside it.

Percentiles use ``numpy.percentile(method="linear")``. Throughput: ``items_per_s`` = batch / p50 seconds,
``tokens_per_s`` = batch · seq_len / p50 seconds. ``threads`` in the policy, when it differs from the run's
``--threads``, opens dedicated runtimes with that many threads for this validator only (closed afterwards).
``threads_requested`` records the policy's ``threads``, else the run's ``--threads``, else null (runtime default).
Runtime errors propagate unchanged; :func:`~edgeval.validators.base.run_validator` turns them into error checks.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..report import Check, threshold_check
from ..settings import Settings, setting
from .base import Outcome, RunContext
from .summaries import ChartViews, latency_html, latency_metrics, latency_sentence

BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class LatencyConfig:
    """The latency section of the policy, typed."""

    warmup: int = 3
    runs: int = 20
    batch: int = 1
    seq_len: int = 64
    threads: int | None = None
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], seed: int = 0) -> "LatencyConfig":
        keys = ("warmup", "runs", "batch", "seq_len", "threads")
        return cls(**{k: settings[k] for k in keys if k in settings}, seed=seed)


@dataclass(frozen=True)
class LatencySettings(Settings):
    """The ``latency`` section of the policy."""

    warmup: int = setting(3, minimum=0)
    runs: int = setting(20, minimum=3)
    batch: int = setting(1, minimum=1)
    seq_len: int = setting(64, minimum=1)
    threads: int | None = setting(None, "Intra-op threads; null: the runtime's default.", minimum=1)
    max_p50_ms: float | None = setting(None, exclusiveMinimum=0)
    max_p90_ms: float | None = setting(None, exclusiveMinimum=0)
    max_p99_ms: float | None = setting(None, exclusiveMinimum=0)
    max_ratio_to_baseline: float | None = setting(
        1.25, "Candidate p50 / baseline p50 (interleaved runs) must not exceed this.", exclusiveMinimum=0)


class LatencyValidator(ChartViews):
    """Warm-up, then timed forwards: p50/p90/p99 and throughput; interleaved A/B ratio against the baseline."""

    name = "latency"
    summary = "forward latency p50/p90/p99 and throughput on the target runtime; interleaved A/B ratio to baseline"
    Settings = LatencySettings

    view_sentence, view_metrics, view_html = staticmethod(latency_sentence), staticmethod(latency_metrics), \
        staticmethod(latency_html)
    title = "Latency"

    def run(self, ctx: RunContext, settings: LatencySettings) -> Outcome:
        cfg = LatencyConfig.from_settings(settings, ctx.seed)
        if cfg.threads is None and ctx.threads:  # the run's --threads: the shared runtimes were opened with it
            cfg = replace(cfg, threads=ctx.threads)
        with open_runtimes(ctx, cfg.threads) as runtimes:
            ids, mask, vocab = make_inputs(runtimes, cfg)
            calls = {role: _call(rt, ids, mask) for role, rt in runtimes.items()}
            ctx.progress(f"latency: {cfg.warmup} warm-up + {cfg.runs} timed runs of {' and '.join(calls)}, "
                         f"batch {cfg.batch} x {cfg.seq_len} tokens")
            timed_runs(calls, cfg.warmup)
            times = timed_runs(calls, cfg.runs)
            described = {role: dict(rt.describe()) for role, rt in runtimes.items()}
        results = {**build_results(times, described, cfg), "vocab_size": vocab}
        ctx.progress(f"latency: candidate p50 {results['p50_ms']:.2f} ms")
        return Outcome(latency_checks(results, settings), results)


# -- running -----------------------------------------------------------------------------------------------
@contextmanager
def open_runtimes(ctx: RunContext, threads: int | None) -> Iterator[dict[str, Any]]:
    """The candidate's (and baseline's) runtime: the run's shared ones, or dedicated ones for other threads."""
    roles = ["candidate"] + (["baseline"] if ctx.baseline is not None else [])
    if threads is None or threads == ctx.threads:
        yield {role: ctx.runtime(role) for role in roles}
        return
    if ctx.resident == "one":  # its own sessions (other threads): the shared ones are not kept beside them
        ctx.unload()
    opened: dict[str, Any] = {}
    try:
        for role in roles:
            opened[role] = ctx.open_runtime(role, threads=threads)
        yield opened
    finally:
        for runtime in opened.values():
            runtime.close()


def make_inputs(runtimes: dict[str, Any], cfg: LatencyConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Seeded ids valid for every model (a probe forward each finds its vocabulary), a full mask, the vocab."""
    probe = np.zeros((cfg.batch, cfg.seq_len), np.int64)
    mask = np.ones((cfg.batch, cfg.seq_len), np.int64)
    vocab = min(int(np.asarray(rt.forward(probe, mask)).shape[-1]) for rt in runtimes.values())
    rng = np.random.default_rng(cfg.seed)
    return rng.integers(0, vocab, size=(cfg.batch, cfg.seq_len), dtype=np.int64), mask, vocab


def _call(runtime: Any, ids: np.ndarray, mask: np.ndarray) -> Callable[[], Any]:
    return lambda: runtime.forward(ids, mask)


def timed_runs(calls: dict[str, Callable[[], Any]], runs: int) -> dict[str, list[int]]:
    """Nanoseconds of ``runs`` calls per role; with two roles, pairs alternate which goes first."""
    roles = list(calls)
    times: dict[str, list[int]] = {role: [] for role in roles}
    for i in range(runs):
        for role in roles if i % 2 == 0 else roles[::-1]:
            start = time.perf_counter_ns()
            calls[role]()
            times[role].append(time.perf_counter_ns() - start)
    return times


# -- statistics --------------------------------------------------------------------------------------------
def latency_stats(ns: Sequence[int], batch: int, seq_len: int) -> dict[str, float | None]:
    """Percentiles (linear), mean, std, min, max in ms, and throughput at the median."""
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99], method="linear"))
    seconds = p50 / 1e3
    return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "mean_ms": float(ms.mean()),
            "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0, "min_ms": float(ms.min()),
            "max_ms": float(ms.max()), "items_per_s": batch / seconds if seconds > 0 else None,
            "tokens_per_s": batch * seq_len / seconds if seconds > 0 else None}


def paired_ratio(cand_ns: Sequence[int], base_ns: Sequence[int], seed: int = 0,
                 resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, Any]:
    """Median of the per-pair ratios candidate/baseline and its 95 % bootstrap interval over the pairs."""
    ratios = np.asarray(cand_ns, dtype=np.float64) / np.asarray(base_ns, dtype=np.float64)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(ratios, size=(resamples, ratios.size), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5], method="linear")
    return {"ratio_pairs_median": float(np.median(ratios)), "ratio_ci95": [float(low), float(high)],
            "pairs": int(ratios.size)}


def build_results(times: dict[str, list[int]], described: dict[str, dict], cfg: LatencyConfig) -> dict[str, Any]:
    """The results dict: candidate figures, baseline_* counterparts and the ratio when there is a baseline."""
    out: dict[str, Any] = {"batch": cfg.batch, "seq_len": cfg.seq_len, "warmup": cfg.warmup, "runs": cfg.runs,
                           "seed": cfg.seed, "threads_requested": cfg.threads,
                           "threads": described["candidate"].get("threads"), "runtime": described["candidate"],
                           "interleaved": "baseline" in times}
    out.update(latency_stats(times["candidate"], cfg.batch, cfg.seq_len))
    if "baseline" in times:
        base = latency_stats(times["baseline"], cfg.batch, cfg.seq_len)
        out.update({f"baseline_{k}": v for k, v in base.items()})
        out["baseline_runtime"] = described["baseline"]
        cand_p50, base_p50 = out["p50_ms"], base["p50_ms"]
        out["ratio_to_baseline"] = cand_p50 / base_p50 if base_p50 is not None and base_p50 > 0 else None
        out.update(paired_ratio(times["candidate"], times["baseline"], cfg.seed))
    return out


# -- checks ------------------------------------------------------------------------------------------------
def latency_checks(r: dict[str, Any], settings: Mapping[str, Any]) -> tuple[Check, ...]:
    """Percentiles against their budgets; the ratio against ``max_ratio_to_baseline`` with a baseline."""
    checks = [threshold_check(f"latency.{p}_ms", "latency", f"latency_ms_{p}", r[f"{p}_ms"],
                              settings.get(f"max_{p}_ms"), baseline_value=r.get(f"baseline_{p}_ms"), unit=" ms")
              for p in ("p50", "p90", "p99")]
    if "ratio_to_baseline" in r:
        check = threshold_check("latency.ratio_to_baseline", "latency", "ratio_to_baseline", r["ratio_to_baseline"],
                                settings.get("max_ratio_to_baseline"))
        checks.append(_explain_ratio(check, r))
    return tuple(checks)


def _explain_ratio(check: Check, r: dict[str, Any]) -> Check:
    if check.status == "error":
        return check
    low, high = r["ratio_ci95"]
    note = (f" (candidate p50 {r['p50_ms']:.3f} ms vs baseline {r['baseline_p50_ms']:.3f} ms; median of "
            f"{r['pairs']} interleaved pair ratios {r['ratio_pairs_median']:.3f}, 95 % CI {low:.3f}-{high:.3f})")
    return replace(check, message=check.message + note)
