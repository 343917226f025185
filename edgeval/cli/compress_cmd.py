"""``edgeval compress``: one verb for pruning, exporting and quantizing, chained; ``edgeval compressors`` lists
the methods (built-ins and plugins)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .app import cli
from .options import disable_plugin_option, dotted_sets, group, threads_option

_parse_method_set = dotted_sets("METHOD.KEY=VALUE", "int4.block_size=64")


@dataclass(frozen=True)
class ChainSpec:
    """The methods in order and the settings given on the command line."""

    method: str
    then: tuple[str, ...]
    sparsity: float | None
    pattern: str | None
    calibration: str | None
    sets: tuple[tuple[str, Any], ...]

    def methods(self, disabled: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
        """``[(name, settings)]``: shortcuts go to every step that has the setting, ``--set`` to its method."""
        names = [self.method, *self.then]
        chosen: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in names]
        shortcuts = {"sparsity": self.sparsity, "pattern": self.pattern, "calibration": self.calibration}
        for key, value in shortcuts.items():
            if value is not None:
                _give(chosen, key, value, disabled)
        for dotted, value in self.sets:
            name, _, key = dotted.partition(".")
            if name not in names:
                raise click.UsageError(f"--set {dotted}: '{name}' is not a method of this chain "
                                       f"({' -> '.join(names)})")
            if names.count(name) > 1:
                raise click.UsageError(f"--set {dotted}: '{name}' is twice in this chain ({' -> '.join(names)}); "
                                       "which step it is meant for is ambiguous")
            dict(chosen)[name][key] = value
        return chosen


def _give(chosen: list[tuple[str, dict[str, Any]]], key: str, value: Any, disabled: tuple[str, ...] = ()) -> None:
    """Put a shortcut option's value on the steps whose settings have ``key``; refuse it when none has."""
    from ..plugins import registered_compressors

    known = registered_compressors(disabled)
    takers = [options for name, options in chosen
              if name in known and key in getattr(known[name].Settings, "__dataclass_fields__", {})]
    if not takers and all(name in known for name, _ in chosen):
        raise click.UsageError(f"--{key} does not apply to {' -> '.join(n for n, _ in chosen)} "
                               f"(no step takes a '{key}' setting)")
    for options in takers:
        options[key] = value


@dataclass(frozen=True)
class ExportSpec:
    """How an export inside the chain builds its graph."""

    legacy: bool
    kv_cache: bool
    next_token_output: bool
    batch: int | None
    seq_len: int | None
    parity: bool


COMPRESS_EXIT_CODES = """\b
Exit codes:
  0  written    --out holds the compressed model and compression.json
  2  usage      bad command line (an option no step takes, a --set for a method not in the chain, --out
                equal to or around the source)
  3  bad input  unknown method, impossible chain, bad setting, missing/empty calibration file, an input
                already quantized, an export not at parity with its source, unreadable model
  4  internal   a bug in edgeval or a plugin
"""


@cli.command("compress", epilog=COMPRESS_EXIT_CODES)
@click.argument("model", type=click.Path(path_type=Path))
@group("chain", ChainSpec,
       click.option("--method", required=True, metavar="NAME",
                    help="First compression method (see 'edgeval compressors'): wanda, magnitude, random, int8, "
                         "int8-static, int4, tflite-fp16, tflite-int8, or a plugin's."),
       click.option("--then", multiple=True, metavar="NAME", help="A further method, applied after the previous "
                    "one (repeatable): --method wanda --then int8."),
       click.option("--sparsity", type=float, help="Pruning steps: fraction of weights to zero, in (0, 1)."),
       click.option("--pattern", help="Pruning steps: unstructured, 2:4 or any N:M."),
       click.option("--calibration", help="Steps that calibrate (wanda, int8-static): a text file, a folder of "
                    ".txt files, a .jsonl with a \"text\" field, or 'builtin'."),
       click.option("--set", "sets", multiple=True, metavar="METHOD.KEY=VALUE", callback=_parse_method_set,
                    help="Any setting of a method in the chain (repeatable), e.g. --set int4.block_size=64; "
                         "'edgeval compressors -v' lists them."))
