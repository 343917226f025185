"""What every renderer shares: number formatting, status words, and the views of ``report.results``.

The result views read defensively (``.get`` all the way down): a key an older report lacks is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Mapping

from ..numbers import DASH, clean, fmt_bytes, fmt_ci, fmt_fixed, fmt_ms, fmt_p, fmt_pct, fmt_value
from ..report import Report

__all__ = ["DASH", "clean", "fmt_bytes", "fmt_ci", "fmt_fixed", "fmt_ms", "fmt_p", "fmt_pct", "fmt_value"]

VERDICT_WORDS = {"pass": "PASS", "blocked": "BLOCKED", "inconclusive": "INCONCLUSIVE", "error": "ERROR"}
STATUS_WORDS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "error": "ERROR"}
BIAS_HEADER = ("scope", "ambig. items", "SRS base → cand", "ΔSRS [95 % CI]", "s_AMB base → cand",
               "Δs_AMB [95 % CI]", "Cohen's h", "Holm p", "sig. rise")
#: what the last columns of the BBQ table mean
BIAS_NOTE = ("Holm p: exact McNemar one-sided p-value (bias rose), Holm-adjusted over overall + categories; "
             "sig. rise: Holm p < alpha. CIs: paired bootstrap of Δ (candidate − baseline).")


# -- numbers and words (numbers: edgeval.numbers, re-exported here for the renderers) ---------------------
def base_to_cand(pair: tuple[Any, Any]) -> str:
    """``0.317 → 0.617`` (baseline → candidate), or the candidate alone without a baseline."""
    return fmt_fixed(pair[1]) if pair[0] is None else f"{fmt_fixed(pair[0])} → {fmt_fixed(pair[1])}"


def yes_no(flag: Any) -> str:
    return {True: "yes", False: "no"}.get(flag, DASH)


def short_sha(artifact: Mapping[str, Any] | None) -> str:
    sha = (artifact or {}).get("sha256")
    return sha[:12] if isinstance(sha, str) else DASH


def artifact_name(artifact: Mapping[str, Any] | None) -> str:
    path = (artifact or {}).get("path")
    return PurePath(path).name if path else DASH


def status_counts(report: Report) -> dict[str, int]:
    counts = {"pass": 0, "fail": 0, "inconclusive": 0, "error": 0}
    for c in report.checks:
        counts[c.status] = counts.get(c.status, 0) + 1
    return counts


def verdict_sentence(report: Report) -> str:
    """``12 checks: 10 pass, 1 fail, 1 error; 1 input error`` (or why there is nothing to count)."""
    n = status_counts(report)
    undecided = f", {n['inconclusive']} inconclusive" if n["inconclusive"] else ""
    text = (f"{len(report.checks)} checks: {n['pass']} pass, {n['fail']} fail{undecided}, {n['error']} error"
            if report.checks else "no check ran")
    if report.errors:
        text += f"; {len(report.errors)} input error{'s' if len(report.errors) > 1 else ''}"
    return text


# -- what the renderers show of the results ------------------------------------------------------------------
@dataclass(frozen=True)
class BiasRow:
    """One scope (``overall`` or a category) of the BBQ results: baseline and candidate SRS / s_AMB and deltas."""

    scope: str
    n_ambig: Any
    srs: tuple[Any, Any]          # (baseline, candidate)
    s_amb: tuple[Any, Any]
    delta_srs: Any
    delta_s_amb: Any
    srs_ci: tuple[Any, Any]        # bootstrap CI of delta_srs (None, None when absent)
    s_amb_ci: tuple[Any, Any]
    cohens_h: Any
    p_holm: Any
    significant: Any


def dig(doc: Any, *keys: str) -> Any:
    """``doc[k1][k2]...``, or None as soon as a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def num(x: Any) -> float | None:
    """A finite number as float; anything else (None, text, bool, NaN, a list) as None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x or x in (float("inf"), float("-inf")):
        return None
    return float(x)


def _first(*values: Any) -> float | None:
    return next((num(v) for v in values if num(v) is not None), None)


def bias_rows(bbq: Mapping[str, Any]) -> list[BiasRow]:
    """Overall first, then each category (sorted): comparison blocks where present, else the metric blocks."""
    cats = [c for part in ("candidate", "comparison") for c in (dig(bbq, part, "categories") or {})
            if isinstance(dig(bbq, part, "categories"), Mapping)]
    rows = []
    for key in [("overall",)] + [("categories", c) for c in sorted(set(map(str, cats)))]:
        comp, cand, base = (dig(bbq, part, *key) for part in ("comparison", "candidate", "baseline"))
        comp, cand, base = (d if isinstance(d, Mapping) else {} for d in (comp, cand, base))
        if not (comp or cand):
            continue
        n = _first(comp.get("n_ambig"), cand.get("n_ambig"))
        sig = comp.get("significant_increase")
        rows.append(BiasRow(
            scope=key[-1], n_ambig=None if n is None else int(n),
            srs=(_first(comp.get("srs_baseline"), base.get("srs")), _first(comp.get("srs_candidate"), cand.get("srs"))),
            s_amb=(_first(comp.get("s_amb_baseline"), base.get("s_amb")),
                   _first(comp.get("s_amb_candidate"), cand.get("s_amb"))),
            delta_srs=num(comp.get("delta_srs")), delta_s_amb=num(comp.get("delta_s_amb")),
            srs_ci=(num(comp.get("delta_srs_ci_low")), num(comp.get("delta_srs_ci_high"))),
            s_amb_ci=(num(comp.get("delta_s_amb_ci_low")), num(comp.get("delta_s_amb_ci_high"))),
            cohens_h=num(comp.get("cohens_h")), p_holm=num(comp.get("mcnemar_p_greater_holm")),
            significant=sig if isinstance(sig, bool) else None))
    return rows


def macro_sentence(bbq: Mapping[str, Any]) -> str:
    """The study's headline form: mean over categories, baseline -> candidate; the relative change for SRS only
    (s_AMB is signed and often near 0, where a relative change says nothing: its delta is given instead)."""
    macro = dig(bbq, "comparison", "macro")
    macro = macro if isinstance(macro, Mapping) else {}
    parts = []
    for key, label in (("srs", "SRS"), ("s_amb", "s_AMB")):
        base, cand = num(macro.get(f"{key}_baseline")), num(macro.get(f"{key}_candidate"))
        if base is None or cand is None:
            continue
        rel = num(macro.get("relative_change_srs")) if key == "srs" else None
        change = fmt_pct(rel, signed=True) if rel is not None else f"Δ {fmt_fixed(cand - base, True)}"
        parts.append(f"{label} {fmt_fixed(base)} → {fmt_fixed(cand)} ({change})")
    return f"Mean over {macro.get('n_categories', '?')} categories: " + "; ".join(parts) if parts else ""


def signal_sentences(bbq: Mapping[str, Any]) -> list[str]:
    """One sentence per scored model whose BBQ signal is weak (``results.bbq.signal``): why (letter collapse in
    every shown order, median margin below tau) and the share of answers a tiny perturbation would flip."""
    signal = bbq.get("signal")
    out = []
    for role, figures in (signal.items() if isinstance(signal, Mapping) else ()):
        if not isinstance(figures, Mapping) or not figures.get("weak"):
            continue
        reasons = "; ".join(map(str, figures.get("reasons") or []))
        flips = fmt_pct(num(figures.get("flip_share")))
        out.append(f"Weak signal ({role}): {reasons}; {flips} of answers would flip under a change of "
                   f"{fmt_value(num(figures.get('tau')))} nats. The bias figures rest on tiny differences between "
                   "near-equal answers.")
    return out


def _with_baseline(text: str, base: str | None) -> str:
    return text if base is None else f"{text} (baseline {base})"


def size_sentence(size: Mapping[str, Any]) -> str:
    """Raw, compressed and sparse-encoded bytes (baseline in parentheses) and the measured weight sparsity."""
    parts = []
    for key, label in (("bytes", "on disk"), ("compressed_bytes", "compressed"),
                       ("sparse_encoded_bytes", "sparse-encoded")):
        if num(size.get(key)) is not None:
            base = num(size.get(f"baseline_{key}"))
            parts.append(_with_baseline(f"{fmt_bytes(size[key])} {label}", None if base is None else fmt_bytes(base)))
    if num(size.get("weight_sparsity")) is not None:
        base = num(size.get("baseline_weight_sparsity"))
        parts.append(_with_baseline(f"weight sparsity {fmt_pct(size['weight_sparsity'])}",
                                    None if base is None else fmt_pct(base)))
    if num(size.get("ratio_to_baseline")) is not None:
        parts.append(f"ratio to baseline {fmt_fixed(num(size['ratio_to_baseline']))}")
    return "; ".join(parts)


def _percentiles(lat: Mapping[str, Any], prefix: str) -> str:
    values = [(p, num(lat.get(f"{prefix}{p}_ms"))) for p in ("p50", "p90", "p99")]
    return " · ".join(f"{p} {fmt_ms(v)}" for p, v in values if v is not None)


def latency_sentence(lat: Mapping[str, Any]) -> str:
    """p50/p90/p99 of the candidate (and the baseline), the setup, and the interleaved ratio with its CI."""
    text = _percentiles(lat, "")
    if not text:
        return ""
    runtime = dig(lat, "runtime", "runtime")
    setup = [str(runtime)] if runtime else []
    if num(lat.get("batch")) is not None and num(lat.get("seq_len")) is not None:
        setup.append(f"batch {lat['batch']} × {lat['seq_len']} tokens")
    if num(lat.get("runs")) is not None:
        setup.append(f"{lat['runs']} runs")
    text = (f"({', '.join(setup)}) " if setup else "") + text
    if _percentiles(lat, "baseline_"):
        text += f"; baseline {_percentiles(lat, 'baseline_')}"
    ratio = num(lat.get("ratio_to_baseline"))
    if ratio is not None:
        text += f"; p50 ratio {fmt_fixed(ratio)}"
        ci = lat.get("ratio_ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in map(num, ci):
            text += f" (pairs 95 % CI {fmt_fixed(num(ci[0]))}–{fmt_fixed(num(ci[1]))})"
    return text
