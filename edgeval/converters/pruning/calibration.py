"""Calibration data for Wanda: token windows cut from a plain-text corpus.

edgeval ships its own corpus, ``edgeval/data/calibration.txt``: plain English prose written for this project
(no copied text, so no licence questions). It is small (about 7,000 tokens with a 50k-vocabulary tokenizer) while
Wanda's default asks for 128 windows of 512 tokens (65,536), so the windows overlap heavily; a bigger corpus of
your own is better (see docs/pruning.md). A corpus is one of:

- a UTF-8 text file;
- a directory: every ``*.txt`` below it, in sorted path order, each file one document;
- a JSON Lines file (``.jsonl``): one object per line with a string ``"text"`` field, each one document.

Documents are joined with a blank line and tokenised once, without special tokens. ``n_samples`` windows start
at offsets drawn from a seeded :class:`torch.Generator`. Each window begins with the special tokens the
tokenizer puts before a text by default (its BOS, as the model read text in training; none for tokenizers that
add none) followed by ``seq_len`` minus that many consecutive corpus tokens. The sha256 of the corpus bytes (file
names and bytes for a directory), the corpus size, and the distinct corpus tokens the windows cover against the
tokens requested go into the pruning manifest; a corpus shorter than the requested text is a loud warning
(:class:`CalibrationWarning`). Random offsets overlap a little even in a large corpus, so ``distinct_tokens`` is
reported, not gated.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import BadInputError, DataError

if TYPE_CHECKING:
    import torch

DEFAULT_SOURCE = "edgeval:data/calibration.txt"


class CalibrationWarning(UserWarning):
    """The corpus has fewer tokens than the calibration windows ask for, so the windows must overlap."""


@dataclass(frozen=True)
class Calibration:
    """Token windows ``ids`` of shape ``(n_samples, seq_len)`` and where they came from."""

    ids: "torch.Tensor"
    source: str
    sha256: str | None
    corpus_tokens: int | None = None
    seed: int | None = None
    distinct_tokens: int | None = None
    special_prefix: tuple[int, ...] = ()

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
                "tokens": int(n_samples * seq_len), "corpus_tokens": self.corpus_tokens, "seed": self.seed,
                "requested_tokens": int(n_samples * seq_len), "distinct_tokens": self.distinct_tokens,
                "special_prefix": list(self.special_prefix), "warning": self.warning()}

    def warning(self) -> str | None:
        """A loud line when the corpus is shorter than the text the windows ask for (so they must overlap)."""
        n_samples, seq_len = self.ids.shape
        requested = int(n_samples * seq_len)
        if self.distinct_tokens is None or self.corpus_tokens is None \
                or self.corpus_tokens >= n_samples * (seq_len - len(self.special_prefix)):
            return None
        return (f"calibration used {self.distinct_tokens:,} distinct tokens of the {requested:,} requested "
                f"({n_samples} x {seq_len}; the corpus has {self.corpus_tokens:,}), so its windows overlap: pass "
                "a corpus of at least that many tokens (--calibration FILE, DIR of .txt or .jsonl; docs/pruning.md)")


def read_text(path: str | Path | None = None) -> tuple[str, str, str]:
    """``(text, source, sha256)`` of the corpus at ``path`` (file, directory or JSONL; see the module docstring),
    or of the shipped corpus when ``path`` is None."""
    if path is None:
        data = resources.files("edgeval").joinpath("data/calibration.txt").read_bytes()
        return _decoded(data, DEFAULT_SOURCE), DEFAULT_SOURCE, hashlib.sha256(data).hexdigest()
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError("calibration directory has no .txt files", path=path)
        digest, docs = hashlib.sha256(), []
        for file in files:
            data = _read(file)
            digest.update(f"{file.relative_to(path).as_posix()}\0{len(data)}\0".encode())
            digest.update(data)
            docs.append(_decoded(data, file))
        text = "\n\n".join(d.strip() for d in docs if d.strip())
        sha = digest.hexdigest()
    else:
        data = _read(path)
        text = _jsonl_text(_decoded(data, path), path) if path.suffix.lower() == ".jsonl" else _decoded(data, path)
        sha = hashlib.sha256(data).hexdigest()
    if not text.strip():
        raise DataError("calibration text is empty", path=path)
    return text, str(path), sha


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read calibration text: {exc.strerror or exc}", path=path) from None


def _decoded(data: bytes, source: Any) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"calibration text is not UTF-8 (byte {exc.start})", path=source) from None
    if not text.strip():
        raise DataError("calibration text is empty", path=source)
    return text


def _jsonl_text(text: str, path: Path) -> str:
    """The ``"text"`` fields of a JSON Lines corpus joined by blank lines; a bad line names file:line."""
    docs = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{line_no}: invalid JSON: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{path}:{line_no}: expected an object with a string \"text\" field")
        if record["text"].strip():
            docs.append(record["text"].strip())
    return "\n\n".join(docs)


def windows(token_ids: list[int], n_samples: int, seq_len: int, seed: int,
            prefix: tuple[int, ...] = ()) -> tuple["torch.Tensor", int]:
    """``n_samples`` windows of ``seq_len`` tokens, ``(n, seq_len)`` int64: ``prefix`` then consecutive corpus
    tokens from seeded random offsets; and the number of distinct corpus positions they cover."""
    import torch

    body = seq_len - len(prefix)
    tokens = torch.tensor(token_ids, dtype=torch.long)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    starts = torch.randint(0, len(tokens) - body + 1, (n_samples,), generator=generator)
    head = torch.tensor(prefix, dtype=torch.long)
    covered = torch.zeros(len(tokens), dtype=torch.bool)
    rows = []
    for s in starts.tolist():
        covered[s:s + body] = True
        rows.append(torch.cat([head, tokens[s:s + body]]))
    return torch.stack(rows), int(covered.sum())


def load_calibration(tokenizer: Any, path: str | Path | None = None, *, n_samples: int = 128, seq_len: int = 512,
                     seed: int = 0) -> Calibration:
    """Tokenise the corpus (shipped or ``path``) and cut ``n_samples`` windows of ``seq_len`` tokens, each led by
    the tokenizer's own leading special tokens (``tokenizer``: a transformers tokenizer).

    Raises :class:`DataError` naming the file when it is unreadable, empty, not UTF-8 or shorter than a window;
    warns (:class:`CalibrationWarning`) when the corpus is shorter than the text the windows ask for.
    """
    from ...runtimes.tokenizer import TransformersTokenizer

    text, source, digest = read_text(path)
    token_ids = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    prefix = tuple(TransformersTokenizer(tokenizer, str(getattr(tokenizer, "name_or_path", "") or ""))
                   .special_affixes()[0])
    if len(token_ids) < seq_len - len(prefix):
        raise DataError(f"calibration text has {len(token_ids)} tokens, fewer than seq_len={seq_len}", path=source)
    ids, distinct = windows(token_ids, n_samples, seq_len, seed, prefix)
    calib = Calibration(ids=ids, source=source, sha256=digest, corpus_tokens=len(token_ids), seed=seed,
                        distinct_tokens=distinct, special_prefix=prefix)
    if line := calib.warning():
        warnings.warn(line, CalibrationWarning, stacklevel=2)
    return calib
