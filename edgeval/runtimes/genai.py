"""ONNX Runtime GenAI bundles: a directory with ``genai_config.json``, the decoder ONNX graph it names (built by
onnxruntime-genai's model builder: GroupQueryAttention, MatMulNBits, SkipSimplifiedLayerNormalization…) and the
tokenizer files. The bundle's own graph is run on ONNX Runtime, so the scores come from the kernels the device
runs; onnxruntime-genai itself is not needed (see docs/genai.md for why).

Every name comes from ``genai_config.json`` (``model.decoder``: ``filename``, ``inputs``/``outputs`` with the
``past_key_values.%d.key`` style templates, ``num_hidden_layers``, ``num_key_value_heads``, ``head_size``,
``context_length``), none is guessed. What the graph supports decides how prompts are fed (measured, see the doc):

- GroupQueryAttention reads each row's length from the attention mask (``seqlens_k = sum(mask) - 1``) and puts a
  row's tokens at positions ``0..len-1``: it assumes **right** padding. edgeval batches are left-padded, so a
  batch is moved to right padding, run, and its logits moved back.
- With a past, GQA takes one row per call when more than one token is new. The prefix-sharing tree's cached steps
  therefore run row by row, each row's past compacted to its real tokens; the roots (no past) run batched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import GENAI_CONFIG, Artifact
from ..errors import MeasurementError, ModelError, require
from ._util import one_line
from .base import BaseRuntime
from .onnx import _ort_errors, batch_dependent, open_session
from .options import RuntimeOptions, refuse_unsupported
from .tokenizer import find_tokenizer


@dataclass(frozen=True)
class GenAIConfig:
    """What edgeval reads from ``genai_config.json``: the decoder graph file and its input/output names."""

    path: Path
    model_file: Path
    input_ids: str
    attention_mask: str
    position_ids: str | None
    logits: str
    past_names: tuple[str, ...]      # per layer key then value: the graph inputs
    present_names: tuple[str, ...]   # the matching graph outputs
    kv_heads: int
    head_size: int
    context_length: int | None
    vocab_size: int | None


def _field(data: Any, keys: str, path: Path, kind: type | tuple[type, ...] = str, required: bool = True) -> Any:
    """``data[k1][k2]…`` for dotted ``keys``, checked to be ``kind``; ModelError naming the key when missing."""
    value = data
    for key in keys.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None and not required:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ModelError(f"{GENAI_CONFIG} has no valid '{keys}'", path=path)
    return value


def _cache_names(data: Any, section: str, prefix: str, layers: int, path: Path) -> tuple[str, ...]:
    """Key then value name per layer, from ``model.decoder.<section>.<prefix>_key_names`` style templates
    (``past_key_values.%d.key``)."""
    names = []
    for kind in ("key", "value"):
        key = f"model.decoder.{section}.{prefix}_{kind}_names"
        template = _field(data, key, path)
        if template.count("%d") != 1:
            raise ModelError(f"{GENAI_CONFIG}: '{key}' is {template!r}, expected one '%d' for the layer", path=path)
        names.append([template.replace("%d", str(layer)) for layer in range(layers)])
    return tuple(name for pair in zip(*names, strict=True) for name in pair)


#: more decoder layers than any released model has (405B Llama: 126); a count above it is refused, not allocated
MAX_LAYERS = 4096


def read_config(bundle: Path) -> GenAIConfig:
    """The bundle's ``genai_config.json``, checked: malformed JSON, a missing key or a model file that is not in
    the bundle is a ModelError naming the file."""
    path = bundle / GENAI_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"not valid JSON: {one_line(exc)}", path=path) from None
    filename = _field(data, "model.decoder.filename", path)
    model_file = (bundle / filename).resolve()
    if bundle.resolve() not in model_file.parents or not model_file.is_file():
        raise ModelError(f"model.decoder.filename '{filename}' is not a file in the bundle", path=path)
    layers = _field(data, "model.decoder.num_hidden_layers", path, int)
    if not 1 <= layers <= MAX_LAYERS:  # the names are built per layer: a hostile count must not exhaust memory
        raise ModelError(f"model.decoder.num_hidden_layers is {layers}: expected 1..{MAX_LAYERS}", path=path)
    inputs, outputs = "model.decoder.inputs.", "model.decoder.outputs."
    for key in ("model.context_length", "model.vocab_size"):
        value = _field(data, key, path, int, required=False)
        if value is not None and value < 1:  # 0 read as "no limit" and a window of -5 tokens, naming nothing
            raise ModelError(f"{GENAI_CONFIG}: '{key}' is {value}: it must be positive", path=path)
    return GenAIConfig(path, model_file, _field(data, inputs + "input_ids", path),
                       _field(data, inputs + "attention_mask", path),
                       _field(data, inputs + "position_ids", path, required=False),
                       _field(data, outputs + "logits", path), _cache_names(data, "inputs", "past", layers, path),
                       _cache_names(data, "outputs", "present", layers, path),
                       *_kv_dims(data, path), _field(data, "model.context_length", path, int, required=False),
                       _field(data, "model.vocab_size", path, int, required=False))


def _kv_dims(data: Any, path: Path) -> tuple[int, int]:
    """(kv heads, head size) of the past arrays: ``num_key_value_heads`` and ``head_size`` (else hidden / heads)."""
    heads = _field(data, "model.decoder.num_key_value_heads", path, int)
    size = _field(data, "model.decoder.head_size", path, int, required=False)
    if size is None:
        heads_q = _field(data, "model.decoder.num_attention_heads", path, int)
        size = _field(data, "model.decoder.hidden_size", path, int) // heads_q if heads_q > 0 else 0
    if heads < 1 or size < 1:
        raise ModelError(f"{GENAI_CONFIG}: {heads} key/value heads of size {size}: both must be positive", path=path)
    return heads, size


_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
           "tensor(float16)": np.float16}


class GenAIRuntime(BaseRuntime):
    """Runs an ONNX Runtime GenAI bundle's decoder graph on ONNX Runtime, fed as ``genai_config.json`` says."""

    name = "ort-genai"
    has_providers = True

    def __init__(self, artifact: Artifact, tokenizer_path: str | Path | None = None,
                 options: RuntimeOptions | None = None, threads: int | None = None):
        self.options = (options or RuntimeOptions()).with_(threads=threads)
        refuse_unsupported(self.options, self)
        self._ort = require("onnxruntime", "onnx", "running ONNX Runtime GenAI bundles")
        self.config = read_config(artifact.path)
        self.threads = self.options.threads
        self.session, self.placement = open_session(self._ort, self.config.model_file, self.options)
        self.types = {i.name: i.type for i in self.session.get_inputs()}
        self._check_graph()
        self.max_seq_len = self.config.context_length
        self.batch_invariant = not batch_dependent(self.config.model_file)
        super().__init__(artifact, find_tokenizer(artifact.path, tokenizer_path))
        self.check_vocab_width(self._declared_width(), f"output '{self.config.logits}'")

    def _check_graph(self) -> None:
        """ModelError unless the graph's inputs are exactly what the config names (ids, mask, optional positions,
        a past per layer) and its outputs hold the logits and every present."""
        cfg, path = self.config, self.config.model_file
        listing = ", ".join(f"{n}: {t}" for n, t in self.types.items())
        wanted = [cfg.input_ids, cfg.attention_mask, *cfg.past_names]
        wanted += [cfg.position_ids] if cfg.position_ids is not None and cfg.position_ids in self.types else []
        missing = [n for n in wanted if n not in self.types]
        extra = [n for n in self.types if n not in wanted]
        if missing or extra:
            what = f"lacks input '{missing[0]}'" if missing else f"has input '{extra[0]}' edgeval cannot feed"
            raise ModelError(f"{what} ({GENAI_CONFIG} names other inputs; the graph's are {listing}): not a "
                             "text-only causal LM decoder", path=path)
        if any(self.types[n] not in _DTYPES for n in wanted):
            raise ModelError(f"inputs of types edgeval cannot feed ({listing})", path=path)
        self._check_outputs()

    def _check_outputs(self) -> None:
        """ModelError unless the outputs hold every present named in the config and (batch, seq, vocab) logits."""
        cfg, path = self.config, self.config.model_file
        outputs = {o.name: o for o in self.session.get_outputs()}
        absent = [n for n in (cfg.logits, *cfg.present_names) if n not in outputs]
        if absent:
            raise ModelError(f"has no output '{absent[0]}' named in {GENAI_CONFIG} (outputs are "
                             f"{', '.join(outputs)})", path=path)
        logits = outputs[cfg.logits]
        if len(logits.shape) != 3 or logits.type not in ("tensor(float)", "tensor(float16)"):
            raise ModelError(f"output '{cfg.logits}' is {logits.type}{list(logits.shape)}, not (batch, seq, vocab) "
                             "float logits", path=path)

    def _declared_width(self) -> int | None:
        width = next(o.shape[-1] for o in self.session.get_outputs() if o.name == self.config.logits)
        return width if isinstance(width, int) and width > 0 else self.config.vocab_size

    # -- feeding the graph: right-padded rows, one row per call when there is a past ----------------------------
    def _compact(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray] | None
                 ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        """Feeds for rows ``ids`` (R, S) whose ``mask`` (R, P + S) covers a past of P columns: each row's real
        tokens moved to the left (right padding), its past reduced to its real columns. Exact for one row, or for
        any rows without a past (GQA's limits); also returns each row's real columns of ``mask``."""
        cfg, width = self.config, mask.shape[1] - ids.shape[1]
        if past is not None and len(ids) != 1:
            raise ValueError("GroupQueryAttention takes one row per call after a past")
        real = [np.flatnonzero(row) for row in mask]
        old = [cols[cols < width] for cols in real]
        new = [cols[cols >= width] - width for cols in real]
        n_old, n_new = max(map(len, old)), max(map(len, new))
        new_ids = np.full((len(ids), n_new), self.tokenizer.pad_id, np.int64)
        new_mask = np.zeros((len(ids), n_old + n_new), np.int64)
        for r, (o, n) in enumerate(zip(old, new, strict=True)):
            new_ids[r, :len(n)] = ids[r, n]
            new_mask[r, :len(o) + len(n)] = 1
        feeds: dict[str, np.ndarray] = {cfg.input_ids: new_ids, cfg.attention_mask: new_mask}
        if cfg.position_ids is not None and cfg.position_ids in self.types:
            feeds[cfg.position_ids] = np.array([len(o) for o in old])[:, None] + np.arange(n_new)[None, :]
        for k, name in enumerate(cfg.past_names):
            feeds[name] = (np.zeros((len(ids), cfg.kv_heads, 0, cfg.head_size)) if past is None
                           else past[k][:, :, old[0]])
        return {k: v.astype(_DTYPES[self.types[k]], copy=False) for k, v in feeds.items()}, real

    def _run(self, feeds: dict[str, np.ndarray], keep: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits (R, S, V) float32 and, when ``keep``, the present arrays, for one call's feeds."""
        names = [self.config.logits, *(self.config.present_names if keep else ())]
        try:
            logits, *present = self.session.run(names, feeds)
        except _ort_errors(self._ort) as exc:
            shape = tuple(feeds[self.config.input_ids].shape)
            raise MeasurementError(f"ONNX Runtime failed on a batch of shape {shape}: {one_line(exc)}",
                                   path=self.config.model_file) from None
        return np.asarray(logits, np.float32), present

    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """A left-padded batch run right-padded (what GQA assumes), its logits put back at the left-padded places."""
        feeds, real = self._compact(input_ids, attention_mask, None)
        logits, _ = self._run(feeds, keep=False)
        out = np.zeros((*input_ids.shape, logits.shape[-1]), np.float32)
        for r, cols in enumerate(real):
            out[r, cols] = logits[r, :len(cols)]
        return out

    def kv_seq_axes(self) -> list[int] | None:
        """The past arrays are (batch, kv heads, seq, head size), and one more array rides along the cache: the
        token ids (batch, seq), so that a step can run its past's last token again (see :meth:`_after_past`). No
        prefix sharing for a batch-dependent graph."""
        return [2] * len(self.config.past_names) + [1] if self.batch_invariant else None

    def _after_past(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray], row: int
                    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Row ``row``'s new tokens, an all-ones mask and its past reduced to its real columns. With one new token
        the past's last token is run again with it: GQA's one-token (decode) kernel differs from its prompt kernel
        in the last bits (2e-5 logits on SmolLM2 fp32), which int8 activations (MatMulNBits) turn into 0.3, and the
        gate scores what the device computes when it reads the whole prompt."""
        width = mask.shape[0] - ids.shape[0]
        old, new = np.flatnonzero(mask[:width]), np.flatnonzero(mask[width:])
        tokens, kept = ids[new], old
        if len(new) == 1 and len(old):
            tokens, kept = np.concatenate([past[-1][row, old[-1:]], tokens]), old[:-1]
        kv = [arr[row:row + 1][:, :, kept] for arr in past[:-1]]
        return tokens[None, :], np.ones((1, len(kept) + len(tokens)), np.int64), kv

    def _cached_step(self, input_ids: np.ndarray, attention_mask: np.ndarray, positions: np.ndarray,
                     past: list[np.ndarray] | None, keep: bool) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """The tree's step: roots batched (no past), later levels one row per call (GQA takes one row when several
        new tokens follow a past); presents laid out as the tree's mask says (each row's real columns), the token
        ids last."""
        rows = range(len(input_ids))
        calls = ([(list(rows), input_ids, attention_mask, None)] if past is None else
                 [([r], *self._after_past(input_ids[r], attention_mask[r], past, r)) for r in rows])
        last = np.zeros((len(input_ids), 0), np.float32)
        present: list[np.ndarray] = []
        for members, ids, mask, kv in calls:
            feeds, _ = self._compact(ids, mask, kv)
            logits, got = self._run(feeds, keep)
            if not last.size:
                last = np.zeros((len(input_ids), logits.shape[-1]), np.float32)
                present = [np.zeros((len(input_ids), g.shape[1], attention_mask.shape[1], g.shape[3]), g.dtype)
                           for g in got]
            fed = mask[:, mask.shape[1] - ids.shape[1]:].sum(axis=1)  # real new tokens of each row of this call
            for i, row in enumerate(members):
                last[row] = logits[i, fed[i] - 1]
                cols = np.flatnonzero(attention_mask[row])
                for arr, new in zip(present, got, strict=True):
                    arr[row][:, cols] = new[i][:, :len(cols)]
        if not keep:
            return last, None
        tokens = input_ids if past is None else np.concatenate([past[-1], input_ids], axis=1)
        return last, [*present, tokens]

    def describe(self) -> dict:
        return {"runtime": self.name, "version": self._ort.__version__, "threads": self.threads,
                "providers": self.session.get_providers(), "nodes_by_provider": self.placement,
                "bundle_config": GENAI_CONFIG,
                "graph": self.config.model_file.name, "kv_cache": self.batch_invariant,
                "batch_invariant": self.batch_invariant,
                "feeding": "right-padded batches; cached steps one row per call (GroupQueryAttention)"}

    def close(self) -> None:
        self.session = None
