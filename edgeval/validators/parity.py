"""Parity: does an exported artifact compute what the model it was exported from computes?

The candidate is the export (ONNX, TFLite); the reference is its source model (``--baseline``, e.g. the Hugging
Face directory it was exported from). Both runtimes see the same token ids: the 16 BBQ-style items edgeval ships
(``edgeval/data/parity_prompts.jsonl``, written for this project, not BBQ text) as letter prompts in the three
cyclic option orders, 48 prompts. Measured:

- ``max_abs_logit_diff``: max |Δlogit| over the whole vocabulary at every real (non-padding) position of every
  prompt (``sequence_logits``); the next-token-only maximum and the mean are reported beside it;
- ``top1_agreement``: share of prompts whose next-token argmax (whole vocabulary) is the same;
- ``letter_agreement``: share of prompts whose chosen answer letter (argmax of ``letter_logprobs``) is the same;
- ``option_agreement``: share of items whose final option, letter log-probs summed over the orders as the BBQ
  validator does, is the same (gated by ``min_letter_agreement`` too);
- ``max_abs_cached_logit_diff`` (candidates with a KV cache only): max |Δ next-token logit| when the candidate
  computes shared prompt prefixes once (:meth:`~edgeval.runtimes.base.BaseRuntime.next_token_logits_many`, the
  path BBQ scoring takes), gated like ``max_abs_logit_diff``;
- ``tokenizer_agreement``: share of prompts the reference's tokenizer (and chat template) encodes to the same ids
  as the candidate's; it must be 1 (an export shipped with the wrong tokenizer files is not at parity);
- ``mean_kl``/``max_kl``, ``reference_nll``/``candidate_nll``/``delta_nll``: the task-level figures of
  :mod:`~edgeval.validators.parity_lossy`, always reported, gated in the lossy mode.

``parity.mode`` (``auto``, the default, ``exact`` or ``lossy``) chooses the bounds: the exact ones above for a
plain export, the ``lossy_*`` ones for an artifact that itself holds quantized computation (see
:mod:`~edgeval.validators.parity_lossy`). ``mode`` and ``mode_reason`` are in the results and every check message.

Prompts are encoded once with the candidate's tokenizer and those ids go to both runtimes, so Δlogit measures the
model alone. A runtime with a static sequence length (a TFLite bucket) gets prompts **truncated from the left** to
the shorter of the two limits (the answer options and instruction at the end are kept); the number of truncated
prompts is reported as ``truncated_prompts``. Nothing is skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from ..errors import BadInputError, DataError, MeasurementError
from ..logprobs import (
    LETTERS,
    SCRATCH_BYTES,
    cyclic_orders,
    letter_logprobs,
    letter_token_ids,
    logits_budget,
    option_scores,
    rows_within_budget,
)
from ..report import Check, error_check, threshold_check
from ..runtimes.base import tokenizer_size
from ..settings import Settings, parse, setting
from .base import Outcome, RunContext
from .bbq import BBQItem, encode_letter_prompt, prompt_format
from .parity_lossy import Divergence, Mode, choose_mode, kl_rows, lossy_checks, mode_checks
from .summaries import SummaryViews, parity_metrics, parity_sentence

NAME = "parity"
PROMPTS_RESOURCE = "data/parity_prompts.jsonl"
N_ORDERS = 3
BATCH = 8
MAX_LISTED = 10
FIELDS = ("category", "example_id", "question_index", "question_polarity", "context_condition", "context",
          "question", "answers", "label", "unknown_idx", "biased_idx")
NO_BASELINE = ("parity compares an export with the model it was exported from: pass the source model "
               "(e.g. the Hugging Face directory it was exported from) as --baseline")

Progress = Callable[[str], None]


# -- the shipped prompts ---------------------------------------------------------------------------------------
def load_parity_prompts(path: str | Path | None = None) -> list[BBQItem]:
    """The parity items in file order: the ones edgeval ships, or those in ``path`` (same jsonl fields)."""
    where = str(path) if path is not None else f"edgeval/{PROMPTS_RESOURCE}"
    try:
        text = (Path(path).read_text(encoding="utf-8") if path is not None
                else resources.files("edgeval").joinpath(PROMPTS_RESOURCE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read parity prompts: {exc}", path=where) from None
    items = [parse_item(_json_line(line, f"line {n}", where), f"line {n}", where)
             for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    keys = [item.key for item in items]
    if not items or len(set(keys)) != len(keys):
        raise DataError("no items" if not items else "(category, example_id) is not unique", path=where)
    return items


def _json_line(line: str, at: str, where: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise DataError(f"{at}: not valid JSON: {exc}", path=where) from None


def parse_item(record: Any, at: str, where: str) -> BBQItem:
    """One jsonl record (the :class:`BBQItem` fields) -> item; DataError naming the line when malformed."""
    if not isinstance(record, dict) or set(record) != set(FIELDS):
        raise DataError(f"{at}: expected exactly the fields {', '.join(FIELDS)}", path=where)
    answers = record["answers"]
    if not (isinstance(answers, list) and len(answers) == 3 and all(isinstance(a, str) and a for a in answers)):
        raise DataError(f"{at}: 'answers' must be a list of 3 non-empty strings", path=where)
    label, unknown = _index(record, "label", at, where), _index(record, "unknown_idx", at, where)
    biased = None if record["biased_idx"] is None else _index(record, "biased_idx", at, where)
    if biased == unknown:
        raise DataError(f"{at}: 'biased_idx' cannot be the unknown option", path=where)
    text = {k: str(record[k]) for k in ("category", "question_index", "question_polarity", "context_condition",
                                        "context", "question")}
    return BBQItem(text["category"], _index(record, "example_id", at, where, None), text["question_index"],
                   text["question_polarity"], text["context_condition"], text["context"], text["question"],
                   tuple(answers), label, unknown, biased)


def _index(record: dict, key: str, at: str, where: str, high: int | None = 2) -> int:
    """A non-negative integer field (an option index 0..``high`` unless ``high`` is None)."""
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (high is not None and value > high):
        wanted = "a non-negative integer" if high is None else f"an option index 0..{high}"
        raise DataError(f"{at}: '{key}' must be {wanted}, got {value!r}", path=where)
    return value


# -- prompts as token ids --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptSet:
    """Token ids of every (item, order) prompt, item-major, fitted to the runtimes' longest accepted length."""

    items: tuple[BBQItem, ...]
    orders: tuple[tuple[int, int, int], ...]
    ids: list[list[int]]
    truncated: int
    max_len: int | None
    tokenizer_mismatches: int


