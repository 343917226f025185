"""Lossy parity: task-level agreement of a quantized artifact with its source, and how the mode is chosen.

Measured on the same prompts and logits as the exact comparison (one batch in memory at a time):

- ``mean_kl`` / ``max_kl``: KL(reference || candidate) of the next-token distributions over the whole
  vocabulary (float64 log-softmax), mean and max over prompts (``mean_kl_cached`` for the KV-cached path);
- ``reference_nll`` / ``candidate_nll``: mean negative log-likelihood of each prompt's own next tokens, over
  every real position (both runtimes see the same ids); ``delta_nll`` = candidate − reference (> 0: worse);
- top-1, letter and option agreement as in the exact mode.

``parity.mode``: ``exact`` applies the exact-export bounds; ``lossy`` the ``lossy_*`` bounds, with max |Δlogit|
reported but not gated; ``auto`` picks lossy only when the candidate artifact itself holds quantized computation
(:mod:`edgeval.validators.quantized`). A policy forcing ``lossy`` on an artifact without any fails closed: an
error check ``parity.mode`` and the exact bounds for everything else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import PolicyError
from ..logprobs import token_logprobs
from ..report import Check, error_check, threshold_check
from .quantized import quantization_evidence

NAME = "parity"


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities along the last axis."""
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def kl_rows(ref_logits: np.ndarray, cand_logits: np.ndarray) -> np.ndarray:
    """KL(reference || candidate) per row of two ``(..., V)`` logit arrays, in nats (never negative)."""
    lr, lc = log_softmax(ref_logits), log_softmax(cand_logits)
    return np.maximum((np.exp(lr) * (lr - lc)).sum(axis=-1), 0.0)


@dataclass
class Divergence:
    """Running next-token KL and own-token NLL of candidate and reference over prompts."""

    kl: list[float] = field(default_factory=list)
    cand_nll: float = 0.0
    ref_nll: float = 0.0
    tokens: int = 0

    def add(self, cand: np.ndarray, ref: np.ndarray, seq: Sequence[int]) -> None:
        """One prompt: ``(T, V)`` logits of both runtimes at its real positions, and its ``T`` token ids."""
        self.kl.append(float(kl_rows(ref[-1], cand[-1])))
        targets = np.asarray(seq[1:], np.int64)
        if targets.size:
            self.cand_nll -= float(token_logprobs(cand[:-1], targets).sum())  # block-wise: no (T, V) float64
            self.ref_nll -= float(token_logprobs(ref[:-1], targets).sum())
            self.tokens += targets.size

    def summary(self) -> dict[str, Any]:
        kl = np.asarray(self.kl or [np.nan])
        cand, ref = (x / self.tokens if self.tokens else None for x in (self.cand_nll, self.ref_nll))
        return {"mean_kl": float(kl.mean()), "max_kl": float(kl.max()), "reference_nll": ref,
                "candidate_nll": cand, "delta_nll": None if cand is None or ref is None else cand - ref,
                "nll_tokens": self.tokens}


# -- the mode --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mode:
    """The bounds applied (``exact``/``lossy``), why, and the error of a refused ``lossy`` request."""

    name: str
    reason: str
    error: PolicyError | None = None


def choose_mode(requested: str, candidate_runtime: Any) -> Mode:
    """Resolve ``parity.mode`` against what the candidate's artifact holds (see the module docstring)."""
    evidence = list(quantization_evidence(candidate_runtime.artifact))
    dtype = getattr(getattr(candidate_runtime, "options", None), "dtype", None)
    if dtype not in (None, "float32"):  # the weights may be fp32, the computation is not
        evidence.append(f"computed in {dtype} (--dtype)")
    found = "the candidate holds quantized computation (" + ", ".join(evidence) + ")"
    if requested == "exact":
        return Mode("exact", "policy parity.mode = exact" + (f"; {found}" if evidence else ""))
    if evidence:
        return Mode("lossy", ("auto: " if requested == "auto" else "policy parity.mode = lossy; ") + found)
    plain = "the candidate artifact holds no quantized computation (no quantized ops, no low-precision weights)"
    if requested == "auto":
        return Mode("exact", f"auto: {plain}")
    error = PolicyError(f"policy parity.mode = lossy, but {plain}: lossy bounds apply only to quantized artifacts; "
                        "the exact bounds were applied instead")
    return Mode("exact", f"lossy refused: {plain}", error)


# -- checks ----------------------------------------------------------------------------------------------------
def lossy_checks(results: Mapping[str, Any], settings: Mapping[str, Any]) -> list[Check]:
    """The lossy mode's checks: KL, top-1, letter and option agreement, ΔNLL gated; max |Δlogit| reported."""
    higher, lower = {"direction": "higher_is_better"}, {"direction": "lower_is_better"}
    kl = settings.get("lossy_max_mean_kl")
    cached = [] if results.get("mean_kl_cached") is None else [
        threshold_check("parity.cached_mean_kl", NAME, "mean next-token KL(reference || candidate), candidate "
                        "with its KV cache", results["mean_kl_cached"], kl, **lower)]
    return cached + [
        threshold_check("parity.max_abs_logit_diff", NAME, "max |delta logit|", results["max_abs_logit_diff"],
                        None, **lower),
        threshold_check("parity.mean_kl", NAME, "mean next-token KL(reference || candidate)", results["mean_kl"],
                        kl, **lower),
        threshold_check("parity.max_kl", NAME, "max next-token KL(reference || candidate)", results["max_kl"],
                        settings.get("lossy_max_kl"), **lower),
        threshold_check("parity.delta_nll", NAME, "delta NLL of the prompts' own tokens (candidate - reference)",
                        results["delta_nll"], settings.get("lossy_max_delta_nll"), **lower),
        threshold_check("parity.top1_agreement", NAME, "next-token top-1 agreement", results["top1_agreement"],
                        settings.get("lossy_min_top1_agreement"), **higher),
        threshold_check("parity.letter_agreement", NAME, "answer-letter agreement", results["letter_agreement"],
                        settings.get("lossy_min_letter_agreement"), **higher),
        threshold_check("parity.option_agreement", NAME, "answer-option agreement (orders summed)",
                        results["option_agreement"], settings.get("lossy_min_option_agreement"), **higher),
    ]


def mode_checks(mode: Mode) -> list[Check]:
    """The error check of a refused ``lossy`` request (none otherwise)."""
    return [] if mode.error is None else [error_check("parity.mode", NAME, mode.error, "parity mode")]
