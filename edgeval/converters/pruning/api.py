"""Public entry points: :func:`prune_model` (in memory) and :func:`prune_directory` (model on disk → pruned dir).

Methods: ``random`` (seeded noise), ``magnitude`` (``|W|``) and ``wanda`` (``|W|·‖X‖₂``, sequential calibration,
see :mod:`.wanda`). Patterns: ``unstructured`` or ``N:M`` (zero N of every M consecutive inputs of each row).
Bad values raise :class:`~edgeval.errors.BadInputError` (exit 3) with one line; a missing or unloadable model
raises :class:`~edgeval.errors.ModelError`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ...errors import BadInputError, UsageError
from ...suggest import suggestion
from . import manifest as mf
from .calibration import Calibration, load_calibration
from .discovery import PrunableLayer, find_blocks, find_layers
from .masks import Pattern, layer_seed, parse_pattern, random_scores, select

METHODS = ("random", "magnitude", "wanda")
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class PruneSettings:
    """Validated settings of one pruning run."""

    method: str
    sparsity: float
    pattern: Pattern
    per_row: bool
    seed: int
    n_samples: int
    seq_len: int

    @classmethod
    def build(cls, method: str, sparsity: float | None, pattern: str = "unstructured", per_row: bool | None = None,
              seed: int = 0, n_samples: int = 128, seq_len: int = 512) -> "PruneSettings":
        """Check every value; raise :class:`BadInputError` with one line naming the bad one."""
        method = _check_method(method)
        parsed = parse_pattern(pattern)
        sparsity = _check_sparsity(sparsity, parsed)
        for name, value in (("n_samples", n_samples), ("seq_len", seq_len)):
            _check_positive_int(name, value)
        _check_int("seed", seed)
        row = True if parsed.structured else (method == "wanda" if per_row is None else bool(per_row))
        return cls(method, sparsity, parsed, row, seed, n_samples, seq_len)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "pattern": str(self.pattern), "per_row": self.per_row, "seed": self.seed}


@dataclass(frozen=True)
class PruneResult:
    """The pruned model (pruned in place) and its manifest (what ``pruning.json`` holds)."""

    model: Any
    manifest: dict[str, Any] = field(repr=False)
    out_dir: Path | None = None

    @property
    def measured_sparsity(self) -> float:
        return self.manifest["measured_sparsity"]

    @property
    def warnings(self) -> list[str]:
        return self.manifest["warnings"]


def _check_method(method: Any) -> str:
    if method in METHODS:
        return method
    raise BadInputError(f"unknown pruning method {method!r}{suggestion(str(method), METHODS, list_known=True)}")


def _check_sparsity(sparsity: Any, pattern: Pattern) -> float:
    implied = pattern.sparsity  # None for unstructured
    if sparsity is None and implied is not None:
        return implied
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 < sparsity < 1:
        raise BadInputError(f"sparsity must be a number strictly between 0 and 1, got {sparsity!r}")
    if implied is not None and not math.isclose(sparsity, implied, abs_tol=1e-9):
        raise BadInputError(f"pattern {pattern} implies sparsity {implied:g}, but sparsity={sparsity!r} "
                            "was requested (leave sparsity out with N:M patterns)")
    return float(sparsity)


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{name} must be an integer, got {value!r}")


def _check_positive_int(name: str, value: Any) -> None:
    _check_int(name, value)
    if value <= 0:
        raise BadInputError(f"{name} must be a positive integer, got {value!r}")


def _check_layers(layers: Sequence[PrunableLayer], pattern: Pattern) -> None:
    """N:M needs every pruned layer's in_features divisible by M: check before touching any weight."""
    for layer in layers:
        if pattern.structured and layer.in_features % pattern.m:
            raise BadInputError(f"N:M pattern {pattern} needs in_features divisible by {pattern.m}; "
                                f"{layer.name} has {layer.in_features} (exclude it)")


def _check_seq_len(model: Any, seq_len: int) -> None:
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(limit, int) and seq_len > limit:
        raise BadInputError(f"seq_len={seq_len} exceeds the model's {limit} positions")


def _selector(settings: PruneSettings) -> Callable[[Any, PrunableLayer], Any]:
    return lambda scores, _layer: select(scores, settings.sparsity, settings.pattern, per_row=settings.per_row)


def _prune_by_weight(layers: Sequence[PrunableLayer], settings: PruneSettings, progress: Progress | None) -> None:
    """random / magnitude: score each layer from its own weight (or seeded noise) and zero the lowest."""
    from .wanda import apply_mask

    choose = _selector(settings)
    for done, layer in enumerate(layers, 1):
        matrix = layer.matrix
        if settings.method == "random":
            scores = random_scores(tuple(matrix.shape), layer_seed(settings.seed, layer.name))
        else:
            scores = matrix.detach().abs().float().cpu()
        apply_mask(layer, choose(scores, layer))
        if progress:
            progress(done, len(layers), layer.name)