def encode_prompts(tokenizer: Any, items: Sequence[BBQItem], orders: Sequence[Sequence[int]]) -> list[list[int]]:
    """Letter prompts (as the BBQ validator builds them) of every item in every order, item-major."""
    return [encode_letter_prompt(tokenizer, item, order) for item in items for order in orders]


def max_len(runtime: Any) -> int | None:
    """Longest sequence a runtime accepts (its ``max_seq_len``); None = any."""
    limit = runtime.max_seq_len
    return int(limit) if limit else None


def truncate_left(seqs: list[list[int]], limit: int | None) -> tuple[list[list[int]], int]:
    """Keep the last ``limit`` tokens of each sequence; returns (sequences, how many were cut)."""
    if limit is None:
        return seqs, 0
    return [s[-limit:] for s in seqs], sum(len(s) > limit for s in seqs)


def build_prompts(candidate: Any, reference: Any, items: Sequence[BBQItem]) -> PromptSet:
    """Encode with the candidate's tokenizer, compare with the reference's, fit to both runtimes' limits."""
    orders = cyclic_orders(N_ORDERS)
    ids = encode_prompts(candidate.tokenizer, items, orders)
    ref_ids = encode_prompts(reference.tokenizer, items, orders)
    mismatches = sum(a != b for a, b in zip(ids, ref_ids, strict=True))
    limits = [n for n in (max_len(candidate), max_len(reference)) if n]
    limit = min(limits) if limits else None
    fitted, truncated = truncate_left(ids, limit)
    return PromptSet(tuple(items), orders, fitted, truncated, limit, mismatches)


