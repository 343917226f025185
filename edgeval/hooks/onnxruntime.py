"""A gate step for ONNX Runtime pipelines: call it right after a prune/export step or ``quantize_dynamic``.

    from onnxruntime.quantization import quantize_dynamic, QuantType
    from edgeval.hooks.onnxruntime import gate_onnx

    quantize_dynamic("model.onnx", "model.int8.onnx", weight_type=QuantType.QInt8)
    report = gate_onnx("model.int8.onnx", "model.onnx", validators=["size", "latency"],
                       policy={"size": {"require_savings": True}}, bless_dir="out/")

The report is written to ``report_path`` (default: ``<candidate stem>.edgeval-report.json`` beside the
candidate); with ``bless_dir``, ``BLESSED`` or ``NOT_BLESSED`` is written there. The stale marker and the
previous report are removed before the check starts, and the report, ``edgeval_report_ready`` plugins and the
marker are published in that order by :func:`edgeval.api.publish` (as ``edgeval check`` does): a plugin that
fails turns the verdict into ``error`` and the marker into ``NOT_BLESSED``. ``on_block="raise"`` (default) raises
:class:`~edgeval.errors.DeploymentBlocked`
(report attached) unless the verdict is ``pass``; ``on_block="record"`` returns the report whatever it says.

``validators=None`` runs the policy's list (``size``, ``latency``, ``bbq``, ``perplexity`` by default), like
``edgeval check``. The logit-based validators need a causal LM exported as ``(input_ids, attention_mask) ->
logits`` with its tokenizer files beside it (as :func:`edgeval.converters.export.export_onnx` writes them;
``quantize_dynamic`` does not copy them: copy ``tokenizer*.json`` next to the quantized file, as the
ONNX example does, or quantize with ``edgeval compress model.onnx --method int8 --out DIR``, which copies them and
records what it did in ``compression.json``).

Outside Python the same step is the command line::

    edgeval check model.int8.onnx --baseline model.onnx --validators size,latency \\
        --report model.int8.edgeval-report.json --bless-dir out/ [--mlflow]
    # exit 0 pass · 1 blocked · 2 usage · 3 bad input · 4 internal · 5 inconclusive

This module imports neither onnxruntime nor onnx; the runtimes do, when a validator opens the model.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from ..report import Report
from . import _gate
from ._gate import OnBlock, PolicyLike

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def gate_onnx(candidate: str | Path, baseline: str | Path | None, *, policy: PolicyLike = None,
              validators: Sequence[str] | None = None, report_path: str | Path | None = None,
              bless_dir: str | Path | None = None, on_block: OnBlock = "raise") -> Report:
    """Gate an ONNX ``candidate`` against ``baseline``; write the report (and the blessing marker).

    Returns the :class:`~edgeval.Report`; raises :class:`~edgeval.errors.DeploymentBlocked` when the verdict is
    not ``pass`` and ``on_block="raise"``. ``policy``: a :class:`~edgeval.Policy`, a policy file, or a mapping
    merged over the defaults."""
    _gate.check_on_block(on_block)
    report = _gate.gate_file(candidate, baseline, policy=policy, validators=validators, report_path=report_path,
                             bless_dir=bless_dir, hook="onnxruntime.gate_onnx")
    return report.raise_for_verdict() if on_block == "raise" else report


def copy_tokenizer(source_dir: str | Path, model_path: str | Path) -> list[Path]:
    """Copy the tokenizer files of ``source_dir`` next to ``model_path`` (those present); return the copies.

    ``quantize_dynamic`` writes only the ``.onnx``: use this so that a quantized LM can be scored too."""
    source, target = Path(source_dir), Path(model_path).parent
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file() and source.resolve() != target.resolve():
            copied.append(Path(shutil.copy2(source / name, target / name)))
    return copied


__all__ = ["gate_onnx", "copy_tokenizer"]
