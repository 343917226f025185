"""Log-probability tools shared by every validator that scores a model's logits (BBQ, parity, perplexity, and
log-likelihood benchmarks): a float64 log-softmax, the log-probabilities of given tokens, and the answer letters
of multiple-choice prompts.

Multiple-choice letters: an item's options are shown as A/B/C in one or more orders (``order[k]`` is the
original option shown at letter k). The next-token logits are restricted to the letter tokens, each letter's
variants ("A" and " A") merged by log-sum-exp, and log-softmaxed over the letters (:func:`letter_logprobs`); an
option's score sums, over the orders, the log-probability of the letter it was shown under (:func:`option_scores`).
numpy only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

LETTERS = ("A", "B", "C")


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, in float64 (stable: the row maximum is subtracted first)."""
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def token_logprobs(logits: np.ndarray, targets: Sequence[int] | np.ndarray) -> np.ndarray:
    """Log-probability of ``targets[i]`` under the distribution of logits row ``i`` (rows ``(N, V)``, N targets).
    Computed a block of rows at a time (:data:`SCRATCH_BYTES` of float64 per block): the same values as one
    log-softmax over all rows, without an ``(N, V)`` float64 copy."""
    targets = np.asarray(targets, dtype=np.int64)
    out = np.empty(len(targets), dtype=np.float64)
    step = rows_within_budget(1, int(logits.shape[-1]), SCRATCH_BYTES, max(len(targets), 1), itemsize=8)
    for start in range(0, len(targets), step):
        block = slice(start, start + step)
        out[block] = log_softmax(logits[block])[np.arange(len(out[block])), targets[block]]
    return out


# -- memory: how many rows of logits to ask for at once ------------------------------------------------------
#: default bytes of float32 logits ``(rows, seq, vocab)`` one forward pass may return (EDGEVAL_LOGITS_BUDGET_MB)
LOGITS_BUDGET = 256 * 2**20
#: float64 scratch of one log-softmax block in :func:`token_logprobs` (its temporaries take about 4x this)
SCRATCH_BYTES = 8 * 2**20
BUDGET_ENV = "EDGEVAL_LOGITS_BUDGET_MB"


def logits_budget() -> int:
    """Bytes of logits one forward pass may materialise: ``EDGEVAL_LOGITS_BUDGET_MB`` (MiB) or
    :data:`LOGITS_BUDGET`. A value that is not a positive number is a UsageError naming the variable."""
    import os

    from .errors import UsageError

    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return LOGITS_BUDGET
    try:
        mib = float(raw)
    except ValueError:
        mib = -1.0
    if not mib > 0:
        raise UsageError(f"{BUDGET_ENV}={raw!r}: expected a positive number of MiB")
    return int(mib * 2**20)


