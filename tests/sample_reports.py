"""Realistic reports for renderer tests, built without running any model.

The BBQ, size and latency results come from edgeval's own pure functions (metrics, paired comparison, gate,
size deltas, latency statistics) applied to synthetic, seeded inputs, so that their key names are exactly those of
a real ``edgeval check`` run and stay so when the validators change.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeval.policy import Policy
from edgeval.report import Check, InputError, Report
from edgeval.validators.bbq import compare as compare_mod
from edgeval.validators.bbq import gate, metrics
from edgeval.validators.bbq.decision import Plan, decide
from edgeval.validators.bbq.types import Prediction
from edgeval.validators.latency import LatencyConfig, build_results, latency_checks
from edgeval.validators.size import COMPARED, deltas, size_checks, summary_sentence

CATEGORIES = ("Age", "Disability_status", "Nationality", "Physical_appearance", "Religion", "Sexual_orientation")
#: (P(biased), P(unknown)) on ambiguous items: baseline, then candidate; Age and Disability_status get worse
ANSWER_MIX = {"baseline": (0.34, 0.30), "candidate": (0.36, 0.28)}
WORSE = {"Age": (0.62, 0.12), "Disability_status": (0.55, 0.15)}
SHA_CAND, SHA_BASE = "ab" * 32, "cd" * 32


def _answer(rng: np.random.Generator, unknown: int, biased: int, mix: tuple[float, float]) -> int:
    anti = 3 - unknown - biased
    return int(rng.choice([biased, unknown, anti], p=[mix[0], mix[1], 1 - mix[0] - mix[1]]))


def _letters(rng: np.random.Generator, p_a: float) -> tuple[int, ...]:
    return tuple(int(rng.choice(3, p=[p_a, (1 - p_a) / 2, (1 - p_a) / 2])) for _ in range(3))


def predictions(role: str, n_ambig: int = 60, n_disambig: int = 40, seed: int = 7,
                worse: dict[str, tuple[float, float]] | None = None) -> list[Prediction]:
    """Seeded predictions of one model: the same items (same seed) for both roles, different answers."""
    items = np.random.default_rng(seed)
    answers = np.random.default_rng([seed, 1 if role == "candidate" else 0])
    out = []
    for category in CATEGORIES:
        mix = (worse or {}).get(category, ANSWER_MIX[role]) if role == "candidate" else ANSWER_MIX[role]
        for i in range(n_ambig + n_disambig):
            unknown, biased = (int(x) for x in items.permutation(3)[:2])
            ambig = i < n_ambig
            label = unknown if ambig else int(items.choice([biased, 3 - unknown - biased]))
            pred = _answer(answers, unknown, biased, mix) if ambig else (label if answers.random() < .7 else unknown)
            out.append(Prediction(category, i, "ambig" if ambig else "disambig", "neg" if i % 2 else "nonneg",
                                  label, unknown, biased, pred,
                                  order_letters=_letters(answers, 0.8 if role == "candidate" else 0.55)))
    return out


def bbq_results(worse: dict[str, tuple[float, float]] | None = WORSE) -> tuple[dict[str, Any], list[Check]]:
    """``results["bbq"]`` and the BBQ checks, as the validator builds them. ``worse=None``: the candidate answers
    exactly like the baseline (every BBQ check passes)."""
    settings = Policy.default().section("bbq")
    base = predictions("baseline")
    cand = predictions("candidate", worse=worse) if worse is not None else base
    comparison = compare_mod.compare(cand, base, alpha=settings["alpha"], bootstrap=300, seed=0)
    results = {"data_dir": "/data/bbq", "categories": list(CATEGORIES), "n_items": len(cand), "limit": 1200,
               "seed": 0, "scoring": {"mode": "letter", "orders": 3},
               "candidate": metrics.metrics_by_category(cand), "baseline": metrics.metrics_by_category(base),
               "comparison": comparison}
    decision = decide(cand, base, Plan.from_policy(settings))
    results["decision"] = decision.to_json()
    checks = gate.bias_checks(comparison, results["candidate"], settings, evaluated_categories=list(CATEGORIES),
                              decision=decision)
    return results, checks


def size_results() -> tuple[dict[str, Any], list[Check]]:
    """A 50 % magnitude-pruned SmolLM2: same bytes on disk, smaller compressed and sparse-encoded."""
    def one(sparsity: float, compressed: int, encoded: int) -> dict[str, Any]:
        return {"format": "onnx", "files": 1, "bytes": 542_453_494, "payload_bytes": 538_060_032,
                "compressed_bytes": compressed,
                "compress_level": 1, "params": 134_515_008, "zeros": int(106_168_320 * sparsity),
                "sparsity": sparsity * 0.79, "weight_params": 106_168_320,
                "weight_zeros": int(106_168_320 * sparsity), "weight_sparsity": sparsity,
                "sparse_encoded_bytes": encoded, "tensors": 272, "unmeasured_tensors": 0, "sparsity_measured": True,
                "bits_per_weight": 32.0, "weight_storage": {"float32": 106_168_320}, "quantized_weight_bytes": 0,
                "scale_bytes": 0, "zero_point_bytes": 0, "unmeasured": [],
                "groups": {g: {"params": n, "zeros": int(n * sparsity), "sparsity": sparsity, "bytes": 4 * n,
                               "bits_per_weight": 32.0, "tensors": 30, "unmeasured_weights": 0}
                           for g, n in (("q", 9_953_280), ("k", 3_317_760), ("v", 3_317_760), ("o", 9_953_280),
                                        ("gate", 26_542_080), ("up", 26_542_080), ("down", 26_542_080))}}

    results = one(0.5, 243_100_200, 329_800_000)
    base = one(0.0, 338_900_100, 542_400_000)
    results.update({f"baseline_{key}": base[key] for key in COMPARED})
    results.update(deltas(results))
    results["summary"] = summary_sentence(results)
    return results, list(size_checks(results, Policy.default().section("size"), True))


def latency_results() -> tuple[dict[str, Any], list[Check]]:
    rng = np.random.default_rng(3)
    times = {"candidate": list((rng.gamma(40, 0.5, 20) * 1e6).astype(int)),
             "baseline": list((rng.gamma(40, 0.48, 20) * 1e6).astype(int))}
    described = {role: {"runtime": "onnxruntime", "version": "1.32.0", "threads": 2} for role in times}
    results = build_results(times, described, LatencyConfig(runs=20, batch=1, seq_len=64))
    return results, list(latency_checks(results, Policy.default().section("latency")))


def artifact(name: str, sha: str) -> dict[str, Any]:
    return {"path": f"/models/{name}", "format": "onnx", "sha256": sha, "bytes": 542_453_494}


ENVIRONMENT = {"python": "3.11.9", "platform": "Linux-6.1-x86_64", "cpu": "x86_64", "cpu_count": 2, "threads": 2,
               "packages": {"onnxruntime": "1.32.0", "numpy": "2.1.0"}}


def full_report(worse: dict[str, tuple[float, float]] | None = WORSE, extra_checks: tuple[Check, ...] = (),
                errors: tuple[InputError, ...] = ()) -> Report:
    """size + latency + bbq, with a baseline. The default BBQ mix makes Age fail (blocked); ``worse=None`` passes."""
    results, checks = {}, []
    for name, (res, chk) in (("size", size_results()), ("latency", latency_results()), ("bbq", bbq_results(worse))):
        results[name] = res
        checks += chk
    return Report(candidate=artifact("pruned.onnx", SHA_CAND), baseline=artifact("dense.onnx", SHA_BASE),
                  policy=Policy.default().to_json(), checks=tuple(checks) + extra_checks, results=results,
                  errors=errors, environment=ENVIRONMENT,
                  run={"validators": ["size", "latency", "bbq"], "seed": 0, "duration_s": 312.4,
                       "policy_source": "default"})


def bare_report(**kw: Any) -> Report:
    """No results at all: only the checks given (or none), no baseline."""
    return Report(candidate=artifact("pruned.onnx", SHA_CAND), baseline=None, policy=Policy.default().to_json(),
                  environment=ENVIRONMENT, run={"validators": [], "seed": 0, "duration_s": 0.1}, **kw)
