"""Calibration for static int8: token windows of a corpus, fed to the ONNX graph the way edgeval's runtime feeds it.

The corpus is read by :func:`edgeval.converters.pruning.calibration.read_text` (the shipped corpus, or a file,
folder of ``.txt`` or ``.jsonl``: the same rules and the same one-line errors as Wanda's ``--calibration``) and
tokenised with the tokenizer beside the ONNX file (``tokenizer.json``, as the ONNX runtime reads it: no torch or
transformers needed). Each window is the tokenizer's leading special tokens (BOS) and then consecutive corpus
tokens from a seeded random offset (numpy's generator, so not the same windows as Wanda's for a given seed).

A window becomes one batch of the graph's inputs: ``input_ids`` (1, seq_len) in the declared integer type, an
all-ones ``attention_mask``, ``position_ids`` 0..seq_len-1 and, for a KV-cache export, every
``past_key_values.N.key/value`` empty (past length 0), as :mod:`edgeval.runtimes.onnx` feeds a plain forward pass.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError, ModelError
from ..pruning.calibration import Calibration, read_text

BUILTIN = "builtin"


def corpus_path(calibration: str) -> Path | None:
    """The corpus file or folder of a ``calibration`` setting (None: the shipped corpus)."""
    return None if calibration == BUILTIN else Path(calibration).expanduser()


def check_corpus(calibration: str) -> None:
    """Read the corpus once so that a missing, empty or unreadable file fails (DataError naming it, exit 3)
    before any model is loaded."""
    path = corpus_path(calibration)
    if path is not None and not path.exists():
        raise DataError("calibration file not found", path=path)
    read_text(path)


def token_windows(model_path: Path, calibration: str, n_samples: int, seq_len: int, seed: int) -> Calibration:
    """``n_samples`` windows of ``seq_len`` token ids (numpy int64) from the corpus, with its provenance."""
    from ...runtimes.tokenizer import find_tokenizer

    tokenizer = find_tokenizer(model_path)
    text, source, digest = read_text(corpus_path(calibration))
    tokens = np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)
    prefix = tuple(tokenizer.special_affixes()[0])
    body = seq_len - len(prefix)
    if len(tokens) < body:
        raise DataError(f"calibration text has {len(tokens)} tokens, fewer than seq_len={seq_len}", path=source)
    starts = np.random.default_rng(seed).integers(0, len(tokens) - body + 1, size=n_samples)
    covered = np.zeros(len(tokens), dtype=bool)
    rows = []
    for start in starts:
        covered[start:start + body] = True
        rows.append(np.concatenate([np.asarray(prefix, dtype=np.int64), tokens[start:start + body]]))
    return Calibration(ids=np.stack(rows), source=source, sha256=digest, corpus_tokens=len(tokens), seed=seed,
                       distinct_tokens=int(covered.sum()), special_prefix=prefix)


def feeds(specs: list[Any], ids: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    """One batch of inputs for the token ids ``ids`` (1, seq_len); ModelError for an input edgeval cannot feed."""
    from ...runtimes.base import position_ids
    from ...runtimes.onnx import OnnxRuntime, _ids_input, _past_shape

    token_input = _ids_input(specs)
    if token_input is None:
        raise ModelError("no input_ids input: not a causal LM edgeval can calibrate", path=path)
    mask = np.ones_like(ids)
    values = {"mask": mask, "position": position_ids(mask), "token_type": np.zeros_like(ids)}
    out = {token_input.name: ids.astype(token_input.dtype)}
    for spec in specs:
        if spec is token_input:
            continue
        role = OnnxRuntime._role(spec)
        if role is None or spec.dtype is None:
            raise ModelError(f"input {spec} is not one edgeval can feed for calibration", path=path)
        out[spec.name] = (np.zeros(_past_shape(spec, ids.shape[0], path), dtype=spec.dtype) if role == "past"
                          else values[role].astype(spec.dtype))
    return out


def data_reader(specs: list[Any], windows: np.ndarray, path: Path) -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` yielding one batch per window (built lazily, one at a time);
    ``specs``: the graph's inputs (:func:`.graph.graph_inputs`)."""
    from onnxruntime.quantization import CalibrationDataReader

    feeds(specs, windows[:1], path)  # an input edgeval cannot feed fails now, not inside the calibrator

    class _WindowReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._rows = iter(range(len(windows)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            row = next(self._rows, None)
            return None if row is None else feeds(specs, windows[row:row + 1], path)

    return _WindowReader()


__all__ = ["BUILTIN", "corpus_path", "check_corpus", "token_windows", "feeds", "data_reader"]
