"""``edgeval demo``: prune SmolLM2-135M-Instruct, gate each pruned copy against the dense model, show the result."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ..converters.pruning.api import METHODS
from .app import cli
from .options import bbq_data_option, group

DEMO_EXIT_CODES = """\b
Exit codes:
  0  the demo completed (candidates BLOCKED by the gate are an expected result)
  2  usage      bad command line
  3  bad input  missing extra, bad BBQ data, unusable model, or a report with verdict error (bad input)
  4  internal   a bug in edgeval (or a report with verdict error from one)
"""


def _methods(_ctx, _param, value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [n for n in names if n not in METHODS]
    if not names or unknown:
        raise click.BadParameter(f"{', '.join(unknown) or 'none given'}: choose from {', '.join(METHODS)}")
    return names


def _sparsities(_ctx, _param, value: str) -> tuple[float, ...]:
    try:
        values = tuple(dict.fromkeys(float(v) for v in value.split(",") if v.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give comma-separated fractions such as 0.3,0.5") from None
    if not values or any(not 0 < v < 1 for v in values):
        raise click.BadParameter(f"{value!r}: every sparsity must lie strictly between 0 and 1")
    return tuple(sorted(values))


def _quantizers(_ctx, _param, value: str) -> tuple[str, ...]:
    """``int8,int4`` -> names (checked against the registry when the demo starts); ``none`` -> ()."""
    return () if value.strip().lower() == "none" else tuple(dict.fromkeys(v.strip() for v in value.split(",")
                                                                          if v.strip()))


def _chains(_ctx, _param, value: str) -> tuple[tuple[str, float, str], ...]:
    """``wanda-50+int8,magnitude-30+int4`` -> ((method, sparsity, quantizer), ...); ``none`` -> ()."""
    if value.strip().lower() == "none":
        return ()
    chains = []
    for item in (v.strip() for v in value.split(",") if v.strip()):
        pruned, plus, quantizer = item.partition("+")
        method, dash, percent = pruned.rpartition("-")
        try:
            sparsity = float(percent) / 100
        except ValueError:
            sparsity = -1.0
        if not (plus and dash and method and quantizer and 0 < sparsity < 1):
            raise click.BadParameter(f"{item!r}: give METHOD-PERCENT+QUANTIZER, such as wanda-50+int8")
        chains.append((method, sparsity, quantizer))
    return tuple(chains)


@dataclass(frozen=True)
class DemoModels:
    """Which models the demo builds: pruning methods x sparsities of SmolLM2 (or ``model_dir``)."""

    methods: tuple[str, ...]
    sparsities: tuple[float, ...]
    dynamo: bool
    model_dir: Path | None
    quantizers: tuple[str, ...]
    chains: tuple[tuple[str, float, str], ...]


@cli.command("demo", epilog=DEMO_EXIT_CODES)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("edgeval-demo"),
              show_default=True, help="Output folder (models, reports, summary, plot, demo.html); reused as a cache.")
@bbq_data_option()
@click.option("--limit", type=click.IntRange(min=1), default=600, show_default=True,
              help="BBQ items sampled (stratified, 3 option orders each); candidates are scored in 4 looks and "
                   "stop as soon as the gate decides.")
@group("models", DemoModels,
       click.option("--methods", default="wanda,magnitude", show_default=True, callback=_methods,
                    help=f"Comma-separated pruning methods ({', '.join(METHODS)})."),
       click.option("--sparsities", default="0.3,0.5", show_default=True, callback=_sparsities,
                    help="Comma-separated sparsities in (0, 1)."),
       click.option("--dynamo", is_flag=True, help="Export with the dynamo ONNX exporter (about 7x slower than the "
                    "default legacy exporter; stores tied weights once)."),
       click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
                    help="A Hugging Face model directory to use instead of SmolLM2-135M-Instruct."),
       click.option("--quantizers", default="int8,int4", show_default=True, callback=_quantizers,
                    help="Quantizers applied to the dense export ('edgeval compressors'; 'none': skip)."),
       click.option("--chains", default="wanda-50+int8", show_default=True, callback=_chains,
                    help="Prune-then-quantize candidates, METHOD-PERCENT+QUANTIZER, comma-separated ('none': "
                         "skip)."))
@click.option("--lenses", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Also run the second bias lenses, CrowS-Pairs and StereoSet, on N units each (0: off; they "
                   "score the baseline again for every candidate, so each adds minutes; docs/lenses.md).")
def demo_cmd(out_dir: Path, bbq_data: Path | None, limit: int, models: DemoModels, lenses: int) -> int:
    """Prune SmolLM2-135M-Instruct (Wanda, magnitude) at a few sparsities, gate every pruned copy against the
    dense model (size, latency, BBQ bias, perplexity) and write a table, a plot and demo.html to --out.

    Also quantizes the dense export (--quantizers) and prunes then quantizes (--chains), and gates those too.
    Needs the [torch], [onnx] and [demo] extras. On a 2-core VM the default run took 31 minutes (partly loaded);
    without the quantized candidates (--quantizers none --chains none) 12.6 minutes idle. It keeps about 6 GB of
    models in --out (a second run reuses them)."""
    from ..demo import run_demo

    result = run_demo(out_dir, bbq_data=bbq_data, limit=limit, methods=models.methods, sparsities=models.sparsities,
                      dynamo=models.dynamo, model_dir=models.model_dir, lenses=lenses,
                      quantizers=models.quantizers, chains=models.chains,
                      progress=lambda m: click.echo(m, err=True))
    for name, path in result.files.items():
        click.echo(f"{name}: {path}")
    click.echo(f"total time: {result.elapsed_s:.1f} s")
    return result.exit_code  # cli.main turns it into the process's exit code
