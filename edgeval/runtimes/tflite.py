"""TFLite backend through ``ai_edge_litert`` (the ``tflite`` extra; no TensorFlow, no torch).

A TFLite LLM has static shapes: one file per ``(batch, seq_len)`` bucket (see
:func:`edgeval.converters.export.export_tflite`). Each call is fitted to the bucket: rows are left-padded to the
bucket's length, a short batch is filled with copies of a real row (an all-padding row can yield NaN) that are
dropped afterwards, and a long batch is split into chunks. A sequence longer than the bucket is a
:class:`~edgeval.errors.MeasurementError` naming the length needed. Dimensions the model declares dynamic
(``-1``) are passed through as they are.

Inputs are read from the ``serving_default`` signature (else the only one): named ones by name (``input_ids``,
``attention_mask``, ``position_ids``), litert-torch's ``args_0, args_1[, args_2]`` by position in that order.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import Artifact
from ..errors import MeasurementError, ModelError, require
from ._util import one_line
from .base import BaseRuntime, position_ids
from .options import RuntimeOptions, refuse_unsupported
from .tokenizer import find_tokenizer

ROLES = ("ids", "mask", "position")


def _natural_key(name: str) -> tuple[str, int]:
    """``args_10`` after ``args_2``."""
    match = re.match(r"(.*?)(\d+)$", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def assign_roles(names: list[str]) -> dict[str, str]:
    """``{role: input name}`` for roles ids/mask/position: by name where it says, else in positional order."""
    roles: dict[str, str] = {}
    for name in names:
        low = name.lower()
        role = "mask" if "mask" in low else "position" if "position" in low else "ids" if "ids" in low else None
        if role and role not in roles:
            roles[role] = name
    rest = [n for n in sorted(names, key=_natural_key) if n not in roles.values()]
    for role in ROLES:
        if role not in roles and rest:
            roles[role] = rest.pop(0)
    return roles


def fit_width(ids: np.ndarray, mask: np.ndarray, width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded rows re-padded to ``width`` columns (dropping leading all-padding columns when too wide)."""
    extra = width - ids.shape[1]
    if extra <= 0:
        return ids[:, -extra:], mask[:, -extra:]
    return (np.concatenate([np.full((ids.shape[0], extra), pad_id, ids.dtype), ids], axis=1),
            np.concatenate([np.zeros((mask.shape[0], extra), mask.dtype), mask], axis=1))


def restore_width(logits: np.ndarray, width: int) -> np.ndarray:
    """Undo :func:`fit_width` on logits ``(B, w, V)``: keep the last ``width`` positions or zero-fill in front."""
    extra = width - logits.shape[1]
    if extra <= 0:
        return logits[:, -extra:]
    return np.concatenate([np.zeros((logits.shape[0], extra, logits.shape[2]), logits.dtype), logits], axis=1)


