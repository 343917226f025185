"""Test doubles of a runtime that only know ``sequence_logits``: the rest of the protocol members validators use
(log-probabilities, the logits width, whether only the last position is computed) derived from it, as
:class:`edgeval.runtimes.base.BaseRuntime` derives them from ``_forward``."""
from __future__ import annotations

from edgeval.logprobs import token_logprobs


class FromSequenceLogits:
    """Mixin: ``sequence_logprobs``, ``logits_width`` and ``computes_last_only`` from ``sequence_logits``."""

    def sequence_logprobs(self, sequences, starts=None):
        starts = [1] * len(sequences) if starts is None else list(starts)
        logits = self.sequence_logits(sequences)
        return [token_logprobs(rows[start - 1:-1], list(seq)[start:])
                for seq, start, rows in zip(sequences, starts, logits, strict=True)]

    def logits_width(self):
        return None

    def computes_last_only(self) -> bool:
        return False
