"""The one runtime protocol: a model artifact in, next-token logits (or logits at every position) out.

Every backend implements :meth:`Runtime.forward` on a left-padded ``(batch, seq)`` int64 batch with its attention
mask and returns float32 logits ``(batch, seq, vocab)``. Padding, position handling, bucketing and the NaN check
live here, once, in :class:`BaseRuntime`.

Positions: rows are left-padded and ``position_ids = max(cumsum(mask) - 1, 0)``, so a sequence gets the same
positions whether or not it is padded. Backends that take ``position_ids`` are fed exactly that; exporters in
:mod:`edgeval.converters` bake the same rule into graphs that only take ``input_ids`` and ``attention_mask``.
"""
from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from ..artifacts import Artifact
from ..errors import MeasurementError, ModelError
from .options import RuntimeOptions
from .tokenizer import Tokenizer


@runtime_checkable
class Runtime(Protocol):
    """What validators may rely on, and all they may rely on. Implementations: onnx, tflite, torch, llama.cpp
    (and plugins); :class:`BaseRuntime` provides every member but ``_forward`` and ``describe``. The conformance
    test (``tests/test_runtime_conformance.py``) runs every registered runtime through it."""

    #: the runtime's registry name (``--runtime NAME``), recorded in reports and checkpoints
    name: str
    artifact: Artifact
    tokenizer: Tokenizer
    #: what it was opened with (threads, provider, device, dtype)
    options: RuntimeOptions
    #: longest sequence the artifact accepts (a static-shape bucket); None: any length
    max_seq_len: int | None
    #: False when a row's logits depend on the rest of its batch (then prompts run one per call)
    batch_invariant: bool
    #: tokens asked for / actually run by next_token_logits_many (prefix sharing is the difference)
    tokens_requested: int
    tokens_computed: int
    #: which options the class honours (checked before it is opened): an execution provider, a device, dtypes
    has_providers: bool
    has_devices: bool
    dtypes: tuple[str, ...]

    def kv_seq_axes(self) -> list[int] | None:
        """Per past key/value array its sequence axis; None when prompts cannot share prefixes through a cache."""

    def computes_last_only(self) -> bool:
        """Whether next-token logits are computed for the last position alone (else batches are sized by the
        logits budget, :func:`edgeval.logprobs.logits_budget`)."""

    def logits_width(self) -> int | None:
        """The logits' vocabulary dimension as far as known (seen so far, else the tokenizer's size)."""

    def sequence_logprobs(self, sequences: Sequence[Sequence[int]],
                          starts: Sequence[int] | None = None) -> list[np.ndarray]:
        """For each sequence, float64 log-probabilities of its tokens from ``starts[i]`` (default 1) on, each given
        the tokens before it, without a ``(batch, seq, vocab)`` float64 array."""

    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits ``(B, T, V)`` float32 for a left-padded int64 batch and its 0/1 mask."""

    def next_token_logits(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits ``(B, V)`` of the token after each sequence."""

    def sequence_logits(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """For each sequence, logits ``(len, V)`` at every one of its positions (padding removed)."""

    def describe(self) -> dict:
        """Facts for the report: runtime name, version, threads, providers, shape buckets."""

    def next_token_logits_many(self, sequences: Sequence[Sequence[int]], *, max_rows: int = 32, window: int = 192,
                               progress: Callable[[int], None] | None = None,
                               columns: Sequence[int] | None = None) -> np.ndarray:
        """Logits ``(B, V)`` after each of many sequences (``(B, len(columns))``: those token ids only, each row
        checked finite whole first); shared prefixes computed once where the runtime has a KV cache."""

    def close(self) -> None:
        """Release the model (sessions, interpreters, memory); the runtime is not used afterwards."""


def position_ids(attention_mask: np.ndarray) -> np.ndarray:
    """Positions that ignore left padding: 0 at each row's first real token."""
    return np.maximum(np.cumsum(attention_mask, axis=-1) - 1, 0).astype(np.int64)


def pad_left(sequences: Sequence[Sequence[int]], pad_id: int,
             length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad token sequences to ``length`` (default: the longest). Returns (input_ids, attention_mask) int64."""
    if not sequences:
        raise ValueError("empty batch")
    longest = max(len(s) for s in sequences)
    if longest == 0:
        raise ValueError("a sequence in the batch has no tokens")
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"sequence of {longest} tokens does not fit length {length}")
    ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, length - len(seq):] = seq
            mask[row, length - len(seq):] = 1
    return ids, mask


def tokenizer_size(tokenizer: Tokenizer) -> int | None:
    """1 + the largest id ``tokenizer`` can produce (base vocabulary and added tokens); None when unknown.
    Cached on the tokenizer object."""
    cached = getattr(tokenizer, "_edgeval_size", None)
    if cached is not None:
        return cached
    inner = getattr(tokenizer, "_tk", None)
    size = None
    if inner is not None and hasattr(inner, "get_vocab"):
        try:
            fast = hasattr(inner, "get_vocab_size")  # tokenizers.Tokenizer; else a transformers tokenizer
            vocab = inner.get_vocab(with_added_tokens=True) if fast else inner.get_vocab()
            size = max(vocab.values(), default=-1) + 1 or None
        except (TypeError, ValueError, AttributeError):
            size = None
    if size is not None:
        try:
            tokenizer._edgeval_size = size  # type: ignore[attr-defined]  # a cache on any tokenizer object
        except AttributeError:
            pass
    return size


class BaseRuntime:
    """Shared behaviour of every backend. Subclasses set ``name`` and implement ``_forward`` and ``describe``."""

    name = "base"
    options: RuntimeOptions = RuntimeOptions()
    has_providers = False
    has_devices = False
    dtypes: tuple[str, ...] = ("float32",)
    #: longest sequence the artifact accepts (static-shape TFLite buckets); None: any length
    max_seq_len: int | None = None
    #: tokens asked for / actually run by next_token_logits_many (prefix sharing is the difference)
    tokens_requested = 0
    tokens_computed = 0
    #: False when the artifact's kernels make one row's logits depend on the other rows of its batch (ONNX
    #: Runtime's dynamic int8 picks one activation scale per tensor per call): such a runtime runs one prompt per
    #: call, unpadded and in full (no prefix sharing), so that a prompt's score never depends on what it was
    #: batched with and is what the device computes when it runs that prompt
    batch_invariant: bool = True

    def __init__(self, artifact: Artifact, tokenizer: Tokenizer):
        self.artifact = artifact
        self.tokenizer = tokenizer

    # -- the one method a backend must provide -------------------------------------------------------------
    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"runtime": self.name}

    # -- shared --------------------------------------------------------------------------------------------
    def forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if not self.batch_invariant and len(input_ids) > 1:
            return self._forward_rows(np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64))
        logits = np.asarray(self._forward(np.asarray(input_ids, np.int64), np.asarray(attention_mask, np.int64)))
        if logits.ndim != 3 or logits.shape[:2] != tuple(input_ids.shape):
            raise MeasurementError(f"model returned logits of shape {logits.shape} for a batch of "
                                   f"{tuple(input_ids.shape)}: not a causal LM signature", path=self.artifact.path)
        return self.check_finite(logits, attention_mask.astype(bool))

    def _forward_rows(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """:meth:`forward` one row at a time, each without its left padding (padding positions get zeros)."""
        out: np.ndarray | None = None
        for row in range(len(input_ids)):
            real = np.flatnonzero(attention_mask[row])
            start = int(real[0]) if len(real) else 0
            logits = self.forward(input_ids[row:row + 1, start:], attention_mask[row:row + 1, start:])
            if out is None:
                out = np.zeros((*input_ids.shape, logits.shape[-1]), np.float32)
            out[row, start:] = logits[0]
        if out is None:
            raise ValueError("empty batch")
        return out

    def check_finite(self, logits: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """float32 ``logits`` over the tokenizer's vocabulary (only ``rows`` of them checked, when given).
        NaN/inf is a MeasurementError; a last dimension narrower than the tokenizer's vocabulary is a ModelError
        (see :meth:`check_vocab_width`)."""
        self.check_vocab_width(int(logits.shape[-1]), "the model's logits")
        self._logits_width = int(logits.shape[-1])
        if not all_finite(logits, rows):
            raise MeasurementError("model produced NaN or infinite logits", path=self.artifact.path)
        return logits.astype(np.float32, copy=False)

    def check_vocab_width(self, width: int | None, what: str) -> None:
        """Refuse (:class:`ModelError`, exit 3) logits of ``width`` columns when the tokenizer can produce ids
        >= ``width``: they would not be logits over this tokenizer's vocabulary (a hidden-state output, the wrong
        tokenizer). Wider is allowed: Hugging Face models pad the embedding beyond the tokenizer's size."""
        needed = tokenizer_size(self.tokenizer)
        if width is None or needed is None or width >= needed:
            return
        raise ModelError(f"{what} have {width} columns but the tokenizer ({self.tokenizer.source}) has ids up to "
                         f"{needed - 1}: not logits over this tokenizer's vocabulary (wrong output or wrong "
                         "tokenizer?)", path=self.artifact.path)

    def next_token_logits(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        if not self.batch_invariant and len(sequences) > 1:
            return np.concatenate([self.next_token_logits([seq]) for seq in sequences])
        ids, mask = pad_left(sequences, self.tokenizer.pad_id)
        return self.forward(ids, mask)[:, -1, :]

    def sequence_logits(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        if not self.batch_invariant and len(sequences) > 1:
            return [self.sequence_logits([seq])[0] for seq in sequences]
        ids, mask = pad_left(sequences, self.tokenizer.pad_id)
        logits = self.forward(ids, mask)
        width = ids.shape[1]
        return [logits[row, width - len(seq):, :] for row, seq in enumerate(sequences)]

    # -- many prompts with shared prefixes ------------------------------------------------------------------
    def kv_seq_axes(self) -> list[int] | None:
        """Per past key/value array, its sequence axis (batch is axis 0); None when the runtime cannot run with a
        KV cache (then :meth:`next_token_logits_many` runs every prompt in full)."""
        return None

    def _cached_step(self, input_ids: np.ndarray, attention_mask: np.ndarray, positions: np.ndarray,
                     past: list[np.ndarray] | None, keep: bool) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """One pass of left-padded ``input_ids`` (B, T) after ``past`` (None: empty), ``attention_mask`` covering
        past and new tokens, ``positions`` (B, T). Returns the last position's logits (B, V) and, when ``keep``,
        the present arrays (past followed by the new keys/values), in :meth:`kv_seq_axes` order."""
        raise NotImplementedError

    def next_token_logits_many(self, sequences: Sequence[Sequence[int]], *, max_rows: int = 32, window: int = 192,
                               progress: Callable[[int], None] | None = None,
                               columns: Sequence[int] | None = None) -> np.ndarray:
        """Logits ``(len(sequences), V)`` of the token after each sequence, shared prefixes computed once.
        ``columns``: keep those token ids only, ``(len(sequences), len(columns))`` (BBQ needs 3 letters, not a
        262k-wide row per prompt); every row is checked finite whole before it is cut.

        With a KV cache (:meth:`kv_seq_axes`) the sequences are sorted, cut into windows of ``window`` and each
        window run as a radix tree (:mod:`edgeval.runtimes.prefix`); without one, every sequence runs in full,
        sorted by length. ``max_rows`` bounds a batch (1 when the runtime is not :attr:`batch_invariant`);
        ``progress(n)`` is called as sequences are done.
        ``self.tokens_requested`` / ``self.tokens_computed`` accumulate what was asked and what was run."""
        from .prefix import tree_next_token_logits

        if any(len(seq) == 0 for seq in sequences):
            raise ValueError("a sequence has no tokens")
        seq_axes = self.kv_seq_axes()
        max_rows = max_rows if self.batch_invariant else 1
        key = (lambda i: tuple(sequences[i])) if seq_axes is not None else (lambda i: len(sequences[i]))
        order = sorted(range(len(sequences)), key=key)
        cols = None if columns is None else np.asarray(list(columns), dtype=np.int64)
        out: np.ndarray | None = None
        for idx, rows in self._next_token_chunks(order, sequences, max_rows, window if seq_axes else None):
            batch = [list(sequences[i]) for i in idx]
            self.tokens_requested += sum(map(len, batch))
            if seq_axes is None:
                logits = self.next_token_logits(batch)
                self.tokens_computed += sum(map(len, batch))
            else:
                logits, computed = tree_next_token_logits(batch, self._checked_step, seq_axes,
                                                          self.tokenizer.pad_id, max_rows=rows)
                self.tokens_computed += computed
            if cols is not None:
                logits = self.check_finite(np.asarray(logits))[:, cols]
            if out is None:
                out = np.empty((len(sequences), logits.shape[-1]), np.float32)
            out[idx] = logits
            if progress is not None:
                progress(len(idx))
        if out is None:
            raise ValueError("empty batch")
        return out

    def _checked_step(self, input_ids, attention_mask, positions, past, keep):
        logits, present = self._cached_step(input_ids, attention_mask, positions, past, keep)
        return self.check_finite(np.asarray(logits)), present

    def close(self) -> None:
        """Release the session / interpreter. The runtime is unusable afterwards."""

    # -- memory: logits sized by a budget, never (batch, seq, vocab) at once when less is needed ----------------
    #: the logits' last dimension, learned from the first logits seen (see :meth:`logits_width`)
    _logits_width: int | None = None

    def computes_last_only(self) -> bool:
        """Whether :meth:`next_token_logits` (and the cached step) compute the last position's logits alone
        (a ``next_token_logits`` output, ``logits_to_keep``); if not, they materialise ``(rows, seq, vocab)``
        and batches are sized by :func:`~edgeval.logprobs.logits_budget`."""
        return False

    def logits_width(self) -> int | None:
        """The vocabulary dimension of the logits: as seen, else the tokenizer's size; None when unknown."""
        return self._logits_width or tokenizer_size(self.tokenizer)

    def learn_logits_width(self, width: int | None) -> None:
        """Take the logits' width an earlier opening of the same model saw (a runtime closed and reopened,
        ``--resident one``), so that batches are sized as they were before the reload."""
        if width and not self._logits_width:
            self._logits_width = int(width)

    def budget_rows(self, seq_len: int, most: int) -> int:
        """Rows of ``seq_len`` positions whose full logits fit the logits budget (1 to ``most``)."""
        from ..logprobs import logits_budget, rows_within_budget

        return rows_within_budget(seq_len, self.logits_width(), logits_budget(), most)

    def _next_token_chunks(self, order: list[int], sequences: Sequence[Sequence[int]], max_rows: int,
                           window: int | None) -> Iterator[tuple[list[int], int]]:
        """Slices of ``order`` for :meth:`next_token_logits_many` and the rows a forward pass may take: windows
        of ``window`` sequences (a prefix tree each) or batches of up to ``max_rows``; fewer rows when full
        logits of the longest sequence in the slice would exceed the budget."""
        start = 0
        while start < len(order):
            size = window or max_rows
            longest = max(len(sequences[i]) for i in order[start:start + size])
            rows = max_rows if self.computes_last_only() else self.budget_rows(longest, max_rows)
            size = window or rows
            yield order[start:start + size], rows
            start += size

    def sequence_logprobs(self, sequences: Sequence[Sequence[int]],
                          starts: Sequence[int] | None = None) -> list[np.ndarray]:
        """For each sequence, float64 log-probabilities of its tokens from position ``starts[i]`` (default 1) to
        its end, each given the tokens before it (perplexity, log-likelihood scoring). Sequences run in
        consecutive batches whose logits fit the budget; the log-softmax is computed a block of rows at a time
        (:func:`~edgeval.logprobs.token_logprobs`), so no ``(batch, seq, vocab)`` float64 array exists."""
        from ..logprobs import token_logprobs

        starts = [1] * len(sequences) if starts is None else list(starts)
        if any(not 1 <= s <= len(seq) for s, seq in zip(starts, sequences, strict=True)):
            raise ValueError("a start position is outside its sequence (scored tokens need one before them)")
        out: list[np.ndarray] = []
        rows = self.budget_rows(max((len(s) for s in sequences), default=1), max(len(sequences), 1))
        for first in range(0, len(sequences), rows):
            batch = [list(seq) for seq in sequences[first:first + rows]]
            for seq, start, logits in zip(batch, starts[first:first + rows], self.sequence_logits(batch),
                                          strict=True):
                out.append(token_logprobs(logits[start - 1:-1], seq[start:]))
        return out


def all_finite(logits: np.ndarray, rows: np.ndarray | None = None) -> bool:
    """Whether every value (of the positions ``rows`` marks, a ``(B, T)`` mask) is finite, checked a block of
    positions at a time so that the check's scratch stays a few MiB whatever the vocabulary."""
    if logits.ndim < 3:
        return bool(np.isfinite(logits if rows is None else logits[rows]).all())
    step = max(1, 2**22 // max(1, logits.shape[-1]))
    for b in range(logits.shape[0]):
        real = np.arange(logits.shape[1]) if rows is None else np.flatnonzero(rows[b])
        for start in range(0, len(real), step):
            block = real[start:start + step]
            if not np.isfinite(logits[b][block]).all():
                return False
    return True
