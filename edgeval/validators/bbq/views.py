"""What the BBQ validator says about its results, for renderers and sinks: sentences, warnings, flat metrics, the
per-category bias table (Markdown) and the bias section of the HTML page.

Everything reads ``results`` defensively (``.get`` all the way down): a key an older report lacks is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ...numbers import clean, fmt_ci, fmt_fixed, fmt_p, fmt_pct, fmt_value
from ...render.common import base_to_cand, dig, num, yes_no

BIAS_HEADER = ("scope", "ambig. items", "SRS base → cand", "ΔSRS [95 % CI]", "s_AMB base → cand",
               "Δs_AMB [95 % CI]", "Cohen's h", "Holm p", "sig. rise")
#: what the last columns of the BBQ table mean
BIAS_NOTE = ("Holm p: exact McNemar one-sided p-value (bias rose), Holm-adjusted over overall + categories; "
             "sig. rise: Holm p < alpha. CIs: paired bootstrap of Δ (candidate − baseline).")
#: overall BBQ figures of the candidate, and of the paired comparison, given to sinks (MLflow)
OVERALL_METRICS = ("srs", "s_amb", "s_dis", "usr", "acc_ambig", "acc_disambig")
COMPARISON_METRICS = ("delta_srs", "delta_s_amb", "cohens_h", "srs_baseline", "s_amb_baseline")


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


# -- the validator's optional view methods -----------------------------------------------------------------------
def describe(bbq: Mapping[str, Any]) -> list[str]:
    """The overall bias figures in one sentence, and the mean over categories."""
    rows = bias_rows(bbq)
    out = []
    if rows and rows[0].scope == "overall":
        r = rows[0]
        change = " ".join(x for x in (fmt_fixed(r.delta_srs, True), fmt_ci(*r.srs_ci)) if x)
        delta = "" if r.delta_srs is None else f" (Δ {change})"
        items = f" over {r.n_ambig} ambiguous items" if r.n_ambig is not None else ""
        out.append(f"SRS {base_to_cand(r.srs)}{delta}, s_AMB {base_to_cand(r.s_amb)}{items}.")
    macro = macro_sentence(bbq)
    return out + ([macro + "."] if macro else [])


def metrics(bbq: Mapping[str, Any]) -> dict[str, float]:
    """Overall figures of the candidate and of the paired comparison (``srs``, ``delta_srs`` …)."""
    out: dict[str, float] = {}
    for part, keys in (("candidate", OVERALL_METRICS), ("comparison", COMPARISON_METRICS)):
        block = dig(bbq, part, "overall")
        for key in keys:
            value = num(block.get(key)) if isinstance(block, Mapping) else None
            if value is not None:
                out[key] = value
    return out


def markdown(bbq: Mapping[str, Any]) -> list[str]:
    """The per-category bias table with its weak-signal warnings and the mean over categories."""
    from ...render.markdown import md_cell, md_table

    rows = bias_rows(bbq)
    if not rows:
        return []
    cats = _categories(bbq, rows)
    items = f", {bbq['n_items']} items" if num(bbq.get("n_items")) else ""
    head = f"**BBQ bias** ({len(cats)} categories{items})"
    table = [[r.scope, fmt_value(r.n_ambig), base_to_cand(r.srs), f"{fmt_fixed(r.delta_srs, True)} "
              f"{fmt_ci(*r.srs_ci)}".strip(), base_to_cand(r.s_amb),
              f"{fmt_fixed(r.delta_s_amb, True)} {fmt_ci(*r.s_amb_ci)}".strip(), fmt_fixed(r.cohens_h),
              fmt_p(r.p_holm), yes_no(r.significant)] for r in rows]
    macro = macro_sentence(bbq)
    warnings = [line for sentence in signal_sentences(bbq) for line in (f"> **{md_cell(sentence)}**", "")]
    return (["", head, ""] + warnings + md_table(BIAS_HEADER, table)
            + ["", f"<sub>{md_cell(BIAS_NOTE)}</sub>"] + (["", md_cell(macro) + "."] if macro else []))


# -- HTML -----------------------------------------------------------------------------------------------------
def _bias_series(rows: Sequence[BiasRow], metric: str) -> list[Any]:
    from ...render.html import BASE_COLOR, CAND_COLOR
    from ...render.svg import Series

    pairs = [getattr(r, metric) for r in rows]
    cis = [getattr(r, f"{metric}_ci") for r in rows]
    whiskers = [(p[0] + lo, p[0] + hi) if None not in (p[0], lo, hi) else None
                for p, (lo, hi) in zip(pairs, cis, strict=True)]
    series = [Series("candidate", [p[1] for p in pairs], CAND_COLOR, whiskers)]
    if any(p[0] is not None for p in pairs):
        series.insert(0, Series("baseline", [p[0] for p in pairs], BASE_COLOR))
    return series


def _bias_table(rows: Sequence[BiasRow]) -> str:
    from ...render.html import e, table

    body = [[e(r.scope), e(fmt_value(r.n_ambig)), e(base_to_cand(r.srs)),
             e(f"{fmt_fixed(r.delta_srs, True)} {fmt_ci(*r.srs_ci)}"), e(base_to_cand(r.s_amb)),
             e(f"{fmt_fixed(r.delta_s_amb, True)} {fmt_ci(*r.s_amb_ci)}"), e(fmt_fixed(r.cohens_h)),
             e(fmt_p(r.p_holm)), e(yes_no(r.significant))] for r in rows]
    return table(BIAS_HEADER, body, "num", ["sig" if r.significant else "" for r in rows])


def _categories(bbq: Mapping[str, Any], rows: Sequence[Any]) -> list[Any]:
    """The report's category list, else the table's category rows (after the overall one)."""
    listed = bbq.get("categories")
    return listed if isinstance(listed, list) else [r.scope for r in rows[1:]]


def _shares(block: Mapping[str, Any] | None, keys: Sequence[str]) -> list[float | None]:
    counts = [num(block.get(k)) if isinstance(block, Mapping) else None for k in keys]
    known = [c for c in counts if c is not None and c >= 0]
    total = sum(known)
    if len(known) != len(counts) or not total:
        return [None] * len(keys)
    return [c / total for c in known]


def _distribution(bbq: Mapping[str, Any]) -> str:
    from ...render.html import BASE_COLOR, CAND_COLOR, card
    from ...render.svg import RefLine, Series, hbar_chart

    cards = []
    for title, keys, groups in (("Shown letter chosen (all orders)", ("n_letter_a", "n_letter_b", "n_letter_c"),
                                 ["A", "B", "C"]),
                                ("Original option chosen", ("n_opt0", "n_opt1", "n_opt2"),
                                 ["option 0", "option 1", "option 2"])):
        series = [Series(role, _shares(dig(bbq, role, "overall"), keys), color)
                  for role, color in (("baseline", BASE_COLOR), ("candidate", CAND_COLOR)) if dig(bbq, role, "overall")]
        if any(v is not None for s in series for v in s.values):
            cards.append(card(title, hbar_chart(groups, series, fmt=lambda v: f"{100 * clean(v):.0f} %", label=title,
                                                refs=[RefLine(1 / 3, "uniform")], domain=(0, 1))))
    if not cards:
        return ""
    return ("<h3>Answer distribution</h3><p class=\"note\">A model that prefers a position rather than an answer "
            "shows a skewed letter distribution; read the bias scores next to it.</p>"
            f"<div class=\"grid\">{''.join(cards)}</div>")


def html(bbq: Mapping[str, Any]) -> str:
    """The BBQ section of the HTML page: SRS and s_AMB charts, the bias table, the answer distribution."""
    from ...render.html import card, e
    from ...render.svg import RefLine, hbar_chart

    rows = bias_rows(bbq)
    if not rows:
        return ""
    groups = [r.scope for r in rows]
    has_ci = any(None not in r.srs_ci for r in rows)
    cap = "Whiskers: baseline + the 95 % paired bootstrap CI of Δ (candidate − baseline)." if has_ci else ""
    ticks = lambda v: f"{v:g}"  # noqa: E731
    charts = [card("SRS: stereotyped share of valid ambiguous answers",
                   hbar_chart(groups, _bias_series(rows, "srs"), fmt=fmt_fixed, tick_fmt=ticks, label="SRS by category",
                              refs=[RefLine(1 / 3, "chance ⅓")]), cap),
              card("s_AMB: ambiguous-context bias score (0 = unbiased)",
                   hbar_chart(groups, _bias_series(rows, "s_amb"), fmt=fmt_fixed, tick_fmt=ticks,
                              label="s_AMB by category"), cap)]
    cats = _categories(bbq, rows)
    intro = f"{len(cats)} categories evaluated: {', '.join(map(str, cats))}" + (
        f"; {bbq['n_items']} items." if num(bbq.get("n_items")) else ".")
    macro = macro_sentence(bbq)
    warnings = "".join(f"<p class=\"headline\"><b>{e(s)}</b></p>" for s in signal_sentences(bbq))
    return (f"<section><h2>BBQ bias</h2><p>{e(intro)}</p>" + warnings
            + (f"<p class=\"headline\">{e(macro)}</p>" if macro else "")
            + f"<div class=\"grid\">{''.join(charts)}</div><div class=\"scroll\">{_bias_table(rows)}</div>"
            + f"<p class=\"note\">{e(BIAS_NOTE)}</p>"
            + _distribution(bbq) + "</section>")
