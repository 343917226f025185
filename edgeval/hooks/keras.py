"""A tf-keras callback that gates a TFMOT-pruned model when training ends.

    from edgeval.converters import keras_tfmot as kt
    from edgeval.hooks.keras import edgeval_callback

    pruned = kt.apply_pruning(model, target_sparsity=0.5)
    gate = edgeval_callback("out/pruned.tflite", baseline=model, policy={"size": {"require_savings": True}})
    pruned.compile(...)
    pruned.fit(x, y, callbacks=[*kt.pruning_callbacks(), gate])   # raises DeploymentBlocked when blocked
    gate.report.verdict

At construction, a ``baseline`` given as a model is converted to TFLite right away (``<stem>.dense.tflite``
beside ``out_path``), *before* training: TFMOT prunes the model's own layers, so after ``fit`` the dense weights
are gone. A baseline given as a path is used as it is. ``on_train_end`` strips the pruning wrappers, converts
with :func:`edgeval.converters.keras_tfmot.to_tflite` (same ``sparse`` / ``quantize`` options as the baseline)
and gates the flatbuffer through :class:`edgeval.hooks.tflite.GatedConverter`: the report is written beside
``out_path`` (``<stem>.edgeval-report.json``), and the model is written to ``out_path`` only when it passes.
``on_block="raise"`` (default) raises :class:`~edgeval.errors.DeploymentBlocked` out of ``fit``;
``"record"`` only keeps the outcome on ``callback.report`` (and the flatbuffer on ``callback.flatbuffer``).

The default validator is ``size``; a Keras classifier is no causal LM, so the logit-based validators do not
apply unless the model is one. Importing this module does not import TensorFlow: the callback class is built on
the first call of :func:`edgeval_callback` (with ``TF_USE_LEGACY_KERAS=1``, see ``keras_tfmot.import_tf``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..converters import keras_tfmot as kt
from ..errors import DeploymentBlocked
from ..report import Report
from . import _gate
from ._gate import OnBlock, PolicyLike
from .tflite import GatedConverter


@dataclass(frozen=True)
class TFLiteOptions:
    """How both the baseline and the candidate are converted (see :func:`keras_tfmot.to_tflite`)."""

    sparse: bool = True
    quantize: kt.Quantize | None = None
    representative_data: Iterable[Any] | None = None

    def __post_init__(self) -> None:  # a generator would be used up by the baseline's conversion
        if self.representative_data is not None:
            object.__setattr__(self, "representative_data", tuple(self.representative_data))

    def convert(self, model: Any, out_path: str | Path | None = None) -> kt.TFLiteFlatbuffer:
        return kt.to_tflite(model, out_path, sparse=self.sparse, quantize=self.quantize,
                            representative_data=self.representative_data)


@dataclass(frozen=True)
class GateSettings:
    """Where to write, what to compare with, and how to decide (one object instead of many keywords)."""

    out_path: Path
    baseline: Path | None
    policy: PolicyLike
    validators: Sequence[str] | None
    on_block: OnBlock
    report_path: Path


class _StrippedConverter:
    """``convert() -> bytes`` for the model being trained: strip the wrappers, then convert."""

    def __init__(self, model: Any, tflite: TFLiteOptions) -> None:
        self.model, self.tflite = model, tflite

    def convert(self) -> bytes:
        return self.tflite.convert(kt.strip(self.model))


def edgeval_callback(out_path: str | Path, *, baseline: Any = None, policy: PolicyLike = None,
                     validators: Sequence[str] | None = ("size",), on_block: OnBlock = "raise",
                     tflite: TFLiteOptions | None = None) -> Any:
    """An ``EdgevalPruningCallback`` (a ``tf_keras.callbacks.Callback``) that gates the model at ``on_train_end``.

    ``baseline``: the dense tf-keras model (converted now, written beside ``out_path`` as ``<stem>.dense.tflite``),
    a ``.tflite`` path, or None (no comparison). ``policy``: a :class:`~edgeval.Policy`, a policy file, or a
    mapping merged over the defaults. ``tflite``: conversion options (default: sparse float flatbuffers).
    """
    _gate.check_on_block(on_block)
    checked_policy = _gate.as_policy(policy)  # a bad mapping fails now, not after training
    tflite, out_path = tflite or TFLiteOptions(), Path(out_path)
    settings = GateSettings(out_path, _baseline_path(baseline, out_path, tflite), checked_policy,
                            None if validators is None else list(validators), on_block,
                            _gate.report_path_beside(out_path))
    return _callback_class()(settings, tflite)


def _baseline_path(baseline: Any, out_path: Path, tflite: TFLiteOptions) -> Path | None:
    """A path as given; a model converted now to ``<stem>.dense.tflite`` beside ``out_path``."""
    if baseline is None or isinstance(baseline, (str, Path)):
        return None if baseline is None else Path(baseline)
    kt.import_tf()
    kt.ensure_tf_keras_model(baseline)
    path = out_path.with_name(out_path.stem + ".dense.tflite")
    tflite.convert(baseline, path)
    return path


@functools.lru_cache(maxsize=None)
def _callback_class() -> type:
    """Define the callback class on first use, once TensorFlow is imported in legacy-Keras mode."""
    _, tf_keras, _ = kt.import_tf()

    class EdgevalPruningCallback(tf_keras.callbacks.Callback):  # type: ignore[name-defined]  # TF loaded late
        """Gates the trained (pruned) model when training ends; see :mod:`edgeval.hooks.keras`."""

        def __init__(self, settings: GateSettings, tflite: TFLiteOptions) -> None:
            super().__init__()
            self.settings, self.tflite = settings, tflite
            self.report: Report | None = None
            self.flatbuffer: bytes | None = None

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            s = self.settings
            gated = GatedConverter(_StrippedConverter(self.model, self.tflite), s.baseline, out_path=s.out_path,
                                   policy=s.policy, validators=s.validators, report_path=s.report_path)
            gated.hook_name = "keras.EdgevalPruningCallback"
            try:
                gated.convert()
            except DeploymentBlocked:
                if s.on_block == "raise":
                    raise
            finally:
                self.report, self.flatbuffer = gated.report, gated.flatbuffer

    return EdgevalPruningCallback


__all__ = ["edgeval_callback", "TFLiteOptions", "GateSettings"]
