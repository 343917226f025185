"""Helpers for a user who prunes a Keras model with TFMOT and ships it as TFLite.

    >>> from edgeval.converters import keras_tfmot as kt
    >>> tf, keras, tfmot = kt.import_tf()          # sets TF_USE_LEGACY_KERAS=1 first
    >>> pruned = kt.apply_pruning(model, target_sparsity=0.5, end_step=1000)
    >>> pruned.compile(...); pruned.fit(x, y, callbacks=kt.pruning_callbacks())
    >>> stripped = kt.strip(pruned)
    >>> kt.measured_sparsity(stripped).overall       # ≈ 0.5
    >>> flatbuffer = kt.to_tflite(stripped, "pruned.tflite", sparse=True)

TFMOT 0.8.1 works under TensorFlow 2.21 only with tf-keras (Keras 2): ``TF_USE_LEGACY_KERAS=1`` must be set
before TensorFlow is first imported, in this process. Keras 3 models (the ``keras`` 3 package, or ``tf.keras``
when that variable is unset) are rejected with a message that says so. TensorFlow is imported only inside
functions.

Note that TFMOT wraps the *same* layer objects as the model it is given: pruning, training and stripping write the
pruned weights into the original model's layers as well.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from ..errors import BadInputError, UsageError, require
from ..report import atomic_write_bytes

_LEGACY_ON = ("1", "true", "True")
_EXTRA = "tf"
_PURPOSE = "pruning Keras models with TFMOT"
KERAS3_MESSAGE = ("this is a Keras 3 model; TFMOT needs tf-keras: set TF_USE_LEGACY_KERAS=1 before importing "
                  "TensorFlow and build the model with tf_keras")
#: op resolver for sparse *and* quantized flatbuffers: XNNPACK (the default delegate) fails to prepare them
SPARSE_INT8_OP_RESOLVER = "BUILTIN_WITHOUT_DEFAULT_DELEGATES"
Quantize = Literal["dynamic", "int8", "float16"]


# -- importing -------------------------------------------------------------------------------------------------
def import_tf() -> tuple[Any, Any, Any]:
    """``(tensorflow, tf_keras, tensorflow_model_optimization)``, with TensorFlow in legacy-Keras (tf-keras) mode.

    Sets ``TF_USE_LEGACY_KERAS=1`` unless the variable is already set, then imports. Raises
    :class:`~edgeval.errors.MissingExtraError` (extra ``tf``) when a package is missing, and
    :class:`~edgeval.errors.UsageError` when TensorFlow is (or would be) running with Keras 3 in this process.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    _check_legacy_keras()
    tf = require("tensorflow", _EXTRA, _PURPOSE)
    _check_legacy_keras()
    tf_keras = require("tf_keras", _EXTRA, _PURPOSE)
    tfmot = require("tensorflow_model_optimization", _EXTRA, _PURPOSE)
    return tf, tf_keras, tfmot


