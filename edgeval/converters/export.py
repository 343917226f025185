"""Export a causal LM to ONNX or TFLite as ``(input_ids, attention_mask) -> logits``, tokenizer files beside it.

Both exporters trace :class:`~edgeval.converters._torch_model.LogitsWrapper`: positions are computed from the mask
inside the graph, so the artifact needs no ``position_ids`` input and treats left padding the way
:mod:`edgeval.runtimes` does. ``kv_cache=True`` exports optimum's with-past layout instead
(:class:`~edgeval.converters._torch_model.CachedLogitsWrapper`), which ONNX Runtime uses to share prompt prefixes.

- ONNX (default): ``torch.onnx.export(dynamo=True)``, opset 18, dynamic batch and sequence length, one ``.onnx``
  file (weights go to external data only above the 2 GB protobuf limit, in one content-named file: see
  :func:`export_onnx`). ``legacy=True`` uses the TorchScript
  exporter (opset 17, ``dynamic_axes``): several times faster, but deprecated and tied weights are stored twice.
- TFLite: ``litert_torch.convert``, int32 inputs, one static ``(batch, seq_len)`` bucket per file.

Needs the ``torch`` extra; torch is imported when an exporter is called, not when this module is imported.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..atomic import umask_mode
from ..errors import require

INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAMES = ["logits", "next_token_logits"]
DYNAMIC_AXES = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                "logits": {0: "batch", 1: "sequence"}, "next_token_logits": {0: "batch"}}


def export_onnx(model: Any, out_path: str | Path, *, legacy: bool = False, opset: int | None = None,  # noqa: PLR0913  (keyword-only options of a public API)
                tokenizer: str | Path | None = None, next_token_output: bool = False,
                kv_cache: bool = False, external_data: bool | None = None,
                fused_attention: bool | None = None) -> Path:
    """Write ``model`` (HF dir, ``.gguf`` or loaded model) to ``out_path`` as ONNX; return the path.

    Output ``logits`` (batch, seq, vocab). With ``next_token_output`` also ``next_token_logits`` (batch, 1, vocab),
    the last position's row of ``logits``, and the ``logits_last_only`` switch (:mod:`edgeval.converters.kv_export`):
    ONNX Runtime runs every node whatever outputs are asked for, so the runtime feeds the switch 1 when it reads
    ``next_token_logits`` alone and the LM head then runs at the last position only (without the switch, SmolLM2's
    full-prompt BBQ scoring spent 19 % of its kernel time in an LM head over every position that nothing read).

    With ``kv_cache`` the graph takes ``position_ids`` and ``past_key_values.N.key/value`` and also returns
    ``present.N.key/value`` (optimum's with-past layout): ONNX Runtime then computes prompts' shared prefixes once
    (BBQ letter scoring on SmolLM2: 94 instead of 383 tokens per item). A plain forward pass feeds an empty past.

    ``fused_attention`` (default: on with ``kv_cache``) exports grouped-query attention without repeating the
    key/value heads, for the model types where that is exact (:mod:`edgeval.converters.kv_export`); with
    ``kv_cache`` the graph also gets the ``logits_last_only`` switch (whether or not ``next_token_output``), so
    that a cached step computes the LM head at the last position only. Both leave the logits unchanged (the
    export's parity check measures it).

    ``opset`` defaults to 18 (dynamo) or 17 (legacy); ``tokenizer`` overrides where tokenizer files come from.

    External data (weights above the 2 GB protobuf limit, or ``external_data=True``): every tensor goes to ONE
    file beside the graph named after its content, ``weights-<sha256 of the tensors, 16 hex>.onnx.data``, never
    after ``out_path``. Two exports of the same weights under different names therefore store byte-identical
    data files under the same name (and can share one in a folder), and the graph refers to it by that name."""
    torch = require("torch", "torch", "exporting to ONNX")
    require("onnx", "torch", "exporting to ONNX")
    from . import _torch_model as tm
    from . import kv_export

    loaded, source = tm.load_torch_model(model)
    out = _prepare(out_path)
    outputs = OUTPUT_NAMES[: 2 if next_token_output else 1]
    args: Any
    axes: Any
    shapes: Any  # the two exporters take the dynamic shapes in different forms
    if kv_cache:
        wrapper = tm.CachedLogitsWrapper(loaded, next_token=next_token_output)
        args, inputs, axes, shapes = _cache_io(torch, wrapper, outputs)
        outputs = outputs + [name.replace("past_key_values", "present") for name in inputs[3:]]
    else:
        wrapper = tm.LogitsAndNextWrapper(loaded) if next_token_output else tm.LogitsWrapper(loaded)
        args, inputs, axes, shapes = tm.sample_batch(2, 8), INPUT_NAMES, DYNAMIC_AXES, _dynamic_shapes(torch)
    fused = kv_cache if fused_attention is None else fused_attention
    with kv_export.grouped(loaded, fused):
        if legacy:
            torch.onnx.export(wrapper, args, str(out), dynamo=False, opset_version=opset or 17,
                              input_names=inputs, output_names=outputs, dynamic_axes=axes)
        else:
            program = torch.onnx.export(wrapper, args, dynamo=True, opset_version=opset or 18, verbose=False,
                                        input_names=inputs, output_names=outputs, dynamic_shapes=shapes)
            program.save(str(out), external_data=None)  # None: external data only when the weights exceed 2 GB
    if kv_cache or next_token_output:
        kv_export.add_last_logits_switch(out)
    name_external_data(out, force=bool(external_data))
    tm.write_tokenizer(source, out.parent, tokenizer)
    return out


def name_external_data(path: Path, force: bool = False) -> Path | None:
    """Move the external data of the ONNX model at ``path`` (if any, or all tensors when ``force``) into one
    content-named file beside it (see :func:`export_onnx`); remove the exporter's own data files. Returns the
    data file, or None when the model keeps its weights inline."""
    onnx = require("onnx", "torch", "exporting to ONNX")
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(path), load_external_data=False)
    old = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    if not old and not force:
        return None
    onnx.load_external_data_for_model(model, str(path.parent))
    digest = hashlib.sha256()
    for tensor in model.graph.initializer:
        digest.update(tensor.SerializeToString(deterministic=True))
    name = f"weights-{digest.hexdigest()[:16]}.onnx.data"
    for location in old | {name}:
        (path.parent / location).unlink(missing_ok=True)
    convert_model_to_external_data(model, all_tensors_to_one_file=True, location=name, size_threshold=0)
    onnx.save_model(model, str(path))
    return path.parent / name


def artifact_bytes(path: Path) -> int:
    """Bytes of a model on disk: the file plus, for ONNX, the external data files it refers to."""
    total = path.stat().st_size
    if path.suffix.lower() != ".onnx":
        return total
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    files = {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}
    return total + sum((path.parent / f).stat().st_size for f in files if (path.parent / f).is_file())


def export_tflite(model: Any, out_path: str | Path, *, batch: int, seq_len: int,
                  tokenizer: str | Path | None = None, quant_config: Any = None) -> Path:
    """Write ``model`` to ``out_path`` as a TFLite flatbuffer with a static ``(batch, seq_len)`` int32 signature
    (``serving_default``: ``args_0`` input ids, ``args_1`` attention mask → ``output_0`` logits); return the path.

    ``quant_config``: a ``litert_torch`` ``QuantConfig`` applied at conversion (see
    :mod:`edgeval.converters.quantization.tflite`); None keeps float32 weights."""
    torch = require("torch", "torch", "exporting to TFLite")
    litert_torch = require("litert_torch", "torch", "exporting to TFLite")
    from . import _torch_model as tm

    loaded, source = tm.load_torch_model(model)
    out = _prepare(out_path)
    converted = litert_torch.convert(tm.LogitsWrapper(loaded), tm.sample_batch(batch, seq_len, torch.int32),
                                     quant_config=quant_config)
    converted.export(str(out))
    out.chmod(umask_mode())  # whatever litert's writer does, the flatbuffer gets the umask's mode
    tm.write_tokenizer(source, out.parent, tokenizer)
    return out


def _dynamic_shapes(torch: Any) -> dict[str, dict[int, Any]]:
    """Dynamic batch and sequence dimensions, shared by both inputs."""
    batch, seq = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=1)
    return {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}


def _cache_io(torch: Any, wrapper: Any, outputs: list[str]) -> tuple[tuple, list[str], dict, tuple]:
    """Sample arguments, input names, legacy dynamic axes and dynamo dynamic shapes of the with-past layout."""
    args = wrapper.sample()
    past = [f"past_key_values.{i}.{kind}" for i in range(wrapper.layers) for kind in ("key", "value")]
    present = [name.replace("past_key_values", "present") for name in past]
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
            "position_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"},
            "next_token_logits": {0: "batch"},
            **{name: {0: "batch", 2: "past_sequence"} for name in past},
            **{name: {0: "batch", 2: "total_sequence"} for name in present}}
    dynamic = torch.export.Dim.DYNAMIC  # the exporter works out how total, past and new lengths relate
    shapes = ({0: dynamic, 1: dynamic}, {0: dynamic, 1: dynamic}, {0: dynamic, 1: dynamic},
              tuple({0: dynamic, 2: dynamic} for _ in past))  # *past: one varargs entry
    return args, ["input_ids", "attention_mask", "position_ids", *past], axes, shapes


def _prepare(out_path: str | Path) -> Path:
    out = Path(out_path).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    return out
