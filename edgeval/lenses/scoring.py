"""Log-likelihood of token sequences on any runtime: the log-probabilities of the tokens after a given start.

A sequence ``[s_0 .. s_{n-1}]`` scored from ``start`` (>= 1) gets the log-probabilities of ``s_start .. s_{n-1}``,
token k read from the logits after its prefix ``s_0 .. s_{k-1}``. Sentences are conditioned on the tokens the
tokenizer puts before a text (its BOS), else on its BOS or EOS token, so that the first word is scored too.

Two ways, same numbers (tested against a direct torch computation):

* ``"full"`` — :meth:`Runtime.sequence_logits` on batches of whole sequences sorted by length: one forward pass
  gives the logits at every position (the default: it is the faster one; ``benchmarks/lenses_smollm2.py`` measures
  both on SmolLM2).
* ``"prefix"`` — :meth:`Runtime.next_token_logits_many` on every prefix: where the runtime has a KV cache each
  shared prefix is computed once (a StereoSet context is shared by its three continuations, a CrowS-Pairs pair
  by everything before the filler), but each prefix is its own row of logits, so it does more bookkeeping.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..plugin import DataError, ModelError, log_softmax

METHODS = ("full", "prefix")
#: prefixes per call of next_token_logits_many (bounds the (rows, vocab) logits held at once)
PREFIX_CHUNK = 256


def start_ids(tokenizer: Any) -> list[int]:
    """The ids a sentence is conditioned on: what the tokenizer adds before a text, else its BOS or EOS."""
    prefix, _ = tokenizer.special_affixes()
    if prefix:
        return list(prefix)
    for which in ("bos", "eos"):
        token = tokenizer.special_id(which)
        if token is not None:
            return [int(token)]
    if getattr(tokenizer, "eos_id", None) is not None:
        return [int(tokenizer.eos_id)]
    raise ModelError("the tokenizer has no BOS or EOS token to condition a sentence's first word on",
                     path=getattr(tokenizer, "source", None))


def token_logprobs(runtime: Any, sequences: Sequence[Sequence[int]], starts: Sequence[int], *,
                   batch_size: int = 16, method: str = "full",
                   progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """For each sequence, the log-probabilities of its tokens from ``starts[i]`` on (``1 <= start < len``)."""
    for seq, start in zip(sequences, starts, strict=True):
        if not 1 <= start < len(seq):
            raise DataError(f"a sentence encodes to no token to score (start {start} in a sequence of {len(seq)} "
                            "tokens): an empty sentence or continuation in the data, or a tokenizer that drops it")
    if method == "full":
        return _by_sequence(runtime, sequences, starts, batch_size, progress)
    if method == "prefix":
        return _by_prefix(runtime, sequences, starts, batch_size, progress)
    raise ValueError(f"unknown scoring method {method!r} (one of {', '.join(METHODS)})")


def _by_sequence(runtime, sequences, starts, batch_size, progress) -> list[np.ndarray]:
    out: list[np.ndarray | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    for at in range(0, len(order), batch_size):
        idx = order[at:at + batch_size]
        logits = runtime.sequence_logits([list(sequences[i]) for i in idx])
        for i, rows in zip(idx, logits, strict=True):
            seq, start = sequences[i], starts[i]
            lp = log_softmax(rows[start - 1:len(seq) - 1])
            out[i] = lp[np.arange(len(seq) - start), np.asarray(seq[start:])]
        if progress is not None:
            progress(len(idx))
    return out  # type: ignore[return-value]


def _by_prefix(runtime, sequences, starts, batch_size, progress) -> list[np.ndarray]:
    out: list[np.ndarray | None] = [None] * len(sequences)

    def run(idx: list[int]) -> None:
        """Every scored prefix of the sequences ``idx``, one next_token_logits_many call."""
        spans = [(i, k) for i in idx for k in range(starts[i], len(sequences[i]))]
        logits = runtime.next_token_logits_many([list(sequences[i][:k]) for i, k in spans], max_rows=batch_size)
        picked = log_softmax(logits)[np.arange(len(spans)), np.asarray([sequences[i][k] for i, k in spans])]
        at = 0
        for i in idx:
            n = len(sequences[i]) - starts[i]
            out[i], at = picked[at:at + n], at + n
        if progress is not None:
            progress(len(idx))

    batch: list[int] = []
    for i in sorted(range(len(sequences)), key=lambda i: tuple(sequences[i])):    # neighbours share prefixes
        batch.append(i)
        if sum(len(sequences[j]) - starts[j] for j in batch) >= PREFIX_CHUNK:
            run(batch)
            batch = []
    if batch:
        run(batch)
    return out  # type: ignore[return-value]