def _check_legacy_keras() -> None:
    """Raise when TensorFlow was imported with Keras 3, or would be because the variable is set to off."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        legacy = getattr(tf, "_tf_uses_legacy_keras", None)
        if legacy is None:  # a TensorFlow without the flag: trust the variable
            legacy = os.environ.get("TF_USE_LEGACY_KERAS") in _LEGACY_ON
        if not legacy:
            raise UsageError("TensorFlow was already imported in this process with Keras 3 active (importing "
                             "`keras` 3 imports it too); TFMOT needs tf-keras: set TF_USE_LEGACY_KERAS=1 before "
                             "importing TensorFlow (in the shell, or os.environ at the top of the script) and "
                             "restart the process")
    elif os.environ.get("TF_USE_LEGACY_KERAS") not in _LEGACY_ON:
        raise UsageError(f"TF_USE_LEGACY_KERAS={os.environ.get('TF_USE_LEGACY_KERAS')!r} selects Keras 3, which "
                         "TFMOT rejects: set TF_USE_LEGACY_KERAS=1 before importing TensorFlow")


# -- model checks ------------------------------------------------------------------------------------------------
def is_keras3_model(model: object) -> bool:
    """True when ``model`` comes from the ``keras`` 3 package (TensorFlow is not imported to find out)."""
    keras = sys.modules.get("keras")
    if keras is None or not str(getattr(keras, "__version__", "")).startswith("3."):
        return False
    return any(cls.__module__ == "keras" or cls.__module__.startswith("keras.") for cls in type(model).__mro__)


def ensure_tf_keras_model(model: object) -> None:
    """Raise :class:`~edgeval.errors.BadInputError` unless ``model`` is a tf-keras (Keras 2) ``Model``."""
    if is_keras3_model(model):
        raise BadInputError(KERAS3_MESSAGE)
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is None or not isinstance(model, tf_keras.Model):
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        raise BadInputError(f"expected a tf_keras model (tf_keras.Model), got {kind}")


# -- pruning -----------------------------------------------------------------------------------------------------
def apply_pruning(model: Any, *, target_sparsity: float = 0.5, begin_step: int = 0, end_step: int = -1,  # noqa: PLR0913  (TFMOT's options)
                  m_by_n: tuple[int, int] | None = None, frequency: int = 100,
                  schedule: Literal["constant", "polynomial"] = "constant", initial_sparsity: float = 0.0) -> Any:
    """``model`` with TFMOT's ``prune_low_magnitude`` wrappers; compile and fit it with :func:`pruning_callbacks`.

    ``schedule="constant"``: ``ConstantSparsity(target_sparsity, begin_step, end_step, frequency)``
    (``end_step=-1``: keep pruning to the end of training). ``schedule="polynomial"``: ``PolynomialDecay`` from
    ``initial_sparsity`` to ``target_sparsity`` between ``begin_step`` and ``end_step`` (required).
    ``m_by_n=(2, 4)``: ``m`` zeros in every ``n`` consecutive weights along the input dimension (TFMOT's
    ``sparsity_m_by_n``); the schedule then only says when to prune and ``target_sparsity`` is not used.
    The returned model has no optimizer. Layers are shared with ``model`` (see the module notes).
    """
    ensure_tf_keras_model(model)
    _check_pruning_args(target_sparsity, begin_step, end_step, m_by_n, frequency, schedule, initial_sparsity)
    _, _, tfmot = import_tf()
    sparsity = tfmot.sparsity.keras
    if schedule == "constant":
        plan = sparsity.ConstantSparsity(target_sparsity, begin_step, end_step=end_step, frequency=frequency)
    else:
        plan = sparsity.PolynomialDecay(initial_sparsity, target_sparsity, begin_step, end_step,
                                        frequency=frequency)
    try:
        return sparsity.prune_low_magnitude(model, pruning_schedule=plan, sparsity_m_by_n=m_by_n)
    except ValueError as exc:  # subclassed models, unsupported layers, shapes unfit for m:n
        raise BadInputError(f"TFMOT cannot prune this model: {_first_line(exc)}") from None


def _check_pruning_args(target: float, begin: int, end: int, m_by_n: tuple[int, int] | None, frequency: int,
                        schedule: str, initial: float) -> None:
    """:class:`~edgeval.errors.UsageError` for arguments TFMOT would reject late or silently misuse."""
    if schedule not in ("constant", "polynomial"):
        raise UsageError(f"schedule must be 'constant' or 'polynomial', not {schedule!r}")
    if not 0.0 <= initial <= target < 1.0:
        raise UsageError(f"need 0 <= initial_sparsity <= target_sparsity < 1, got {initial} and {target}")
    if begin < 0 or frequency < 1:
        raise UsageError(f"need begin_step >= 0 and frequency >= 1, got {begin} and {frequency}")
    if (schedule == "polynomial" or end != -1) and end <= begin:
        raise UsageError(f"end_step ({end}) must be after begin_step ({begin})"
                         + (" (PolynomialDecay needs an end_step)" if schedule == "polynomial" else ""))
    if m_by_n is not None and not (len(m_by_n) == 2 and all(isinstance(v, int) for v in m_by_n)
                                   and 0 < m_by_n[0] < m_by_n[1]):
        raise UsageError(f"m_by_n must be two integers (m, n) with 0 < m < n, such as (2, 4); got {m_by_n!r}")


def pruning_callbacks() -> list[Any]:
    """The callbacks ``fit`` needs while pruning: TFMOT's ``UpdatePruningStep`` (without it, fit fails)."""
    _, _, tfmot = import_tf()
    return [tfmot.sparsity.keras.UpdatePruningStep()]


def strip(model: Any) -> Any:
    """``model`` without its pruning wrappers (``strip_pruning``): plain layers holding the pruned weights."""
    ensure_tf_keras_model(model)
    _, _, tfmot = import_tf()
    return tfmot.sparsity.keras.strip_pruning(model)


