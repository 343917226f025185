"""What the size, latency, perplexity and parity validators say about their results, for renderers and sinks:
sentences (``describe``), flat metrics (``metrics``) and, for size and latency, an HTML section with a chart.

Everything reads ``results`` defensively: a key an older report lacks is skipped, never an error.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..numbers import fmt_bytes, fmt_fixed, fmt_ms, fmt_pct
from ..render.common import dig, num

#: results given to sinks as metrics, per validator (keys of ``report.results[validator]``)
SIZE_METRICS = ("bytes", "compressed_bytes", "sparse_encoded_bytes", "weight_sparsity", "sparsity", "params",
                "bits_per_weight", "baseline_bits_per_weight",
                "baseline_bytes", "baseline_compressed_bytes", "baseline_weight_sparsity", "ratio_to_baseline",
                "compressed_ratio_to_baseline", "bytes_saved_ratio", "compressed_saved_ratio")
LATENCY_METRICS = ("p50_ms", "p90_ms", "p99_ms", "items_per_s", "baseline_p50_ms", "ratio_to_baseline")
PARITY_METRICS = ("max_abs_logit_diff", "top1_agreement", "letter_agreement", "option_agreement", "mean_kl",
                  "max_kl", "delta_nll")


def pick_numbers(results: Mapping[str, Any], keys: Sequence[str]) -> dict[str, float]:
    """``{key: value}`` for the keys of ``results`` that hold a finite number."""
    return {key: value for key in keys if (value := num(results.get(key))) is not None}


def _with_baseline(text: str, base: str | None) -> str:
    return text if base is None else f"{text} (baseline {base})"


# -- size -----------------------------------------------------------------------------------------------------
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
    if num(size.get("bits_per_weight")) is not None:
        base = num(size.get("baseline_bits_per_weight"))
        parts.append(_with_baseline(f"{size['bits_per_weight']:.2f} bits/weight",
                                    None if base is None else f"{base:.2f}"))
    if num(size.get("ratio_to_baseline")) is not None:
        parts.append(f"ratio to baseline {fmt_fixed(num(size['ratio_to_baseline']))}")
    return "; ".join(parts + size_group_lines(size))


def size_group_lines(size: Mapping[str, Any]) -> list[str]:
    """The measured sparsity per layer group, candidate and baseline (``sparsity per group: q 50% … down 0%``)."""
    from .weightgroups import sparsity_line

    lines = [(label, sparsity_line(size.get(key))) for label, key in (("", "groups"), ("baseline ", "baseline_groups"))]
    return [f"{label}sparsity per group: {line}" for label, line in lines if line]


def size_html(size: Mapping[str, Any]) -> str:
    """The size section: the plain sentence, measured sparsity, and a bytes chart (baseline and candidate)."""
    from ..render.html import card, e, pair_series, section
    from ..render.svg import hbar_chart

    series = pair_series(size, ("bytes", "compressed_bytes", "sparse_encoded_bytes"))
    if not series:
        return ""
    chart = hbar_chart(["on disk", "zlib-compressed", "sparse-encoded"], series, fmt=fmt_bytes, label="size")
    roles = (("baseline", "baseline_weight_sparsity"), ("candidate", "weight_sparsity"))
    sparsity = [f"{role} {fmt_pct(size.get(k))}" for role, k in roles if size.get(k) is not None]
    spars = f" Measured weight sparsity: {e(', '.join(sparsity))}." if sparsity else ""
    spars += "".join(f" {e(note)}." for note in _storage_notes(size))
    summary = size.get("summary") if isinstance(size.get("summary"), str) else size_sentence(size)
    return section("Size", f"<p>{e(summary)}.{spars}</p>", [card("Bytes (lower is better)", chart)])


def _storage_notes(size: Mapping[str, Any]) -> list[str]:
    """Bits per weight (baseline and candidate) and the sparsity per layer group, as sentences."""
    roles = (("baseline", "baseline_bits_per_weight"), ("candidate", "bits_per_weight"))
    bits = [f"{role} {value:.2f}" for role, key in roles if (value := num(size.get(key))) is not None]
    notes = [f"Bits per weight: {', '.join(bits)}"] if bits else []
    return notes + [line[0].upper() + line[1:] for line in size_group_lines(size)]


# -- latency --------------------------------------------------------------------------------------------------
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


def latency_html(lat: Mapping[str, Any]) -> str:
    """The latency section: the sentence and a percentile chart (baseline and candidate)."""
    from ..render.html import card, e, pair_series, section
    from ..render.svg import hbar_chart

    series = pair_series(lat, ("p50_ms", "p90_ms", "p99_ms"))
    if not series:
        return ""
    chart = hbar_chart(["p50", "p90", "p99"], series, fmt=fmt_ms, tick_fmt=lambda v: f"{v:g} ms",
                       label="latency percentiles")
    return section("Latency", f"<p>{e(latency_sentence(lat))}</p>",
                   [card("Forward latency (lower is better)", chart)])


# -- perplexity and parity ------------------------------------------------------------------------------------
def perplexity_metrics(r: Mapping[str, Any]) -> dict[str, float]:
    out = {"perplexity": num(dig(r, "candidate", "perplexity")),
           "baseline_perplexity": num(dig(r, "baseline", "perplexity")),
           "ratio_to_baseline": num(r.get("ratio_to_baseline"))}
    return {k: v for k, v in out.items() if v is not None}


def perplexity_sentence(r: Mapping[str, Any]) -> str:
    m = perplexity_metrics(r)
    if "perplexity" not in m:
        return ""
    text = _with_baseline(f"{fmt_fixed(m['perplexity'])}", None if "baseline_perplexity" not in m
                          else fmt_fixed(m["baseline_perplexity"]))
    tokens = num(dig(r, "candidate", "tokens_scored"))
    text += f" over {int(tokens):,} tokens" if tokens is not None else ""
    return text + (f"; ratio to baseline {fmt_fixed(m['ratio_to_baseline'])}" if "ratio_to_baseline" in m else "")


def parity_sentence(r: Mapping[str, Any]) -> str:
    m = pick_numbers(r, PARITY_METRICS)
    lossy = r.get("mode") == "lossy"
    parts = [f"{r['mode']} mode" if isinstance(r.get("mode"), str) else "",
             f"max |Δ logit| {fmt_fixed(m['max_abs_logit_diff'])}" if "max_abs_logit_diff" in m else "",
             f"mean KL {m['mean_kl']:.3g}" if lossy and "mean_kl" in m else "",
             f"ΔNLL {m['delta_nll']:+.3g}" if lossy and "delta_nll" in m else "",
             f"top-1 agreement {fmt_pct(m['top1_agreement'])}" if "top1_agreement" in m else "",
             f"answer-letter agreement {fmt_pct(m['letter_agreement'])}" if "letter_agreement" in m else ""]
    return "; ".join(p for p in parts if p)


def sentences(text: str) -> list[str]:
    """``[text]``, or none for an empty text."""
    return [text] if text else []


def size_metrics(r: Mapping[str, Any]) -> dict[str, float]:
    return pick_numbers(r, SIZE_METRICS)


def latency_metrics(r: Mapping[str, Any]) -> dict[str, float]:
    return pick_numbers(r, LATENCY_METRICS)


def parity_metrics(r: Mapping[str, Any]) -> dict[str, float]:
    return pick_numbers(r, PARITY_METRICS)


class SummaryViews:
    """``describe`` and ``metrics`` of a built-in validator, from two functions of this module that the validator
    names (``view_sentence = staticmethod(size_sentence)``, ``view_metrics = staticmethod(size_metrics)``)."""

    view_sentence: Callable[[Mapping[str, Any]], str]
    view_metrics: Callable[[Mapping[str, Any]], dict[str, float]]

    def describe(self, results: dict[str, Any]) -> list[str]:
        return sentences(self.view_sentence(results))

    def metrics(self, results: dict[str, Any]) -> dict[str, float]:
        return self.view_metrics(results)


class ChartViews(SummaryViews):
    """:class:`SummaryViews` and an HTML section with a chart (``view_html``)."""

    view_html: Callable[[Mapping[str, Any]], str]

    def html(self, results: dict[str, Any]) -> str:
        return self.view_html(results)