def _calibration(settings: PruneSettings, calibration: Any, tokenizer: Any) -> Calibration:
    if isinstance(calibration, Calibration):
        return calibration
    if tokenizer is None:
        raise UsageError("wanda needs calibration tokens: pass tokenizer= (to cut them from the calibration "
                         "text) or calibration=Calibration.from_ids(...)")
    return load_calibration(tokenizer, calibration, n_samples=settings.n_samples, seq_len=settings.seq_len,
                            seed=settings.seed)


def prune_model(model: Any, method: str, sparsity: float | None = None, *, pattern: str = "unstructured",  # noqa: PLR0913  (the prune options)
                calibration: str | Path | Calibration | None = None, tokenizer: Any = None, n_samples: int = 128,
                seq_len: int = 512, seed: int = 0, include: Iterable[str] | str | None = None,
                exclude: Iterable[str] | str | None = None, per_row: bool | None = None,
                progress: Progress | None = None) -> PruneResult:
    """Prune the decoder-block linears of ``model`` in place; return it with its manifest.

    ``sparsity`` may be left out with an N:M ``pattern`` (it is then N/M). ``per_row`` defaults to True for
    wanda (its per-output comparison group) and False (one threshold per matrix) otherwise. ``calibration`` (wanda
    only) is a text file, a :class:`Calibration`, or None for the shipped corpus; text needs ``tokenizer``.
    ``progress(done, total, label)`` is called after each layer (each block for wanda).
    """
    settings = PruneSettings.build(method, sparsity, pattern, per_row, seed, n_samples, seq_len)
    layers = find_layers(model, include, exclude)
    _check_layers(layers, settings.pattern)
    calib = None
    if settings.method == "wanda":
        calib = _calibration(settings, calibration, tokenizer)
        _check_seq_len(model, int(calib.ids.shape[1]))
    started, training = time.perf_counter(), model.training
    model.eval()
    try:
        _run(model, layers, settings, calib, progress)
    finally:
        model.train(training)
    return PruneResult(model, _manifest(model, layers, settings, calib, time.perf_counter() - started))


def _run(model: Any, layers: Sequence[PrunableLayer], settings: PruneSettings, calib: Calibration | None,
         progress: Progress | None) -> None:
    import torch

    with torch.no_grad():
        if calib is None:
            _prune_by_weight(layers, settings, progress)
        else:
            from .wanda import prune_wanda

            prune_wanda(model, find_blocks(model)[1], layers, calib.ids, _selector(settings), progress)


def _manifest(model: Any, layers: Sequence[PrunableLayer], settings: PruneSettings, calib: Calibration | None,
              elapsed: float) -> dict[str, Any]:
    block_name, _ = find_blocks(model)
    totals = mf.model_totals(model, find_layers(model))
    extra = {"calibration": calib.to_json() if calib else None, "elapsed_s": round(elapsed, 3),
             "model": {"class": type(model).__name__, "blocks": block_name}}
    return mf.build_manifest(settings.to_json(), layers, settings.sparsity, totals, extra)


def prune_directory(src: str | Path, out_dir: str | Path, method: str, sparsity: float | None = None, *,
                    overwrite: bool = False, disabled: tuple[str, ...] = (), **options: Any) -> PruneResult:
    """Load ``src`` (HF directory or ``.gguf``), prune it, write a loadable HF directory to ``out_dir``.

    ``options`` are :func:`prune_model`'s keywords; the tokenizer comes from ``src``. The output holds
    safetensors weights, config, tokenizer files and ``pruning.json``; it is written to a temporary sibling and
    renamed into place. Plugins' ``edgeval_after_prune`` hooks run afterwards (but not those of ``disabled``
    plugins).
    """
    from ...artifacts import load_artifact
    from .io import check_output, load_model, save_pruned

    _check_options(method, sparsity, options)
    out = check_output(out_dir, overwrite)
    artifact = load_artifact(src)
    model, tokenizer, source = load_model(src)
    options.setdefault("tokenizer", tokenizer)
    result = prune_model(model, method, sparsity, **options)
    manifest = {**result.manifest, "source": artifact.to_json()}
    save_pruned(model, source, out, manifest)
    _after_prune(out, manifest, disabled)
    return PruneResult(model, manifest, out_dir=out)


def _check_options(method: str, sparsity: float | None, options: dict[str, Any]) -> None:
    """Validate :func:`prune_directory`'s settings before spending time on loading the model."""
    defaults = dict(prune_model.__kwdefaults__ or {})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise UsageError(f"unknown pruning option(s) {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
    given = {**defaults, **options}
    PruneSettings.build(method, sparsity, given["pattern"], given["per_row"], given["seed"], given["n_samples"],
                        given["seq_len"])


def _after_prune(out: Path, manifest: dict[str, Any], disabled: tuple[str, ...] = ()) -> None:
    from ...plugins import plugin_manager

    plugin_manager(disabled).hook.edgeval_after_prune(model_dir=str(out), manifest=manifest)