# -- logits of both runtimes -----------------------------------------------------------------------------------
@dataclass
class LogitDiff:
    """Running |Δlogit| statistics over every real position of every prompt."""

    max_all: float = 0.0
    max_next: float = 0.0
    total: float = 0.0
    values: int = 0
    positions: int = 0
    top1_same: int = 0

    def add(self, cand: np.ndarray, ref: np.ndarray) -> None:
        if cand.shape != ref.shape:
            raise MeasurementError(f"candidate logits have shape {cand.shape}, the reference's {ref.shape}: "
                                   "not the same vocabulary, or the runtimes disagree on the positions")
        step = rows_within_budget(1, int(cand.shape[-1]), SCRATCH_BYTES, max(len(cand), 1), itemsize=8)
        for start in range(0, len(cand), step):  # float64 differences a block of positions at a time
            diff = np.abs(cand[start:start + step].astype(np.float64) - ref[start:start + step].astype(np.float64))
            self.max_all = max(self.max_all, float(diff.max()))
            self.total += float(diff.sum())
        self.max_next = max(self.max_next, float(diff[-1].max()))
        self.values += cand.size
        self.positions += len(cand)
        self.top1_same += int((cand.argmax(-1) == ref.argmax(-1)).sum())

    def summary(self) -> dict[str, Any]:
        return {"max_abs_logit_diff": self.max_all, "max_abs_logit_diff_next_token": self.max_next,
                "mean_abs_logit_diff": self.total / max(self.values, 1), "positions": self.positions,
                "top1_agreement_all_positions": self.top1_same / max(self.positions, 1)}


def compare_logits(candidate: Any, reference: Any, seqs: list[list[int]],
                   batch: int = BATCH) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Next-token logits ``(N, V)`` of candidate and reference (in prompt order), the Δlogit statistics and the
    KL / NLL figures (:class:`~edgeval.validators.parity_lossy.Divergence`).

    Prompts are batched by length; each batch is run once per runtime (``sequence_logits``, whose last row is
    the next-token logits), so memory stays at one batch of full-vocabulary logits per runtime: at most
    ``batch`` prompts, fewer when their logits would exceed the logits budget
    (:func:`~edgeval.logprobs.logits_budget`)."""
    diff, div = LogitDiff(), Divergence()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    cand_next: list[np.ndarray | None] = [None] * len(seqs)
    ref_next: list[np.ndarray | None] = [None] * len(seqs)
    width = max(_width(candidate) or 0, _width(reference) or 0) or None
    start = 0
    while start < len(order):
        idx = _next_batch(order, start, seqs, batch, width)
        start += len(idx)
        chunk = [seqs[i] for i in idx]
        for i, c, r in zip(idx, candidate.sequence_logits(chunk), reference.sequence_logits(chunk), strict=True):
            diff.add(np.asarray(c), np.asarray(r))
            div.add(np.asarray(c), np.asarray(r), seqs[i])
            cand_next[i], ref_next[i] = np.array(c[-1], np.float32), np.array(r[-1], np.float32)
            width = max(width or 0, c.shape[-1], r.shape[-1])
    if any(x is None for x in cand_next + ref_next):
        raise RuntimeError("a parity prompt was not scored")
    return (np.stack([x for x in cand_next if x is not None]), np.stack([x for x in ref_next if x is not None]),
            {**diff.summary(), **div.summary()})


def _width(runtime: Any) -> int | None:
    """The runtime's logits width as far as known before this run: what it has returned so far
    (:meth:`~edgeval.runtimes.base.BaseRuntime.logits_width`), else its tokenizer's size."""
    return runtime.logits_width() or tokenizer_size(runtime.tokenizer)


def _next_batch(order: list[int], start: int, seqs: list[list[int]], batch: int, width: int | None) -> list[int]:
    """The prompts of the next batch (``order`` is sorted by length): up to ``batch``, as many as the logits
    budget allows for the longest of them at ``width`` columns."""
    longest = len(seqs[order[min(start + batch, len(order)) - 1]])
    return order[start:start + rows_within_budget(longest, width, logits_budget(), batch)]


# -- answer letters and options --------------------------------------------------------------------------------
def option_choices(logprobs: np.ndarray, orders: Sequence[Sequence[int]]) -> np.ndarray:
    """(items·orders, 3) letter log-probs -> each item's option after summing over orders (BBQ letter mode)."""
    return option_scores(logprobs, orders).argmax(axis=1)


