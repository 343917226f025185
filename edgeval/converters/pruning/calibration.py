"""Calibration data for Wanda: token windows cut from a plain-text corpus.

edgeval ships its own corpus, ``edgeval/data/calibration.txt``: plain English prose written for this project
(no copied text, so no licence questions). Users may pass their own UTF-8 text file instead. The text is
tokenised once, without special tokens, and ``n_samples`` windows of ``seq_len`` tokens start at offsets drawn from
a seeded :class:`torch.Generator` (windows may overlap when the corpus is short; Wanda samples C4 the same way).
The sha256 of the text bytes goes into the pruning manifest.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import BadInputError, DataError

if TYPE_CHECKING:
    import torch

DEFAULT_SOURCE = "edgeval:data/calibration.txt"


@dataclass(frozen=True)
class Calibration:
    """Token windows ``ids`` of shape ``(n_samples, seq_len)`` and where they came from."""

    ids: "torch.Tensor"
    source: str
    sha256: str | None
    corpus_tokens: int | None = None
    seed: int | None = None

    @classmethod
    def from_ids(cls, ids: "torch.Tensor", source: str = "token ids given by the caller") -> "Calibration":
        """Wrap ready-made token ids (the sha256 is that of their int64 bytes)."""
        import torch

        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.dim() != 2 or ids.numel() == 0:
            raise BadInputError("calibration ids must be a non-empty (n_samples, seq_len) tensor, "
                                f"got shape {tuple(ids.shape)}")
        digest = hashlib.sha256(ids.numpy().astype("<i8").tobytes()).hexdigest()
        return cls(ids=ids, source=source, sha256=digest)

    def to_json(self) -> dict[str, Any]:
        n_samples, seq_len = self.ids.shape
        return {"source": self.source, "sha256": self.sha256, "n_samples": int(n_samples), "seq_len": int(seq_len),
                "tokens": int(n_samples * seq_len), "corpus_tokens": self.corpus_tokens, "seed": self.seed}


def read_text(path: str | Path | None = None) -> tuple[str, str, str]:
    """``(text, source, sha256)`` of the user's file, or of the shipped corpus when ``path`` is None."""
    if path is None:
        data = resources.files("edgeval").joinpath("data/calibration.txt").read_bytes()
        source = DEFAULT_SOURCE
    else:
        path = Path(path).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"cannot read calibration text: {exc.strerror or exc}", path=path) from None
        source = str(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"calibration text is not UTF-8 (byte {exc.start})", path=source) from None
    if not text.strip():
        raise DataError("calibration text is empty", path=source)
    return text, source, hashlib.sha256(data).hexdigest()


def windows(token_ids: list[int], n_samples: int, seq_len: int, seed: int) -> "torch.Tensor":
    """``n_samples`` windows of ``seq_len`` consecutive tokens at seeded random offsets: ``(n, seq_len)`` int64."""
    import torch

    tokens = torch.tensor(token_ids, dtype=torch.long)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    starts = torch.randint(0, len(tokens) - seq_len + 1, (n_samples,), generator=generator)
    return torch.stack([tokens[int(s):int(s) + seq_len] for s in starts])


def load_calibration(tokenizer: Any, path: str | Path | None = None, *, n_samples: int = 128, seq_len: int = 512,
                     seed: int = 0) -> Calibration:
    """Tokenise the corpus (shipped or ``path``) and cut ``n_samples`` windows of ``seq_len`` tokens.

    Raises :class:`DataError` naming the file when it is unreadable, empty, not UTF-8 or shorter than ``seq_len``.
    """
    text, source, digest = read_text(path)
    token_ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    if len(token_ids) < seq_len:
        raise DataError(f"calibration text has {len(token_ids)} tokens, fewer than seq_len={seq_len}", path=source)
    ids = windows(token_ids, n_samples, seq_len, seed)
    return Calibration(ids=ids, source=source, sha256=digest, corpus_tokens=len(token_ids), seed=seed)
