"""Saved baseline predictions re-measured on a sample of items when the baseline model is there.

A saved sidecar (``--baseline-predictions``) is checked for its own consistency (:mod:`.predictions`): identity,
data, scoring settings, records, and scores that follow from its rows of letter log-probabilities. A file that is
consistent but not the model's (rewritten by hand, or scored from another model under the right sha256) passes
all of that. When ``--baseline`` names the model too, :func:`spot_check` scores :data:`SPOT_ITEMS` items drawn by
the operating system's random source (so that no file can be prepared for exactly those items) with that model
and compares their rows (loglik mode: option scores) with the file's; a difference beyond :data:`TOLERANCE` is a
DataError naming the item. Without the model the file is trusted as given, and the report says so
(``spot_check.items`` 0).

What it can detect (docs/bbq.md has the table): every item the sample draws is compared, so a file of which a
share ``f`` of the items is not the model's is refused unless the sample misses all of them, with probability
``C(N - fN, K) / C(N, K)`` (hypergeometric; ``tests/test_bbq_spotcheck.py`` measures it through this code). Rows
within the tolerance decide the same answer unless the item's margin is under ``2 × orders × TOLERANCE``.
"""
from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

import numpy as np

from ...errors import DataError
from ...logprobs import cyclic_orders
from .scoring import letter_rows, score_loglik
from .types import BBQItem, Key, Prediction

#: items re-scored (all of them when the sample is smaller)
SPOT_ITEMS = 64
#: the largest difference in a letter log-probability (or a loglik option score) between the file and the model:
#: 7x the largest noise measured between two runs of one model on one runtime (2.8e-5: other batches and prefix
#: trees, SmolLM2, 2026-12-01); one tolerance whatever runtime the file names (its header is not evidence)
TOLERANCE = 2e-4


def spot_check(runtime: Any, path: Any, saved_runtime: str, by_key: Mapping[Key, Prediction],  # noqa: PLR0913
               items: Sequence[BBQItem], settings: Mapping[str, Any], prior_mode: bool,
               rng: random.Random | None = None) -> dict[str, Any]:
    """Re-score :data:`SPOT_ITEMS` of ``items`` (drawn by ``rng``, default the OS's random source) on ``runtime``
    (the baseline model's) and compare them with the saved predictions ``by_key``; what was done, for the report.
    DataError naming the item that differs."""
    chosen = (rng or random.SystemRandom()).sample(list(items), min(SPOT_ITEMS, len(items)))
    if not chosen:
        raise DataError("the saved baseline predictions cannot be checked: this run samples no items", path=path)
    if settings["mode"] == "loglik":
        fresh = [np.asarray(p.scores, dtype=float) for p in score_loglik(runtime, chosen, settings["batch_size"])]
        saved = [np.asarray(by_key[it.key].scores, dtype=float) for it in chosen]
        what = "option scores"
    else:
        n_orders = 3 if prior_mode else int(settings["orders"])
        rows = letter_rows(runtime, chosen, [cyclic_orders(n_orders)] * len(chosen), settings["batch_size"])
        fresh, saved = [], []
        for it, measured in zip(chosen, rows, strict=True):
            record = by_key[it.key]
            kept = np.asarray(record.extra["order_logprobs"], dtype=float)
            shown = record.extra.get("shown_order")
            fresh.append(measured[[shown]] if shown is not None else measured[:len(kept)])
            saved.append(kept)
        what = "letter log-probabilities"
    diffs = [float(np.max(np.abs(f - s))) if f.shape == s.shape else float("inf")
             for f, s in zip(fresh, saved, strict=True)]
    worst = int(np.argmax(diffs))
    hint = "" if runtime.name == saved_runtime else (
        f"; the file says it was scored on {saved_runtime}: with --baseline-runtime {saved_runtime} it is re-scored "
        "there")
    if not diffs[worst] <= TOLERANCE:
        raise DataError(f"the saved baseline predictions are not the baseline model's: re-scored on "
                        f"{runtime.name}, item {chosen[worst].key} has {what} {np.round(fresh[worst], 4).tolist()} "
                        f"where the file says {np.round(saved[worst], 4).tolist()} (differ by {diffs[worst]:.3g}, "
                        f"tolerance {TOLERANCE:g}{hint})", path=path)
    return {"items": len(chosen), "keys": [list(it.key) for it in chosen], "max_abs_diff": diffs[worst],
            "tolerance": TOLERANCE, "runtime": runtime.name, "saved_runtime": saved_runtime}


def not_checked() -> dict[str, Any]:
    """The report's ``spot_check`` when no baseline model was given."""
    return {"items": 0, "reason": "no --baseline model: the file is trusted as given (its own consistency is "
                                  "checked, not what it measured)"}


__all__ = ["spot_check", "not_checked", "SPOT_ITEMS", "TOLERANCE"]
