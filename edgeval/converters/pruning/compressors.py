"""The pruning methods as compressors (:class:`edgeval.converters.compressor.Compressor`): ``random``,
``magnitude`` and ``wanda``, each a Hugging Face directory (or ``.gguf``) in and a pruned Hugging Face directory
out, with the same settings as ``edgeval prune``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...settings import Settings, setting
from ..compressor import StepContext, StepResult


@dataclass(frozen=True)
class PruneStepSettings(Settings):
    """Settings of the weight-scored pruners (``random``, ``magnitude``)."""

    sparsity: float | None = setting(None, "Fraction of weights to zero, in (0, 1); optional with an N:M pattern.",
                                     exclusiveMinimum=0, exclusiveMaximum=1)
    pattern: str = setting("unstructured", "unstructured, 2:4 or any N:M.", minLength=1)
    per_row: bool | None = setting(None, "Threshold per output row (true) or per matrix (false); default: per "
                                         "row for wanda, per matrix otherwise.")
    include: list[str] = setting([], "Only prune layers whose name matches (glob, or re:REGEX).")
    exclude: list[str] = setting([], "Do not prune layers whose name matches (glob, or re:REGEX).")
    seed: int = setting(0, "Seed of the random method and of the calibration sample.", minimum=0)


@dataclass(frozen=True)
class WandaStepSettings(PruneStepSettings):
    """Wanda's settings: the weight pruners' and its calibration sample."""

    calibration: str = setting("builtin", "A text file, a folder of .txt files, a .jsonl with a \"text\" field, "
                                          "or 'builtin' for the corpus edgeval ships.", minLength=1)
    n_samples: int = setting(128, "Calibration sequences.", minimum=1)
    seq_len: int = setting(512, "Tokens per calibration sequence.", minimum=8)


#: keys of the pruning record that are settings, per-layer figures or versions (kept elsewhere in the manifest)
_NOT_MEASURED = ("schema", "layers", "warnings", "environment", "method", "pattern", "seed", "edgeval_version")


class _Pruner:
    kind = "prune"
    accepts = ("hf", "gguf")
    produces = "hf"
    Settings: type = PruneStepSettings

    def __init__(self) -> None:
        self.summary = f"{self.name} pruning of the decoder-block linears (unstructured or N:M)"

    name = ""

    def options(self, settings: Any) -> dict[str, Any]:
        """:func:`~edgeval.converters.pruning.api.prune_model`'s keywords for ``settings``."""
        return {"pattern": settings.pattern, "per_row": settings.per_row, "seed": settings.seed,
                "include": list(settings.include) or None, "exclude": list(settings.exclude) or None}

    def check(self, settings: Any) -> None:
        """Refuse an impossible combination (N:M with another sparsity …) before any model is loaded."""
        from .api import PruneSettings

        options = self.options(settings)
        PruneSettings.build(self.name, settings.sparsity, options["pattern"], options["per_row"], options["seed"],
                            getattr(settings, "n_samples", 128), getattr(settings, "seq_len", 512))

    def apply(self, source: Path, out_dir: Path, settings: Any, ctx: StepContext) -> StepResult:
        from .api import prune_model
        from .io import load_model, save_model_dir

        model, tokenizer, origin = load_model(source)
        def tick(done: int, total: int, label: str) -> None:
            if done == total or done % max(1, total // 4) == 0:
                ctx.progress(f"  pruned {done}/{total} ({label})")

        result = prune_model(model, self.name, settings.sparsity, tokenizer=tokenizer, progress=tick,
                             **self.options(settings))
        save_model_dir(model, origin, out_dir)
        record = result.manifest
        return StepResult(out_dir, measured={k: v for k, v in record.items() if k not in _NOT_MEASURED},
                          layers=record["layers"], tools=record["environment"], warnings=record["warnings"])


class RandomPruner(_Pruner):
    name = "random"


class MagnitudePruner(_Pruner):
    name = "magnitude"


class WandaPruner(_Pruner):
    name = "wanda"
    Settings = WandaStepSettings

    def check(self, settings: Any) -> None:
        """The weight pruners' checks, and the calibration file read once (missing, empty, not text: one line,
        before any model is loaded)."""
        from ..quantization.calib import check_corpus

        super().check(settings)
        check_corpus(settings.calibration)

    def options(self, settings: Any) -> dict[str, Any]:
        calibration = None if settings.calibration == "builtin" else settings.calibration
        return {**super().options(settings), "calibration": calibration, "n_samples": settings.n_samples,
                "seq_len": settings.seq_len}


__all__ = ["PruneStepSettings", "WandaStepSettings", "RandomPruner", "MagnitudePruner", "WandaPruner"]
