"""One-order BBQ scoring, debiased by the model's letter prior (``bbq.prior_items``; opt-in, never passes).

Three cyclic orders cost about 3x the options' tokens of one order. This mode shows most items once and removes
the model's preference for a letter position instead of averaging it out:

1. **The prior.** ``prior_items`` items of the sample (the same ones for candidate and baseline: the smallest
   sha256 of their keys, :func:`prior_subset`) are scored in all 3 cyclic orders. Under the model
   ``log p(letter k | order o) = log pi_k + s(option shown at k) - log Z_o``, the mean over the 3 orders of an
   item's letter log-probabilities is ``log pi_k`` plus a constant (every option sits at every letter once), so
   the mean of those vectors over the subset, log-softmaxed, estimates the letter prior ``log pi``
   (:func:`estimate_prior`). Those items keep their 3-order answers.
2. **The rest** are shown in one cyclic order, chosen per item from a hash of its key (:func:`shown_order`), so
   that candidate and baseline see the same order for an item, and each letter position holds each original
   option about equally often over the sample. An option's score is its letter's log-probability minus
   ``log pi`` of that letter; the answer is the argmax, with the tie rule of :mod:`.scoring`.

The 3-order score is the same quantity summed over the orders, so where the model above holds, both modes give
the same answer. Real models do not hold to it: their letter preference varies from item to item (on SmolLM2
and its pruned variants by 0.23-0.29 nats, 1.9-3.7x the content margin one order carries), which 3 orders cancel
and one order cannot. Measured on the README's 1,200-item table (docs/bbq.md, "One order with a letter prior";
``benchmarks/prior_agreement.py``): about half the one-order answers are the 3-order ones and every ΔSRS shrinks
towards zero, so the mode's rule would pass real rises. **The mode never passes** (:mod:`.gate`: a would-be pass
is inconclusive; :mod:`.sequential`: an early stop does not stop for it); it can block. Predictions of this mode
carry ``extra["shown_order"]`` (the index of the cyclic order shown) and the one row of letter
log-probabilities; the prior is in the report (``scoring.letter_prior``) and is re-derived from a saved
baseline's subset before that baseline is trusted.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...errors import DataError
from ...logprobs import cyclic_orders
from .scoring import _no_answer, decide_scores, letter_rows, score_letters
from .types import BBQItem, Key, Prediction


def active(settings: Mapping[str, Any]) -> bool:
    """Whether a BBQ policy section (or a predictions header) asks for this mode: the one test every part that
    behaves differently in it uses (the validator, the gate's never-pass rule, early stop, saved baselines)."""
    return settings.get("prior_items") is not None


def _digest(key: Key, salt: str) -> bytes:
    return hashlib.sha256(f"{salt}\t{key[0]}\t{key[1]}".encode()).digest()


def prior_subset(items: Sequence[BBQItem], n: int) -> set[Key]:
    """The keys of the ``n`` items scored in 3 orders (all of them when the sample is smaller): a function of the
    sample alone, so candidate, baseline and a resumed run pick the same ones."""
    ranked = sorted((it.key for it in items), key=lambda k: _digest(k, "prior"))
    return set(ranked[:n])


def shown_order(key: Key) -> int:
    """Which of the 3 cyclic orders an item outside the subset is shown in (a function of its key)."""
    return _digest(key, "order")[0] % 3


def _rows(p: Prediction) -> np.ndarray | None:
    """An item's (3, 3) letter log-probabilities when all are finite, else None."""
    rows = np.asarray(p.extra.get("order_logprobs", ()), dtype=np.float64)
    return rows if rows.shape == (3, 3) and np.isfinite(rows).all() else None


def usable(predictions: Sequence[Prediction]) -> int:
    """How many of the subset's predictions the prior is estimated from (finite rows in all 3 orders)."""
    return sum(_rows(p) is not None for p in predictions)


def signal_sample(predictions: Sequence[Prediction]) -> list[Prediction]:
    """The predictions the weak-signal figures (:mod:`.signal`) are computed on: in the prior mode, the items
    scored in 3 orders (their margins are on the 3-order scale the signal thresholds are set for; a one-order
    margin carries the item-level letter preference); otherwise all."""
    three = [p for p in predictions if len(p.order_letters) == 3]
    return three if three and len(three) < len(predictions) else list(predictions)


def estimate_prior(predictions: Sequence[Prediction]) -> np.ndarray:
    """log pi over the letters A, B, C (log-softmaxed) from 3-order predictions (see the module docstring).
    Items whose rows are not finite are left out; none left is a :class:`~edgeval.errors.DataError`."""
    means = [rows.mean(axis=0) for rows in map(_rows, predictions) if rows is not None]
    if not means:
        raise DataError("bbq: the letter prior cannot be estimated: no item of its subset has finite letter "
                        "log-probabilities in all 3 orders")
    mean = np.mean(means, axis=0)
    return mean - np.logaddexp.reduce(mean)


def debiased(source: BBQItem | Prediction, order_index: int, row: Sequence[float], prior: np.ndarray) -> Prediction:
    """The prediction of one item (``source``: the item, or a prediction of it) shown in cyclic order
    ``order_index`` with letter log-probabilities ``row``, debiased by ``prior``."""
    order = cyclic_orders(3)[order_index]
    values = np.asarray(row, dtype=np.float64)
    scores = np.zeros(3)
    for letter, option in enumerate(order):
        scores[option] = values[letter] - prior[letter]
    pred, margin = decide_scores(scores)
    extra: dict[str, Any] = {"order_logprobs": [[round(float(v), 6) for v in values]], "shown_order": order_index}
    if pred is None:
        extra.update(_no_answer(margin))
    facts: dict[str, Any] = {"scores": tuple(float(x) for x in scores), "margin": margin,
                             "order_letters": (int(np.argmax(values)),), "extra": extra}
    if isinstance(source, BBQItem):
        return Prediction.for_item(source, pred, **facts)
    return dataclasses.replace(source, pred=pred, **facts)


def score_debiased(runtime, items: Sequence[BBQItem], prior: np.ndarray, batch_size: int) -> list[Prediction]:
    """One-order predictions of ``items``, each in its :func:`shown_order`, debiased by ``prior``."""
    if not items:
        return []
    shown = [shown_order(item.key) for item in items]
    rows = letter_rows(runtime, items, [(cyclic_orders(3)[k],) for k in shown], batch_size)
    return [debiased(item, k, r[0], prior) for item, k, r in zip(items, shown, rows, strict=True)]


def score_with_prior(runtime, items: Sequence[BBQItem], prior_items: int, batch_size: int,
                     emit: Callable[[str], None] = lambda m: None) -> tuple[list[Prediction], np.ndarray]:
    """The whole mode in one call (benchmarks, the API): the subset in 3 orders, its prior, the rest debiased.
    The validator runs the same steps chunk by chunk, checkpointed. Returns (predictions in item order, log pi)."""
    subset = prior_subset(items, prior_items)
    known = {p.key: p for p in score_letters(runtime, [it for it in items if it.key in subset], 3, batch_size, emit)}
    log_prior = estimate_prior(list(known.values()))
    rest = {p.key: p for p in score_debiased(runtime, [it for it in items if it.key not in subset], log_prior,
                                             batch_size)}
    return [known[it.key] if it.key in subset else rest[it.key] for it in items], log_prior


def one_order_view(predictions: Sequence[Prediction], subset: set[Key],
                   shown: Mapping[Key, int] | None = None) -> tuple[list[Prediction], np.ndarray]:
    """What this mode answers, read off a 3-order run (no model call): the subset's items as they are, every
    other item from the row of its :func:`shown_order` (or ``shown[key]``: the agreement study draws them),
    debiased by the prior of the subset. Exact: a letter row does not depend on the other orders scored beside
    it (up to the runtime's batch noise, ~1e-6)."""
    prior = estimate_prior([p for p in predictions if p.key in subset])
    out = []
    for p in predictions:
        if p.key in subset:
            out.append(p)
            continue
        rows = p.extra.get("order_logprobs")
        if rows is None or len(rows) != 3:
            raise ValueError("one_order_view needs 3-order letter predictions (order_logprobs of 3 rows)")
        k = shown_order(p.key) if shown is None else shown[p.key]
        out.append(debiased(p, k, rows[k], prior))
    return out, prior
