"""A gated TFLite converter: ``convert()`` returns the flatbuffer only when edgeval passes it.

Drop-in around the converter a pipeline already has::

    converter = tf.lite.TFLiteConverter.from_keras_model(pruned)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    gated = GatedConverter(converter, "dense.tflite", out_path="pruned.tflite",
                           policy={"size": {"require_savings": True}})
    flatbuffer = gated.convert()      # DeploymentBlocked (report attached) unless the verdict is pass

``convert()`` converts, writes the flatbuffer to a temporary file beside ``out_path``, gates it with
:func:`edgeval.check` against ``baseline``, writes the report (default ``<out_path stem>.edgeval-report.json``),
and only on ``pass`` renames the file to ``out_path`` and returns the bytes. Otherwise the temporary file is
removed and :class:`~edgeval.errors.DeploymentBlocked` is raised: a blocked model never lands at ``out_path``
(a file already there is left untouched). The last flatbuffer and report stay on ``gated.flatbuffer`` and
``gated.report`` either way.

The default validator is ``size`` (bytes, compressed bytes, weight sparsity read from the flatbuffer's buffers),
which works on any TFLite model. The logit-based validators (``bbq``, ``perplexity``, ``latency``, ``parity``)
need a causal-LM signature and a tokenizer; ask for them with ``validators=`` when the model is one.
Attributes not defined here are read from and written to the wrapped converter (``gated.optimizations = …``).
TensorFlow is never imported by this module.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol, Sequence

from ..errors import ModelError
from ..report import Report
from . import _gate
from ._gate import PolicyLike

_OWN = frozenset({"_converter", "baseline", "out_path", "policy", "validators", "report_path", "report",
                  "flatbuffer", "hook_name"})


class Converter(Protocol):
    """Anything with ``convert() -> bytes``: ``tf.lite.TFLiteConverter`` and the adapters below."""

    def convert(self) -> bytes: ...


class GatedConverter:
    """Wraps a converter; :meth:`convert` returns the flatbuffer only when the gate passes (see the module)."""

    #: recorded as ``run.hook.name`` in the report
    hook_name = "tflite.GatedConverter"

    def __init__(self, converter: Converter, baseline: str | Path | bytes | None, *, out_path: str | Path,
                 policy: PolicyLike = None, validators: Sequence[str] | None = ("size",),
                 report_path: str | Path | None = None) -> None:
        """``baseline``: the dense model's ``.tflite`` path or flatbuffer bytes (None: no comparison).
        ``policy``: a :class:`~edgeval.Policy`, a policy file, or a mapping merged over the defaults."""
        object.__setattr__(self, "_converter", converter)
        self.baseline, self.out_path = baseline, Path(out_path)
        self.policy = _gate.as_policy(policy)  # a bad mapping fails here, not after the conversion
        self.validators = None if validators is None else list(validators)
        self.report_path = Path(report_path) if report_path else _gate.report_path_beside(self.out_path)
        self.report: Report | None = None
        self.flatbuffer: bytes | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_converter"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._converter, name, value)

    def convert(self) -> bytes:
        """Convert, gate, write the report; return the flatbuffer (written to ``out_path``) only on pass."""
        _gate.prepare(self.report_path)  # no stale pass report survives a crash in the conversion or the gate
        flatbuffer = self._converter.convert()
        if not isinstance(flatbuffer, (bytes, bytearray)):
            raise ModelError(f"the TFLite converter returned {type(flatbuffer).__name__}, not a flatbuffer")
        self.flatbuffer = bytes(flatbuffer)
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=".edgeval-", dir=self.out_path.parent))
        try:
            self.report = _gate.finish(self._gate(workdir, self.flatbuffer), self.report_path)
            if self.report.passed:  # the final report: a failed publishing step is an error, not a pass
                os.replace(workdir / self.out_path.name, self.out_path)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self.report.raise_for_verdict()
        return self.flatbuffer

    def _gate(self, workdir: Path, flatbuffer: bytes) -> Report:
        """Write the candidate (and a bytes baseline) into ``workdir`` and check it."""
        candidate = workdir / self.out_path.name
        candidate.write_bytes(flatbuffer)
        baseline = self.baseline
        if isinstance(baseline, (bytes, bytearray)):
            written = workdir / "baseline.tflite"
            written.write_bytes(baseline)
            baseline = written
        report = _gate.run_check(candidate, baseline, self.policy, self.validators)
        passed = report.passed
        report = report.replace(candidate={**report.candidate, "path": str(self.out_path)})
        return _gate.with_hook_info(report, self.hook_name, written=passed,
                                    out_path=str(self.out_path))


class LitertTorchConverter:
    """``convert() -> bytes`` for a torch module through ``litert_torch.convert`` (static shapes, like
    :func:`edgeval.converters.export.export_tflite`); wrap it in :class:`GatedConverter`."""

    def __init__(self, module: Any, sample_args: tuple[Any, ...]) -> None:
        self.module, self.sample_args = module, tuple(sample_args)

    def convert(self) -> bytes:
        from ..errors import require

        litert_torch = require("litert_torch", "torch", "converting torch models to TFLite")
        with tempfile.TemporaryDirectory(prefix="edgeval-litert-") as tmp:
            path = Path(tmp) / "model.tflite"
            litert_torch.convert(self.module.eval(), self.sample_args).export(str(path))
            return path.read_bytes()


def gate_litert_torch(module: Any, sample_args: tuple[Any, ...], baseline: str | Path | bytes | None, *,
                      out_path: str | Path, policy: PolicyLike = None,
                      validators: Sequence[str] | None = ("size",)) -> bytes:
    """Convert a torch module with litert-torch and gate it like :class:`GatedConverter` (same rules)."""
    gated = GatedConverter(LitertTorchConverter(module, sample_args), baseline, out_path=out_path,
                           policy=policy, validators=validators)
    return gated.convert()


__all__ = ["GatedConverter", "LitertTorchConverter", "gate_litert_torch", "Converter"]