class TFLiteRuntime(BaseRuntime):
    """Runs a ``.tflite`` causal LM with the LiteRT interpreter, fitting every batch to the model's static bucket."""

    name = "tflite"

    def __init__(self, artifact: Artifact, tokenizer_path: str | Path | None = None,
                 options: RuntimeOptions | None = None, threads: int | None = None):
        self.options = (options or RuntimeOptions()).with_(threads=threads)
        refuse_unsupported(self.options, self)
        self._litert = require("ai_edge_litert", "tflite", "running TFLite models")
        self.threads = self.options.threads
        self.runner, self.signature = self._open(artifact.path, self.threads)
        details = self.runner.get_input_details()
        self.roles = assign_roles(list(details))
        self._check_inputs(artifact.path, details)
        self.input_dtypes = {role: details[name]["dtype"] for role, name in self.roles.items()}
        shape = [int(d) for d in details[self.roles["ids"]]["shape_signature"]]
        self.bucket = tuple(None if d < 0 else d for d in shape)
        self.max_seq_len = self.bucket[1]
        output_details = self.runner.get_output_details()
        outputs = list(output_details)
        self.output = "logits" if "logits" in outputs else sorted(outputs, key=_natural_key)[0]
        super().__init__(artifact, find_tokenizer(artifact.path, tokenizer_path))
        self._check_output(output_details[self.output])

    def _check_output(self, detail: dict) -> None:
        """Float logits ``(batch, seq, vocab)`` whose vocabulary covers the tokenizer, else ModelError."""
        shape = [int(d) for d in detail.get("shape_signature", detail.get("shape", []))]
        if not np.issubdtype(detail["dtype"], np.floating) or len(shape) != 3:
            raise ModelError(f"output '{self.output}' ({np.dtype(detail['dtype']).name}{shape}) is not float "
                             "(batch, seq, vocab) logits", path=self.artifact.path)
        self.check_vocab_width(shape[-1] if shape[-1] > 0 else None, f"output '{self.output}'")

    def _open(self, path: Path, threads: int | None) -> tuple[Any, str]:
        """The signature runner of ``serving_default`` (or of the only signature)."""
        interpreter_module = require("ai_edge_litert.interpreter", "tflite", "running TFLite models")
        kwargs = {"num_threads": threads} if threads else {}
        try:
            interpreter = interpreter_module.Interpreter(model_path=str(path), **kwargs)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"LiteRT cannot load it: {one_line(exc)}", path=path) from None
        signatures = list(interpreter.get_signature_list())
        if "serving_default" not in signatures and len(signatures) != 1:
            raise ModelError(f"needs a 'serving_default' signature (signatures: {signatures or 'none'})", path=path)
        key = "serving_default" if "serving_default" in signatures else signatures[0]
        return interpreter.get_signature_runner(key), key

    def _check_inputs(self, path: Path, details: dict[str, dict]) -> None:
        """Token ids and attention mask, integer, rank 2, same shape; ModelError otherwise."""
        listing = ", ".join(f"{n}: {np.dtype(d['dtype']).name}{list(d['shape_signature'])}" for n, d in details.items())
        wanted = [details[self.roles[r]] for r in ROLES if r in self.roles]
        if len(details) > len(ROLES) or "mask" not in self.roles or not all(
                np.issubdtype(d["dtype"], np.integer) and len(d["shape"]) == 2 for d in wanted):
            raise ModelError(f"inputs are ({listing}): not a causal LM taking input_ids and attention_mask", path=path)
        if len({tuple(d["shape_signature"]) for d in wanted}) != 1:
            raise ModelError(f"inputs ({listing}) do not share one (batch, seq_len) shape", path=path)

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        bucket_batch, bucket_seq = self.bucket
        longest = int(attention_mask.sum(axis=1).max())
        if bucket_seq is not None and longest > bucket_seq:
            raise MeasurementError(f"a sequence of {longest} tokens does not fit the model's static length "
                                   f"{bucket_seq}: export a bucket with seq_len >= {longest}", path=self.artifact.path)
        width = bucket_seq or input_ids.shape[1]
        ids, mask = fit_width(input_ids, attention_mask, width, self.tokenizer.pad_id)
        step = bucket_batch or len(ids)
        chunks = [self._run_chunk(ids[i:i + step], mask[i:i + step], step) for i in range(0, len(ids), step)]
        return restore_width(np.concatenate(chunks, axis=0), input_ids.shape[1])

    def _run_chunk(self, ids: np.ndarray, mask: np.ndarray, rows: int) -> np.ndarray:
        """One invocation on exactly ``rows`` rows: missing rows are copies of the first, dropped afterwards."""
        real = len(ids)
        if real < rows:
            ids = np.concatenate([ids, np.repeat(ids[:1], rows - real, axis=0)])
            mask = np.concatenate([mask, np.repeat(mask[:1], rows - real, axis=0)])
        values = {"ids": ids, "mask": mask, "position": position_ids(mask)}
        feeds = {name: values[role].astype(self.input_dtypes[role]) for role, name in self.roles.items()}
        try:
            out = self.runner(**feeds)[self.output]
        except (ValueError, RuntimeError) as exc:
            raise MeasurementError(f"LiteRT failed on a batch of shape {ids.shape}: {one_line(exc)}",
                                   path=self.artifact.path) from None
        return np.array(out[:real])

    def describe(self) -> dict:
        batch, seq_len = self.bucket
        return {"runtime": self.name, "version": self._litert.__version__, "threads": self.threads or 1,
                "signature": self.signature, "inputs": dict(self.roles), "output": self.output,
                "bucket": {"batch": batch, "seq_len": seq_len}}

    def close(self) -> None:
        self.runner = None
