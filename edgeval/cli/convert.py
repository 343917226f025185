"""``edgeval prune`` and ``edgeval export``: the pipeline steps before the gate (need the [torch] extra)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import ExitCode
from .app import EXIT_CODES_HELP, cli


def _progress(done: int, total: int, label: str) -> None:
    click.echo(f"  [{done}/{total}] {label}", err=True)


@cli.command("prune", epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["random", "magnitude", "wanda"]), required=True)
@click.option("--sparsity", type=float, help="Fraction of weights to zero, in (0, 1). Optional with --pattern N:M.")
@click.option("--pattern", default="unstructured", show_default=True, help="unstructured, 2:4 or any N:M.")
@click.option("--calibration", default="builtin", show_default=True,
              help="Wanda calibration corpus: a text file, a directory of .txt files, a .jsonl with a \"text\" field, "
                   "or 'builtin' for the small corpus edgeval ships.")
@click.option("--calibration-samples", "n_samples", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--seq-len", type=click.IntRange(min=8), default=512, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--per-row/--per-matrix", default=None, help="Threshold per output row (default for wanda) or per "
              "matrix (default for random/magnitude).")
@click.option("--include", multiple=True, metavar="PATTERN", help="Only prune layers whose name matches (glob, or re:REGEX).")
@click.option("--exclude", multiple=True, metavar="PATTERN", help="Do not prune layers whose name matches (glob, or re:REGEX).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output HF directory.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def prune_cmd(model: Path, method: str, sparsity: float | None, pattern: str, calibration: str, n_samples: int,
              seq_len: int, seed: int, per_row: bool | None, include: tuple[str, ...], exclude: tuple[str, ...],
              out_dir: Path, overwrite: bool) -> None:
    """Prune the linear layers in MODEL's decoder blocks (HF directory or .gguf) and write a pruned HF
    directory with a pruning.json manifest (requested and measured sparsity per layer)."""
    import warnings

    from ..converters.pruning.api import prune_directory
    from ..converters.pruning.calibration import CalibrationWarning
    from ..converters.pruning.manifest import SparsityWarning

    with warnings.catch_warnings():  # the manifest's warnings are printed below, once
        warnings.simplefilter("ignore", SparsityWarning)
        warnings.simplefilter("ignore", CalibrationWarning)
        result = prune_directory(model, out_dir, method, sparsity, overwrite=overwrite, pattern=pattern,
                                 calibration=None if calibration == "builtin" else calibration,
                                 n_samples=n_samples, seq_len=seq_len, seed=seed, per_row=per_row,
                                 include=list(include) or None, exclude=list(exclude) or None, progress=_progress)
    manifest = result.manifest
    click.echo(f"pruned ({method}, {pattern}) -> {result.out_dir}: measured sparsity "
               f"{manifest['measured_sparsity']:.4f} over {manifest['pruned_params']:,} weights in the pruned layers "
               f"(requested {manifest['requested_sparsity']:.4f}); manifest: {result.out_dir}/pruning.json")
    if (calib := manifest.get("calibration")) and calib.get("distinct_tokens") is not None:
        click.echo(f"calibration: {calib['distinct_tokens']:,} distinct tokens used of {calib['requested_tokens']:,} "
                   f"requested ({calib['n_samples']} x {calib['seq_len']}) from {calib['source']}")
    for warning in result.manifest.get("warnings", []):
        click.echo(f"edgeval: WARNING: {warning}", err=True)


@cli.command("export", epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "target", type=click.Choice(["onnx", "tflite"]), required=True)
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="Output .onnx / .tflite.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="TFLite static batch.")
@click.option("--seq-len", type=click.IntRange(min=8), default=256, show_default=True,
              help="TFLite static sequence length.")
@click.option("--legacy", is_flag=True, help="ONNX: the TorchScript exporter (dynamo=False, opset 17).")
@click.option("--next-token-output", is_flag=True, help="ONNX: add a last-position-only 'next_token_logits' output "
              "(faster BBQ letter scoring; quantize_dynamic then leaves the LM head in float32).")
@click.option("--kv-cache", is_flag=True, help="ONNX: take past_key_values and return present.* (optimum's with-past "
              "layout): BBQ scoring then computes shared prompt prefixes once (about 4x fewer tokens).")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), help="Parity thresholds (parity: ...).")
def export_cmd(model: Path, target: str, out_path: Path, batch: int, seq_len: int, legacy: bool,
               next_token_output: bool, kv_cache: bool, policy_path: Path | None) -> None:
    """Export MODEL (HF directory or .gguf) to ONNX or TFLite, write the tokenizer beside it, and check parity
    against MODEL on BBQ-style prompts. A failed parity check exits 3: the export is not usable."""
    from ..converters.export import export_onnx, export_tflite

    if target == "onnx":
        out = export_onnx(model, out_path, legacy=legacy, next_token_output=next_token_output, kv_cache=kv_cache)
    elif kv_cache or next_token_output:
        raise click.UsageError("--kv-cache and --next-token-output are ONNX options (--to onnx)")
    else:
        out = export_tflite(model, out_path, batch=batch, seq_len=seq_len)
    click.echo(f"exported {model} -> {out} ({out.stat().st_size:,} B)")
    sys.exit(_parity(model, out, policy_path))


def _parity(source: Path, exported: Path, policy_path: Path | None) -> int:
    from ..policy import Policy
    from ..runtimes import load_runtime
    from ..validators.parity import parity_report

    policy = Policy.load(policy_path) if policy_path else Policy.default()
    candidate, reference = load_runtime(exported), load_runtime(source)
    try:
        checks, results = parity_report(candidate, reference, policy.section("parity"))
    finally:
        candidate.close()
        reference.close()
    for check in checks:
        click.echo(f"parity {check.status:5} {check.id}: {check.message}", err=True)
    side = exported.with_name(exported.name + ".parity.json")
    side.write_text(json.dumps({"checks": [c.to_json() for c in checks], "results": results}, indent=2) + "\n")
    if all(c.status == "pass" for c in checks):
        return int(ExitCode.PASS)
    click.echo(f"edgeval: error: {exported}: export fails parity with {source} (see {side})", err=True)
    return int(ExitCode.BAD_INPUT)
