"""``edgeval search MODEL``: the most compressed candidate that still passes the gate (docs/search.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .app import cli
from .options import (
    apply_settings,
    disable_plugin_option,
    dotted_sets,
    policy_option,
    policy_settings,
    seed_option,
    threads_option,
)

SEARCH_EXIT_CODES = """\b
Exit codes:
  0  found      a candidate passed the gate: the recommended one (its own report says pass)
  1  none       no candidate passed (each was blocked or inconclusive, or failed to build)
  2  usage      bad command line: empty search space, unknown objective/executor, --sparsity for
                methods without a pruning step, --method-set for a method not searched
  3  bad input  unknown method, impossible chain, bad setting, unreadable model or policy, an
                objective this runtime cannot measure, the dense model's own check failing
  4  internal   a bug in edgeval or a plugin
Every candidate's outcome is in search.json; a failed one is recorded with its error, never a pass.
"""
_parse_method_set = dotted_sets("METHOD.KEY=VALUE", "wanda.n_samples=16")


def _fixed(sets: tuple[tuple[str, Any], ...]) -> dict[str, dict[str, Any]]:
    fixed: dict[str, dict[str, Any]] = {}
    for dotted, value in sets:
        name, _, key = dotted.partition(".")
        fixed.setdefault(name, {})[key] = value
    return fixed


@cli.command("search", epilog=SEARCH_EXIT_CODES)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--methods", default="magnitude,wanda", show_default=True, metavar="M1,M2+Q",
              help="Compressors to search (`edgeval compressors`), comma-separated; chain with '+' (wanda+int8); "
                   "a step's own settings in brackets, to search patterns and bit widths side by side "
                   "(magnitude[pattern=2:4], int4[block_size=64]).")
@click.option("--sparsity", metavar="LO:HI", help="Sparsity range searched for chains with a pruning step "
              "[default: 0.1:0.9].")
@click.option("--resolution", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
              help="Grid step of the sparsity axis (0.05: 5 points).")
@click.option("--objective", type=click.Choice(["zlib", "bytes", "latency"]), default="zlib", show_default=True,
              help="What 'most compressed' minimises: zlib bytes, bytes on disk, or latency p50.")
@click.option("--strategy", type=click.Choice(["bisect", "grid"]), default="bisect", show_default=True,
              help="bisect: per method, the highest passing sparsity by bisection; grid: every point.")
@click.option("--screen/--no-screen", default=True, show_default=True,
              help="Forecast where each pruner's perplexity gate fails (the source pruned in memory) and gate "
                   "that boundary first; answers rest on gated points only.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("edgeval-search"),
              show_default=True, help="Output folder: search.json, summary.md, search.html, candidates/, cache.")
@click.option("--method-set", "method_sets", multiple=True, metavar="METHOD.KEY=VALUE", callback=_parse_method_set,
              help="A fixed compressor setting for every candidate of METHOD (repeatable).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: a process pool sized by cores and memory; ray: Ray tasks (extra edgeval[ray]).")
@click.option("--workers", type=click.IntRange(min=1), help="Local pool size (capped by cores and memory).")
@click.option("--ray-address", help="Connect to this Ray cluster (auto, ray://HOST:10001); default: a local one.")
@click.option("--baseline-predictions", type=click.Path(path_type=Path), help="Saved BBQ predictions of the dense "
              "model (instead of scoring it once here).")
@click.option("--dynamo", is_flag=True, help="Export with the dynamo exporter (slower) instead of the legacy one.")
@click.option("--bless-dir", type=click.Path(file_okay=False, path_type=Path), help="BLESSED for the recommended "
              "candidate's report, NOT_BLESSED when none passed (as `edgeval check --bless-dir`).")
@policy_option("Policy file that gates every candidate (default: ./pyproject.toml's [tool.edgeval], else the "
               "built-in defaults).")
@policy_settings
@seed_option()
@threads_option("Intra-op threads per candidate (default: cores / workers).")
@disable_plugin_option
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def search_cmd(model: Path, methods: str, sparsity: str | None, resolution: float, objective: str,  # noqa: PLR0913  (click passes every option)
               method_sets: tuple[tuple[str, Any], ...], policy_path: Path | None,
               settings: tuple[tuple[str, Any], ...], disabled: tuple[str, ...], quiet: bool, **opts: Any) -> int:
    """Search compression settings of MODEL (a Hugging Face directory or .gguf) for the most compressed
    candidate that passes the gate; write search.json, summary.md and search.html to --out."""
    from ..policy import Policy, find_project_policy
    from ..search import search
    from ..search.space import parse_range, split_methods

    lo_hi = parse_range(sparsity) if sparsity else None
    # the default range is implied unless --sparsity or --resolution was given (then every method must prune)
    grid = (*lo_hi, resolution) if lo_hi else (0.1, 0.9, resolution) if resolution != 0.1 else None
    source = policy_path or find_project_policy()
    policy = Policy.load(source, disabled) if source else Policy.default(disabled)
    progress = None if quiet else (lambda m: click.echo(m, err=True))
    result = search(model, opts.pop("out_dir"), methods=split_methods(methods),
                    sparsity=grid,
                    objective=objective, policy=apply_settings(policy, settings), bless_dir=opts.pop("bless_dir"),
                    progress=progress, settings=_fixed(method_sets), disabled=disabled, **opts)
    if not quiet:
        click.echo(Path(result.out_dir, "summary.md").read_text(encoding="utf-8"))
    return result.exit_code