@click.option("--to", "target", type=click.Choice(["onnx", "tflite", "hf"]),
              help="Format of the output; an export is added where the chain needs one.")
@group("export", ExportSpec,
       click.option("--legacy", is_flag=True, help="ONNX export: the TorchScript exporter (opset 17)."),
       click.option("--kv-cache", is_flag=True, help="ONNX export: with-past layout (shared prefixes computed once)."),
       click.option("--next-token-output", is_flag=True, help="ONNX export: add a last-position 'next_token_logits' "
                    "output (faster letter scoring; the ONNX quantizers still quantize the shared LM head)."),
       click.option("--batch", type=click.IntRange(min=1), help="TFLite export step: static batch [default: 1]."),
       click.option("--seq-len", type=click.IntRange(min=8),
                    help="TFLite export step: static sequence length [default: 256]."),
       click.option("--parity/--no-parity", default=True, show_default=True,
                    help="Check an export's exact parity with its source before quantizing it."))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output folder: the model, its tokenizer files and compression.json.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it is a previous edgeval output (holds "
              "compression.json or pruning.json); any other non-empty folder is refused.")
@threads_option("Intra-op threads for the parity check's runtimes.")
@disable_plugin_option
def compress_cmd(model: Path, chain: ChainSpec, target: str | None, export: ExportSpec, out_dir: Path,  # noqa: PLR0913  (click passes each option group)
                 overwrite: bool, threads: int | None, disabled: tuple[str, ...]) -> None:
    """Compress MODEL (HF directory, .gguf, or .onnx for ONNX quantizers) with one method or a chain, e.g.

    \b
      edgeval compress ./model --method wanda --sparsity 0.5 --then int8 --to onnx --out ./w50-int8
      edgeval compress model.onnx --method int4 --set int4.block_size=64 --out ./int4

    The result goes to --out with its tokenizer files and compression.json (each step's settings and measured
    figures). Nothing is left at --out when a step fails."""
    import warnings

    from ..converters.chain import ExportOptions, compress
    from ..converters.pruning.calibration import CalibrationWarning
    from ..converters.pruning.manifest import SparsityWarning

    options = ExportOptions(export.legacy, export.kv_cache, export.next_token_output, export.batch, export.seq_len,
                            export.parity)
    with warnings.catch_warnings():  # the manifest's warnings are printed as they come, once
        warnings.simplefilter("ignore", SparsityWarning)
        warnings.simplefilter("ignore", CalibrationWarning)
        result = compress(model, out_dir, chain.methods(disabled), to=target, export=options, overwrite=overwrite,
                          progress=lambda line: click.echo(f"  {line}", err=True), threads=threads,
                          disabled=disabled)
    _summary(result)


def _summary(result: Any) -> None:
    doc = result.manifest
    out = doc["output"]
    click.echo(f"compressed ({' -> '.join(doc['chain'])}) -> {result.path} ({out['bytes']:,} B, {out['format']}; "
               f"source {doc['source']['bytes']:,} B); manifest: {result.out_dir}/compression.json")
    for step in doc["steps"]:
        measured = step["measured"]
        if step["kind"] == "prune":
            click.echo(f"  {step['method']}: measured sparsity {measured['measured_sparsity']:.4f} over "
                       f"{measured['pruned_params']:,} weights (requested {measured['requested_sparsity']:.4f})")


@cli.command("compressors")
@click.option("-v", "--verbose", is_flag=True, help="Also list each method's settings and defaults.")
@disable_plugin_option
def compressors_cmd(verbose: bool, disabled: tuple[str, ...]) -> None:
    """List the compression methods `edgeval compress` can chain (built-ins and plugins)."""
    import dataclasses

    from ..plugins import registered_compressors

    for name, comp in registered_compressors(disabled).items():
        click.echo(f"{name:<13} {comp.kind:<9} {'/'.join(comp.accepts)} -> {comp.produces:<7} {comp.summary}")
        if verbose:
            for f in dataclasses.fields(comp.Settings):
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
                click.echo(f"    {name}.{f.name} = {default!r}  {f.metadata.get('help', '')}")