def _is_wrapped(model: Any) -> bool:
    """True when any layer (nested models included) is still a ``PruneLowMagnitude`` wrapper."""
    return any(type(layer).__name__ == "PruneLowMagnitude" for layer in model.submodules)


# -- measuring ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelSparsity:
    """Zeros in the kernels (weights with two or more dimensions, biases excluded) of a Keras model."""

    per_layer: dict[str, float]
    zeros: int
    elements: int

    @property
    def overall(self) -> float:
        """Zero fraction over every kernel element."""
        return self.zeros / self.elements if self.elements else 0.0


def measured_sparsity(model: Any) -> KernelSparsity:
    """Fraction of exact zeros in each kernel of ``model`` (stripped or still wrapped; masks are not counted)."""
    import numpy as np

    ensure_tf_keras_model(model)
    per_layer: dict[str, float] = {}
    zeros = elements = 0
    for var in model.weights:
        name = var.name.split(":")[0]
        if len(var.shape) < 2 or "kernel" not in name.rsplit("/", 1)[-1]:
            continue
        values = np.asarray(var.numpy())
        per_layer[name] = float(np.mean(values == 0))
        zeros, elements = zeros + int(np.sum(values == 0)), elements + values.size
    return KernelSparsity(per_layer, zeros, elements)


# -- TFLite ------------------------------------------------------------------------------------------------------
class TFLiteFlatbuffer(bytes):
    """A ``.tflite`` flatbuffer (plain ``bytes``) that also says how it was built and how to run it.

    ``op_resolver``: the name of the ``ai_edge_litert.interpreter.OpResolverType`` to run it with:
    ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` for sparse quantized models (XNNPACK fails to prepare their sparse
    int8 FULLY_CONNECTED), ``AUTO`` otherwise.
    """

    sparse: bool
    quantize: str | None
    op_resolver: str
    path: Path | None


def to_tflite(model: Any, out_path: str | Path | None = None, *, sparse: bool = False,
              quantize: Quantize | None = None, representative_data: Iterable[Any] | None = None) -> TFLiteFlatbuffer:
    """Convert a (stripped) tf-keras model with ``TFLiteConverter.from_keras_model``; write it when asked.

    ``sparse=True`` adds ``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``: pruned weights are stored in TFLite's sparse
    format (with a Densify op for float models), so the file shrinks. ``quantize="dynamic"``: dynamic-range
    int8 weights (``Optimize.DEFAULT``); ``"int8"``: full integer quantization calibrated on
    ``representative_data`` (an iterable of input batches; float inputs and outputs are kept); ``"float16"``:
    float16 weights (``Optimize.DEFAULT`` with ``target_spec.supported_types = [tf.float16]``), float compute.
    A model still holding pruning wrappers is stripped first. ``out_path`` is written atomically.

    Sparse + int8 flatbuffers must be run with ``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (sparse
    float16 ones run with the default XNNPACK delegate):
    the returned object's ``op_resolver`` says which resolver to use.
    """
    ensure_tf_keras_model(model)
    if quantize not in (None, "dynamic", "int8", "float16"):
        raise UsageError(f"quantize must be None, 'dynamic', 'int8' or 'float16', not {quantize!r}")
    if quantize == "int8" and representative_data is None:
        raise UsageError("quantize='int8' needs representative_data (an iterable of input batches)")
    tf, _, _ = import_tf()
    if _is_wrapped(model):
        model = strip(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = _optimizations(tf, sparse, quantize)
    if quantize == "int8":
        batches = list(representative_data or [])
        converter.representative_dataset = lambda: ([tf.cast(b, tf.float32)] for b in batches)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    result = TFLiteFlatbuffer(converter.convert())
    result.sparse, result.quantize, result.path = sparse, quantize, None
    result.op_resolver = SPARSE_INT8_OP_RESOLVER if sparse and quantize in ("dynamic", "int8") else "AUTO"
    if out_path is not None:
        result.path = atomic_write_bytes(Path(out_path), result)
    return result


def _optimizations(tf: Any, sparse: bool, quantize: str | None) -> list[Any]:
    """The converter's ``optimizations`` list for the options asked."""
    options = [tf.lite.Optimize.DEFAULT] if quantize else []
    return options + ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else [])


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters."""
    return ((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:300]