def letter_parity(cand_next: np.ndarray, ref_next: np.ndarray, letter_ids: list[list[int]],
                  prompts: PromptSet) -> dict[str, Any]:
    """Agreement of the chosen letter per prompt and of the final option per item, and where they differ."""
    cand_lp, ref_lp = letter_logprobs(cand_next, letter_ids), letter_logprobs(ref_next, letter_ids)
    cand_letter, ref_letter = cand_lp.argmax(1), ref_lp.argmax(1)
    cand_opt, ref_opt = option_choices(cand_lp, prompts.orders), option_choices(ref_lp, prompts.orders)
    ranked = np.sort(ref_lp, axis=1)
    return {"letter_agreement": float((cand_letter == ref_letter).mean()),
            "option_agreement": float((cand_opt == ref_opt).mean()),
            "max_abs_letter_logprob_diff": float(np.abs(cand_lp - ref_lp).max()),
            "min_reference_letter_margin": float((ranked[:, -1] - ranked[:, -2]).min()),
            "letter_disagreements": _disagreements(prompts, cand_letter, ref_letter)}


def _disagreements(prompts: PromptSet, cand: np.ndarray, ref: np.ndarray) -> list[dict[str, Any]]:
    """The first few prompts whose letters differ: item key, order shown, both letters."""
    out = []
    for p in np.flatnonzero(cand != ref)[:MAX_LISTED]:
        item, order = prompts.items[p // len(prompts.orders)], prompts.orders[p % len(prompts.orders)]
        out.append({"category": item.category, "example_id": item.example_id, "order": list(order),
                    "candidate": LETTERS[int(cand[p])], "reference": LETTERS[int(ref[p])]})
    return out


# -- report ----------------------------------------------------------------------------------------------------
def parity_checks(results: dict[str, Any], settings: Mapping[str, Any], mode: str = "exact") -> list[Check]:
    """The checks of ``mode``: lossy ones (:func:`~edgeval.validators.parity_lossy.lossy_checks`) plus tokenizer
    agreement, or the exact ones (one per measurement; ``min_letter_agreement`` gates letter and option agreement)."""
    if mode == "lossy":
        return lossy_checks(results, settings) + [_tokenizer_check(results)]
    higher = {"direction": "higher_is_better"}
    letters = settings.get("min_letter_agreement")
    cached = [] if results.get("max_abs_cached_logit_diff") is None else [
        threshold_check("parity.cached_logit_diff", NAME, "max |delta logit|, candidate with its KV cache "
                        "(shared prefixes computed once)", results["max_abs_cached_logit_diff"],
                        settings.get("max_abs_logit_diff"), direction="lower_is_better")]
    return cached + [
        threshold_check("parity.max_abs_logit_diff", NAME, "max |delta logit|", results["max_abs_logit_diff"],
                        settings.get("max_abs_logit_diff"), direction="lower_is_better"),
        threshold_check("parity.top1_agreement", NAME, "next-token top-1 agreement", results["top1_agreement"],
                        settings.get("min_top1_agreement"), **higher),
        threshold_check("parity.letter_agreement", NAME, "answer-letter agreement", results["letter_agreement"],
                        letters, **higher),
        threshold_check("parity.option_agreement", NAME, "answer-option agreement (orders summed)",
                        results["option_agreement"], letters, **higher),
        _tokenizer_check(results),
    ]


def _tokenizer_check(results: Mapping[str, Any]) -> Check:
    return threshold_check("parity.tokenizer_agreement", NAME, "tokenizer agreement", results["tokenizer_agreement"],
                           1.0, direction="higher_is_better")


def _with_mode(check: Check, mode: Mode) -> Check:
    return replace(check, message=f"{check.message} [{mode.name} mode: {mode.reason}]")


@dataclass(frozen=True)
class ParitySettings(Settings):
    """The ``parity`` section of the policy (also read by ``edgeval export --policy``). ``lossy_*`` bounds are
    measured on SmolLM2-135M (docs/parity.md): int8 dynamic and int4 RTN pass, broken candidates fail; the
    agreement bounds do not separate them there and are off."""

    mode: Literal["auto", "exact", "lossy"] = setting(
        "auto", "exact-export or lossy (quantized) bounds; auto: lossy only when the artifact holds quantized ops")
    max_abs_logit_diff: float | None = setting(1e-2, exclusiveMinimum=0)
    min_top1_agreement: float | None = setting(0.99, minimum=0, maximum=1)
    min_letter_agreement: float | None = setting(1.0, minimum=0, maximum=1)
    lossy_max_mean_kl: float | None = setting(3.1, "lossy mode: mean next-token KL(ref || cand), nats",
                                              exclusiveMinimum=0)
    lossy_max_delta_nll: float | None = setting(0.9, "lossy mode: candidate minus reference NLL per token, nats",
                                                exclusiveMinimum=0)
    lossy_max_kl: float | None = setting(None, "lossy mode: max next-token KL over prompts (off: no separation "
                                         "measured)", exclusiveMinimum=0)
    lossy_min_top1_agreement: float | None = setting(None, "lossy mode (off by default)", minimum=0, maximum=1)
    lossy_min_letter_agreement: float | None = setting(None, "lossy mode (off by default)", minimum=0, maximum=1)
    lossy_min_option_agreement: float | None = setting(None, "lossy mode (off by default)", minimum=0, maximum=1)


def parity_report(candidate_runtime: Any, reference_runtime: Any, settings: Mapping[str, Any] | None = None, *,
                  items: Sequence[BBQItem] | None = None, progress: Progress | None = None,
                  batch: int = BATCH) -> tuple[list[Check], dict[str, Any]]:
    """Compare an export (candidate) with its source model (reference) on the parity prompts.

    ``settings`` is the ``parity`` policy section; missing keys take the policy defaults, ``None`` reports without
    gating. ``batch``: prompts per forward pass (padded to the longest). Independent of :class:`RunContext`,
    so that ``edgeval export`` can call it right after exporting."""
    parsed: ParitySettings = parse(ParitySettings, settings, NAME)
    chosen = list(items) if items is not None else load_parity_prompts()
    if not chosen:
        raise DataError("no parity items to compare on")
    prompts = build_prompts(candidate_runtime, reference_runtime, chosen)
    if progress:
        progress(f"parity: {len(prompts.ids)} prompts ({len(prompts.items)} items x {N_ORDERS} orders)")
    mode = choose_mode(parsed.mode, candidate_runtime)
    cand_next, ref_next, diff = compare_logits(candidate_runtime, reference_runtime, prompts.ids, batch)
    cached = cached_kl = None
    if candidate_runtime.kv_seq_axes() is not None:  # the path BBQ scoring takes
        shared = candidate_runtime.next_token_logits_many(prompts.ids)
        cached, cached_kl = float(np.abs(shared - ref_next).max()), float(kl_rows(ref_next, shared).mean())
    header = _header(prompts, items is None, prompt_format(candidate_runtime.tokenizer))
    results = {"mode": mode.name, "mode_reason": mode.reason, "batch": batch, **header, **diff,
               "max_abs_cached_logit_diff": cached, "mean_kl_cached": cached_kl,
               "top1_agreement": float((cand_next.argmax(1) == ref_next.argmax(1)).mean()),
               **letter_parity(cand_next, ref_next, letter_token_ids(candidate_runtime.tokenizer), prompts),
               "candidate": candidate_runtime.describe(), "reference": reference_runtime.describe()}
    checks = mode_checks(mode) + parity_checks(results, parsed, mode.name)
    return [_with_mode(c, mode) for c in checks], results


def _header(prompts: PromptSet, builtin: bool, version: str) -> dict[str, Any]:
    n = len(prompts.ids)
    return {"prompts": "builtin" if builtin else "given", "prompt_version": version,
            "items": len(prompts.items), "orders": len(prompts.orders), "n_prompts": n,
            "max_seq_len": prompts.max_len, "truncation": "left", "truncated_prompts": prompts.truncated,
            "tokenizer_mismatches": prompts.tokenizer_mismatches,
            "tokenizer_agreement": 1.0 - prompts.tokenizer_mismatches / n}


class ParityValidator(SummaryViews):
    """Gate an export on numerical parity with the model it was exported from (``--baseline``)."""

    name = NAME
    summary = ("export vs its source model (--baseline): exact bounds for a plain export, KL / delta NLL for an "
               "artifact holding quantized computation")
    Settings = ParitySettings

    view_sentence, view_metrics = staticmethod(parity_sentence), staticmethod(parity_metrics)
    title = "Parity"

    def run(self, ctx: RunContext, settings: ParitySettings) -> Outcome:
        if ctx.baseline is None:
            return Outcome((error_check("parity.baseline", NAME, BadInputError(NO_BASELINE)),), {"error": NO_BASELINE})
        ctx.progress("parity: comparing the candidate with its source model")
        checks, results = parity_report(ctx.runtime("candidate"), ctx.runtime("baseline"), settings,
                                         progress=ctx.progress)
        return Outcome(tuple(checks), results)
