"""``edgeval prune`` and ``edgeval export``: the pipeline steps before the gate (need the [torch] extra)."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import click

from ..atomic import atomic_write_bytes, atomic_write_text, temp_sibling
from ..converters.pruning.api import METHODS
from ..errors import ExitCode
from ..schemas import SIDE_FILE_IDS, check_side_file
from .app import EXIT_CODES_HELP, cli
from .options import disable_plugin_option, group, policy_option, seed_option, threads_option


def _progress(done: int, total: int, label: str) -> None:
    click.echo(f"  [{done}/{total}] {label}", err=True)


@dataclass(frozen=True)
class PruneSpec:
    """What to prune and how (``edgeval prune``'s method options)."""

    method: str
    sparsity: float | None
    pattern: str
    per_row: bool | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]


@dataclass(frozen=True)
class CalibrationSpec:
    """Wanda's calibration sample (and the seed of the random method)."""

    calibration: str
    n_samples: int
    seq_len: int
    seed: int


@cli.command("prune", epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@group("spec", PruneSpec,
       click.option("--method", type=click.Choice(METHODS), required=True),
       click.option("--sparsity", type=float,
                    help="Fraction of weights to zero, in (0, 1). Optional with --pattern N:M."),
       click.option("--pattern", default="unstructured", show_default=True, help="unstructured, 2:4 or any N:M."),
       click.option("--per-row/--per-matrix", default=None, help="Threshold per output row (default for wanda) "
                    "or per matrix (default for random/magnitude)."),
       click.option("--include", multiple=True, metavar="PATTERN",
                    help="Only prune layers whose name matches (glob, or re:REGEX)."),
       click.option("--exclude", multiple=True, metavar="PATTERN",
                    help="Do not prune layers whose name matches (glob, or re:REGEX)."))
@group("calib", CalibrationSpec,
       click.option("--calibration", default="builtin", show_default=True,
                    help="Wanda calibration corpus: a text file, a directory of .txt files, a .jsonl with a "
                         "\"text\" field, or 'builtin' for the small corpus edgeval ships."),
       click.option("--calibration-samples", "n_samples", type=click.IntRange(min=1), default=128,
                    show_default=True),
       click.option("--seq-len", type=click.IntRange(min=8), default=512, show_default=True),
       seed_option("Seed of the random method and of the calibration sample (>= 0)."))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output HF directory.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it is a previous prune output (holds pruning.json); "
              "any other non-empty folder is refused.")
@disable_plugin_option
def prune_cmd(model: Path, spec: PruneSpec, calib: CalibrationSpec, out_dir: Path, overwrite: bool,
              disabled: tuple[str, ...]) -> None:
    """Prune the linear layers in MODEL's decoder blocks (HF directory or .gguf) and write a pruned HF
    directory with a pruning.json manifest (requested and measured sparsity per layer)."""
    import warnings

    from ..converters.pruning.api import prune_directory
    from ..converters.pruning.calibration import CalibrationWarning
    from ..converters.pruning.manifest import SparsityWarning

    with warnings.catch_warnings():  # the manifest's warnings are printed below, once
        warnings.simplefilter("ignore", SparsityWarning)
        warnings.simplefilter("ignore", CalibrationWarning)
        result = prune_directory(model, out_dir, spec.method, spec.sparsity, overwrite=overwrite, disabled=disabled,
                                 pattern=spec.pattern,
                                 calibration=None if calib.calibration == "builtin" else calib.calibration,
                                 n_samples=calib.n_samples, seq_len=calib.seq_len, seed=calib.seed,
                                 per_row=spec.per_row, include=list(spec.include) or None,
                                 exclude=list(spec.exclude) or None, progress=_progress)
    manifest = result.manifest
    click.echo(f"pruned ({spec.method}, {spec.pattern}) -> {result.out_dir}: measured sparsity "
               f"{manifest['measured_sparsity']:.4f} over {manifest['pruned_params']:,} weights in the pruned layers "
               f"(requested {manifest['requested_sparsity']:.4f}); manifest: {result.out_dir}/pruning.json")
    if (used := manifest.get("calibration")) and used.get("distinct_tokens") is not None:
        click.echo(f"calibration: {used['distinct_tokens']:,} distinct tokens used of {used['requested_tokens']:,} "
                   f"requested ({used['n_samples']} x {used['seq_len']}) from {used['source']}")
    for warning in result.manifest.get("warnings", []):
        click.echo(f"edgeval: WARNING: {warning}", err=True)