def rows_within_budget(seq_len: int, vocab: int | None, budget: int, most: int, itemsize: int = 4) -> int:
    """How many rows of ``seq_len`` x ``vocab`` logits (``itemsize`` bytes each) fit ``budget`` bytes: at least
    1 (one row is the least a forward pass can return), at most ``most``; ``most`` when ``vocab`` is unknown
    (a tokenizer that cannot list its vocabulary, before the first logits are seen)."""
    if vocab is None or vocab <= 0:
        return max(1, most)
    return int(max(1, min(most, budget // max(1, seq_len * vocab * itemsize))))


def sequence_logprobs(runtime: Any, sequences: Sequence[Sequence[int]],
                      starts: Sequence[int]) -> list[np.ndarray]:
    """For each sequence, the float64 log-probabilities of its tokens from position ``starts[i]`` (>= 1) to its
    end, each given the tokens before it: the runtime's ``sequence_logprobs`` (a protocol member; BaseRuntime's
    sizes batches by :func:`logits_budget`)."""
    return runtime.sequence_logprobs(sequences, starts)


def cyclic_orders(n: int) -> tuple[tuple[int, int, int], ...]:
    """Option orders to show: order[k] is the original option shown at letter k. n=1: as stored; n=3: cyclic."""
    orders = ((0, 1, 2), (1, 2, 0), (2, 0, 1))
    if n not in (1, 3):
        raise ValueError(f"orders must be 1 or 3, got {n}")
    return orders[:n]


def letter_logprobs(next_logits: np.ndarray, letter_ids: list[list[int]]) -> np.ndarray:
    """(B, V) next-token logits -> (B, 3) log-probabilities of A/B/C, variants merged, normalised over letters."""
    merged = np.stack([np.logaddexp.reduce(next_logits[:, ids].astype(np.float64), axis=1) for ids in letter_ids],
                      axis=1)
    return log_softmax(merged)


def option_scores(logprobs: np.ndarray, orders: Sequence[Sequence[int]]) -> np.ndarray:
    """Letter log-probs of prompts in item-major order ``(items * len(orders), 3)`` -> each item's option scores
    ``(items, 3)``: the sum over the orders of the log-probability of the letter each option was shown under."""
    per_item = np.asarray(logprobs, dtype=np.float64).reshape(-1, len(orders), 3)
    scores = np.zeros((per_item.shape[0], 3))
    for k, order in enumerate(orders):
        for letter, option in enumerate(order):
            scores[:, option] += per_item[:, k, letter]
    return scores


def _decoded(tokenizer: Any, token_id: int, letter: str) -> str:
    """The text of one token id; ``letter`` for a minimal tokenizer (a test double) that cannot decode."""
    try:
        return tokenizer.decode([token_id])
    except (AttributeError, NotImplementedError):
        return letter


def letter_token_ids(tokenizer: Any) -> list[list[int]]:
    """For each letter, the single-token ids of its variants ("A" and " A") that decode back to the letter.

    Refused (:class:`~edgeval.errors.TokenizerError`, exit 3, naming the tokenizer file): a letter with no such
    token, and letters that share a token. A tokenizer that maps A, B and C to ``<unk>`` (or any special token)
    would otherwise make every answer a tie, both models answer option 0 everywhere, and the gate pass."""
    from .errors import TokenizerError

    where = _tokenizer_file(tokenizer)
    out: list[list[int]] = []
    for letter in LETTERS:
        ids = {tuple(tokenizer.encode(variant, add_special_tokens=False)) for variant in (letter, " " + letter)}
        singles = sorted({t[0] for t in ids if len(t) == 1})
        if not singles:
            raise TokenizerError(f"the answer letter {letter!r} is not a single token in this tokenizer", path=where)
        shown = {tid: _decoded(tokenizer, tid, letter) for tid in singles}
        real = [tid for tid in singles if shown[tid].strip().lstrip("\u0120\u2581") == letter]  # Ġ / ▁: no decoder
        if not real:
            names = ", ".join(f"{tid} ({shown[tid]!r})" for tid in singles)
            raise TokenizerError(f"the answer letter {letter!r} encodes to token(s) {names}, which do not decode "
                                 "to the letter (an unknown or special token?): BBQ answers cannot be scored",
                                 path=where)
        out.append(real)
    _refuse_shared(out, where)
    return out


def _refuse_shared(ids: list[list[int]], where: Any) -> None:
    """TokenizerError when two letters share a token id."""
    from .errors import TokenizerError

    for k, first in enumerate(LETTERS):
        for j in range(k + 1, len(LETTERS)):
            shared = set(ids[k]) & set(ids[j])
            if shared:
                raise TokenizerError(f"the answer letters {first!r} and {LETTERS[j]!r} share token id(s) "
                                     f"{sorted(shared)}: they must be distinct tokens", path=where)


def _tokenizer_file(tokenizer: Any) -> Any:
    """The file to name in an error: ``tokenizer.json`` in the tokenizer's folder, else its source."""
    source = getattr(tokenizer, "source", None)
    if source and Path(source).is_dir() and (Path(source) / "tokenizer.json").is_file():
        return Path(source) / "tokenizer.json"
    return source
