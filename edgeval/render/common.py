"""What every renderer shares: number formatting, status words, and reading ``report.results`` defensively
(``.get`` all the way down: a key an older report lacks is skipped). What a validator's results *say* is the
validator's own business (its ``describe``/``markdown``/``html`` views, see :mod:`.views`).
"""
from __future__ import annotations

from pathlib import PurePath
from typing import Any, Mapping

from ..numbers import DASH, clean, fmt_bytes, fmt_ci, fmt_fixed, fmt_ms, fmt_p, fmt_pct, fmt_value
from ..report import Report

__all__ = ["DASH", "clean", "fmt_bytes", "fmt_ci", "fmt_fixed", "fmt_ms", "fmt_p", "fmt_pct", "fmt_value"]

VERDICT_WORDS = {"pass": "PASS", "blocked": "BLOCKED", "inconclusive": "INCONCLUSIVE", "error": "ERROR"}
STATUS_WORDS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "error": "ERROR"}


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


# -- reading results defensively --------------------------------------------------------------------------------
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
