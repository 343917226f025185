"""A Keras → TFLite pipeline with edgeval gates: TFMOT pruning + the edgeval callback, then a gated converter.

    python examples/tflite_pipeline.py --out /tmp/edgeval-tflite

Steps (a small tf-keras classifier on synthetic data; about 10 s, most of it importing TensorFlow):
1. train the dense model briefly;
2. ``kt.apply_pruning`` (50 %, TFMOT) and ``fit`` with the pruning callbacks and ``edgeval_callback``: at the end
   of training the callback strips the wrappers, converts to a sparse TFLite flatbuffer and gates it against the
   dense model's flatbuffer (converted when the callback was made, before pruning touched the weights);
3. ``GatedConverter`` around a plain ``tf.lite.TFLiteConverter`` of the pruned model *without*
   ``EXPERIMENTAL_SPARSITY``: the zeros stay in a dense layout, no byte is saved, and the gate blocks it
   (``DeploymentBlocked``; nothing is written at its ``out_path``, the report is);
4. the same with ``EXPERIMENTAL_SPARSITY``: it passes and lands at its ``out_path``.

The gate here is the ``size`` validator with ``require_savings``: a Keras classifier is no causal LM, so the
logit-based validators (bbq, perplexity, latency, parity) do not apply. Needs ``edgeval[tf,tflite]``.
Exits 0 when every gate decided as described, 1 otherwise.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFMOT needs tf-keras: set before TensorFlow is imported

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from edgeval import DeploymentBlocked, Report  # noqa: E402
from edgeval.converters import keras_tfmot as kt  # noqa: E402
from edgeval.hooks.keras import edgeval_callback  # noqa: E402
from edgeval.hooks.tflite import GatedConverter  # noqa: E402

POLICY = {"size": {"require_savings": True}}
FEATURES, CLASSES = 64, 4


def data(seed: int = 0) -> tuple[Any, Any]:
    """A separable synthetic classification problem."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(512, FEATURES)).astype("float32")
    y = (x[:, :CLASSES] * np.arange(1, CLASSES + 1)).argmax(axis=1)
    return x, y


def dense_model(keras: Any, x: Any, y: Any) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(CLASSES)])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return model


def prune_with_gate(keras: Any, model: Any, x: Any, y: Any, out: Path) -> tuple[Any, Any]:
    """Fine-tune with TFMOT pruning; the edgeval callback gates the result. Returns (pruned model, callback)."""
    gate = edgeval_callback(out / "pruned.tflite", baseline=model, policy=POLICY, on_block="record")
    pruned = kt.apply_pruning(model, target_sparsity=0.5, begin_step=0, frequency=4)
    pruned.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    pruned.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[*kt.pruning_callbacks(), gate])
    return pruned, gate


def gated_convert(tf: Any, stripped: Any, baseline: Path, out_path: Path, sparse: bool) -> Report:
    """A plain TFLiteConverter wrapped in GatedConverter; returns its report (blocked or not)."""
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    gated = GatedConverter(converter, baseline, out_path=out_path, policy=POLICY)
    if sparse:
        gated.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]  # forwarded to the wrapped converter
    try:
        flatbuffer = gated.convert()
        print(f"   converted: {len(flatbuffer):,} B written to {out_path}")
    except DeploymentBlocked as blocked:
        print(f"   DeploymentBlocked: {blocked}; {out_path.name} written: {out_path.exists()}")
    return gated.report


def show(title: str, report: Report, report_path: Path) -> None:
    print(f"\n== {title}: verdict {report.verdict.upper()}")
    print(f"   {report.results['size']['summary']}")
    print(f"   report: {report_path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Directory for the flatbuffers and reports.")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tf, keras, _ = kt.import_tf()
    x, y = data()
    pruned, gate = prune_with_gate(keras, dense_model(keras, x, y), x, y, args.out)
    show("edgeval callback (sparse TFLite)", gate.report, args.out / "pruned.edgeval-report.json")
    stripped, baseline = kt.strip(pruned), args.out / "pruned.dense.tflite"
    print(f"   kernel sparsity of the stripped model: {kt.measured_sparsity(stripped).overall:.1%}")
    outcomes = [gate.report.verdict]
    for sparse, name in ((False, "dense_layout"), (True, "sparse_layout")):
        out_path = args.out / "converter" / f"{name}.tflite"
        report = gated_convert(tf, stripped, baseline, out_path, sparse)
        show(f"GatedConverter, {name}", report, out_path.with_name(f"{name}.edgeval-report.json"))
        outcomes.append(report.verdict)
    print(f"\nverdicts: callback {outcomes[0]}, dense layout {outcomes[1]}, sparse layout {outcomes[2]}")
    return 0 if outcomes == ["pass", "blocked", "pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
