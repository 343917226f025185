"""Perplexity on a fixed text, beside the bias metrics, so a report shows the study's point: flat perplexity can
hide rising bias.

Text: the short English prose edgeval ships (``edgeval/data/perplexity.txt``, written for this project) or a
file given in the policy (``perplexity.text``). It is tokenised once as the model's tokenizer encodes text by
default (:meth:`~edgeval.runtimes.tokenizer.Tokenizer.encode_text`: a BOS first when the tokenizer adds one, as
``AutoTokenizer(...)(text)`` does; a model trained with BOS scores garbage without it) and cut to
``max_tokens``. Sliding windows of ``window`` tokens advance by ``stride``; each window scores only the tokens
that no earlier window scored, so every token after the first is predicted exactly once, with at least
``window - stride`` tokens of context (except in the first window; ``stride`` is capped at ``window - 1``).
``window`` is capped by the runtime's longest accepted sequence (static TFLite buckets). When the tokenizer
puts special tokens before every text (a BOS), every window begins with them, as every sequence the model read in
training did (a model that needs its BOS scores garbage on a window without it): the text windows are then
``len(prefix)`` tokens shorter, so that prefix + window fits ``window``; the prefix itself is never scored.
Perplexity = exp(mean negative log-likelihood over scored tokens).

Memory: the runtime returns the log-probabilities of the scored tokens alone
(:func:`~edgeval.logprobs.sequence_logprobs`), running windows in batches whose full logits fit the logits budget
(:func:`~edgeval.logprobs.logits_budget`, 256 MiB unless ``EDGEVAL_LOGITS_BUDGET_MB`` says otherwise), so memory
does not grow with the vocabulary beyond one window's logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DataError, MeasurementError
from ..logprobs import sequence_logprobs
from ..report import Check, threshold_check
from ..settings import Settings, setting
from .base import Outcome, RunContext
from .summaries import SummaryViews, perplexity_metrics, perplexity_sentence

BATCH = 4


def load_text(path: str | None) -> tuple[str, str]:
    """(text, source): the user's file, or the text edgeval ships."""
    if path is None:
        return resources.files("edgeval").joinpath("data/perplexity.txt").read_text(encoding="utf-8"), "builtin"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read perplexity text: {exc}", path=path) from None
    if not text.strip():
        raise DataError("perplexity text is empty", path=path)
    return text, str(path)


def windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_scored): window [begin, end) scores the tokens at positions first_scored..end-1.

    The first window scores tokens 1..window-1; each later one scores the next ``stride`` tokens with the
    ``window - stride`` tokens before them as context (``stride < window``, so there is always some).
    """
    if n_tokens < 2:
        raise DataError(f"perplexity text has {n_tokens} token(s); at least 2 are needed")
    if not 0 < stride < window:
        raise ValueError(f"need 0 < stride < window, got stride={stride}, window={window}")
    spans: list[tuple[int, int, int]] = []
    first = 1
    while first < n_tokens:
        end = min(first + stride, n_tokens) if spans else min(window, n_tokens)
        spans.append((max(0, end - window), end, first))
        first = end
    return spans


def perplexity(runtime, text: str, window: int, stride: int, max_tokens: int | None) -> dict[str, Any]:
    """Score ``text`` with ``runtime``; returns perplexity, mean NLL and the token counts."""
    prefix, suffix = runtime.tokenizer.special_affixes()
    ids = runtime.tokenizer.encode_text(text)[: max_tokens or None]
    lead = prefix if ids[:len(prefix)] == prefix else []  # prepended to every window that does not start at 0
    window = min(window, runtime.max_seq_len or window)
    span = window - len(lead)
    if span < 2:
        raise DataError(f"a window of {window} tokens leaves no room for text after the {len(lead)} special tokens")
    stride = min(stride, span - 1)
    spans = windows(len(ids), span, stride)
    nll: list[np.ndarray] = []
    for start in range(0, len(spans), BATCH):
        chunk = spans[start:start + BATCH]
        seqs = [(lead if b > 0 else []) + ids[b:e] for b, e, _ in chunk]
        # the first scored token of each window, as a position in its sequence (after the prefix, if any)
        firsts = [first - begin + len(seq) - (end - begin)
                  for (begin, end, first), seq in zip(chunk, seqs, strict=True)]
        nll.extend(-lp for lp in sequence_logprobs(runtime, seqs, firsts))
    values = np.concatenate(nll)
    mean = float(values.mean())
    if not math.isfinite(mean):
        raise MeasurementError("perplexity is not finite", path=runtime.artifact.path)
    return {"perplexity": math.exp(mean), "nll_mean": mean, "tokens": len(ids), "tokens_scored": int(values.size),
            "special_prefix": prefix, "special_suffix": suffix,
            "window": window, "stride": stride, "windows": len(spans)}


@dataclass(frozen=True)
class PerplexitySettings(Settings):
    """The ``perplexity`` section of the policy."""

    text: str | None = setting(None, "Text file to score; null: the text edgeval ships.")
    window: int = setting(256, minimum=8)
    stride: int = setting(128, minimum=1)
    max_tokens: int | None = setting(4096, minimum=16)
    max_ratio_to_baseline: float | None = setting(1.5, exclusiveMinimum=0)
    max_perplexity: float | None = setting(None, exclusiveMinimum=0)


class PerplexityValidator(SummaryViews):
    name = "perplexity"
    summary = "perplexity on a fixed text (sliding windows), vs the baseline"
    Settings = PerplexitySettings

    view_sentence, view_metrics = staticmethod(perplexity_sentence), staticmethod(perplexity_metrics)
    title = "Perplexity"

    def run(self, ctx: RunContext, settings: PerplexitySettings) -> Outcome:
        text, source = load_text(settings.get("text"))
        args = (settings["window"], settings["stride"], settings.get("max_tokens"))
        scored = {}
        for role in ctx.resident_first(["candidate"] + (["baseline"] if ctx.baseline is not None else [])):
            ctx.progress(f"perplexity: scoring the {role}")  # the loaded model first (one model at a time)
            scored[role] = perplexity(ctx.runtime(role, alone=True), text, *args)
        cand, base = scored["candidate"], scored.get("baseline")
        results: dict[str, Any] = {"text": source, "candidate": cand}
        if base is not None:
            results["baseline"] = base
            results["ratio_to_baseline"] = cand["perplexity"] / base["perplexity"]
        return Outcome(tuple(self._checks(cand, base, settings)), results)

    @staticmethod
    def _checks(cand: dict, base: dict | None, settings: Mapping[str, Any]) -> list[Check]:
        base_ppl = base["perplexity"] if base else None
        checks = [threshold_check("perplexity.value", "perplexity", "perplexity", cand["perplexity"],
                                  settings.get("max_perplexity"), baseline_value=base_ppl)]
        if base is not None:
            checks.append(threshold_check("perplexity.ratio_to_baseline", "perplexity", "perplexity ratio",
                                          cand["perplexity"] / base_ppl, settings.get("max_ratio_to_baseline")))
        return checks
