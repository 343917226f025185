"""The export step of a compression chain (and of ``edgeval export``): export, then check exact parity.

An export must compute what its source computes: the exported graph is compared with the source model on
edgeval's parity prompts (:func:`edgeval.validators.parity.parity_report`, exact bounds). A chain that quantizes
after exporting therefore starts from an export that is known to be right, and a lossy result is the
quantizer's doing, not the exporter's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..errors import MeasurementError
from .compressor import StepContext, StepResult

#: what the manifest keeps of the parity results
_PARITY_KEYS = ("max_abs_logit_diff", "max_abs_cached_logit_diff", "top1_agreement", "letter_agreement",
                "option_agreement", "tokenizer_agreement", "n_prompts")


def parity_of_export(source: Path, exported: Path, policy_section: Mapping[str, Any] | None = None,
                     threads: int | None = None) -> tuple[list[Any], dict[str, Any]]:
    """Parity checks and results of ``exported`` against the model it was exported from."""
    from ..runtimes import RuntimeOptions, load_runtime
    from ..validators.parity import parity_report

    candidate = load_runtime(exported, threads=threads)
    try:  # the reference is the float model the exporter started from: torch (not llama.cpp's kernels for a GGUF)
        reference = load_runtime(source, options=RuntimeOptions(runtime="torch"), threads=threads)
    except BaseException:
        candidate.close()
        raise
    try:
        return parity_report(candidate, reference, policy_section)
    finally:
        candidate.close()
        reference.close()


def run_export(source: Path, out_dir: Path, settings: Mapping[str, Any], ctx: StepContext) -> StepResult:
    """Export ``source`` into ``out_dir`` (``model.onnx`` / ``model.tflite`` + tokenizer files); with
    ``settings["parity"]`` refuse (:class:`MeasurementError`, exit 3) an export that is not at parity."""
    from .export import artifact_bytes, export_onnx, export_tflite

    if settings["to"] == "onnx":
        path = export_onnx(source, out_dir / "model.onnx", legacy=settings["legacy"], kv_cache=settings["kv_cache"],
                           next_token_output=settings["next_token_output"])
    else:
        path = export_tflite(source, out_dir / "model.tflite", batch=settings["batch"], seq_len=settings["seq_len"])
    measured: dict[str, Any] = {"bytes": artifact_bytes(path)}
    if settings["parity"]:
        ctx.progress(f"parity of the export with {source.name}")
        checks, results = parity_of_export(source, path, None, ctx.threads)
        measured["parity"] = {key: results.get(key) for key in _PARITY_KEYS}
        failed = [c for c in checks if c.status != "pass"]
        if failed:
            raise MeasurementError(f"the export is not at parity with its source: "
                                   f"{'; '.join(f'{c.id}: {c.message}' for c in failed)}", path=source)
    return StepResult(path, measured=measured, tools=_versions(settings["to"]))


def _versions(target: str) -> dict[str, str]:
    from importlib import metadata

    names = ("torch", "transformers", "onnx") if target == "onnx" else ("torch", "transformers", "litert-torch")
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


__all__ = ["parity_of_export", "run_export"]