@dataclass(frozen=True)
class ExportShape:
    """How the graph is built: TFLite's static shape, ONNX's exporter and extra outputs."""

    batch: int
    seq_len: int
    legacy: bool
    next_token_output: bool
    kv_cache: bool
    fused_attention: bool


@cli.command("export", epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "target", type=click.Choice(["onnx", "tflite"]), required=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output .onnx / .tflite (written only when parity passes).")
@group("shape", ExportShape,
       click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
                    help="TFLite static batch."),
       click.option("--seq-len", type=click.IntRange(min=8), default=256, show_default=True,
                    help="TFLite static sequence length."),
       click.option("--legacy", is_flag=True, help="ONNX: the TorchScript exporter (dynamo=False, opset 17)."),
       click.option("--next-token-output", is_flag=True, help="ONNX: add a last-position-only 'next_token_logits' "
                    "output, the last row of 'logits' (faster BBQ letter scoring: the one LM head then runs at "
                    "the last position only)."),
       click.option("--kv-cache", is_flag=True, help="ONNX: take past_key_values and return present.* (optimum's "
                    "with-past layout): BBQ scoring then computes shared prompt prefixes once (about 4x fewer "
                    "tokens)."),
       click.option("--fused-attention/--no-fused-attention", default=True, show_default=True,
                    help="ONNX --kv-cache: grouped-query attention without repeating key/value heads (llama, "
                    "mistral, qwen2/3, smollm3; exact, see docs/performance.md)."))
@policy_option("Parity thresholds (parity: ...).")
@threads_option("Intra-op threads for the parity check's runtimes.")
def export_cmd(model: Path, target: str, out_path: Path, shape: ExportShape, policy_path: Path | None,
               threads: int | None) -> int:
    """Export MODEL (HF directory or .gguf) to ONNX or TFLite, write the tokenizer beside it, and check parity
    against MODEL on BBQ-style prompts. The export is built in a temporary folder beside --out and moved there
    only when parity passes; a failed parity check exits 3 and leaves nothing at --out but OUT.parity.json."""
    from ..converters.export import artifact_bytes, export_onnx, export_tflite

    if target != "onnx" and (shape.kv_cache or shape.next_token_output):
        raise click.UsageError("--kv-cache and --next-token-output are ONNX options (--to onnx)")
    policy = _parity_policy(policy_path)  # a bad policy fails before the export, not after it
    stage = temp_sibling(out_path)
    try:
        staged = stage / out_path.name
        if target == "onnx":
            export_onnx(model, staged, legacy=shape.legacy, next_token_output=shape.next_token_output,
                        kv_cache=shape.kv_cache, fused_attention=shape.fused_attention and shape.kv_cache)
        else:
            export_tflite(model, staged, batch=shape.batch, seq_len=shape.seq_len)
        click.echo(f"exported {model} -> {out_path} ({artifact_bytes(staged):,} B: graph + external data)")
        code = _parity(model, staged, policy, threads)
        if code == int(ExitCode.PASS):
            _move_out(stage, out_path)
        else:
            side = out_path.with_name(out_path.name + ".parity.json")
            atomic_write_bytes(side, (stage / side.name).read_bytes())
            click.echo(f"edgeval: error: {out_path}: export fails parity with {model} (see {side}); the export "
                       "was not written", err=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return code  # cli.main turns it into the process's exit code


def _parity_policy(policy_path: Path | None):
    from ..policy import Policy

    return Policy.load(policy_path) if policy_path else Policy.default()


def _move_out(stage: Path, out_path: Path) -> None:
    """Move every staged file beside ``out_path`` (each rename atomic), the model itself last."""
    files = sorted((p for p in stage.iterdir() if p.is_file()), key=lambda p: p.name == out_path.name)
    for file in files:
        os.replace(file, out_path.with_name(file.name))


def _parity(source: Path, exported: Path, policy, threads: int | None) -> int:
    from ..converters.export_step import parity_of_export

    checks, results = parity_of_export(source, exported, policy.section("parity"), threads)
    for check in checks:
        click.echo(f"parity {check.status:5} {check.id}: {check.message}", err=True)
    side = exported.with_name(exported.name + ".parity.json")
    doc = {"schema": SIDE_FILE_IDS["parity"], "checks": [c.to_json() for c in checks], "results": results,
           "threads": threads}
    check_side_file("parity", doc, side)
    atomic_write_text(side, json.dumps(doc, indent=2) + "\n")
    return int(ExitCode.PASS if all(c.status == "pass" for c in checks) else ExitCode.BAD_INPUT)
