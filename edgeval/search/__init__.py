"""``edgeval search``: the most compressed model that still passes the gate.

:func:`search` runs the space of compression settings (:mod:`.space`) through the sequential design
(:mod:`.design`), building and gating each candidate (:mod:`.candidate`) on an executor (:mod:`.executors`), with
every evaluation journaled (:mod:`.journal`) so that a killed search resumes; it writes ``search.json``,
``summary.md`` and ``search.html`` (:mod:`.outputs`) and returns a :class:`SearchResult`. See docs/search.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .runner import SearchConfig


@dataclass(frozen=True)
class SearchResult:
    """What a search found. ``points``: every evaluated point (plain JSON, as in ``search.json``); ``front``: the
    keys of the Pareto-optimal points; ``recommended``: the most compressed point that passed (None: none did);
    ``exit_code``: 0 a passing recommendation, 1 none passed, 3/4 every candidate failed to build or check."""

    out_dir: Path
    path: Path
    document: dict[str, Any] = field(repr=False)
    files: dict[str, Path] = field(default_factory=dict)
    marker: Path | None = None

    @property
    def points(self) -> list[dict[str, Any]]:
        return list(self.document["points"])

    @property
    def front(self) -> list[dict[str, Any]]:
        return [p for p in self.points if p["on_front"]]

    @property
    def recommended(self) -> dict[str, Any] | None:
        return next((p for p in self.points if p["key"] == self.document["recommended"]), None)

    @property
    def highest_passing(self) -> dict[str, float | None]:
        """Each method's highest passing sparsity (None: none passed)."""
        return {m["axis"]: m["highest_passing_sparsity"] for m in self.document["methods"]}

    @property
    def exit_code(self) -> int:
        return int(self.document["exit_code"])


def search(model: str | Path, out_dir: str | Path, *, methods: Sequence[str] = ("magnitude", "wanda"),  # noqa: PLR0913  (keyword-only options of a public API)
           sparsity: tuple[float, float, float] | None = None, objective: str = "zlib", policy: Any = None,
           bless_dir: str | Path | None = None, progress: Callable[[str], None] | None = None,
           settings: Mapping[str, Mapping[str, Any]] | None = None, **options: Any) -> SearchResult:
    """Search ``methods`` (compressor names or ``prune+quantize`` chains) over ``sparsity`` ``(lo, hi,
    resolution)`` for the most compressed candidate of ``model`` (a Hugging Face directory or .gguf) that passes
    ``policy``, minimising ``objective`` (``bytes``, ``zlib`` or ``latency``). ``settings``: fixed settings per
    compressor; ``options``: the other :class:`~edgeval.search.runner.SearchConfig` fields (strategy, executor,
    workers, ray_address, baseline_predictions, seed, threads, dynamo, disabled). ``bless_dir`` receives BLESSED
    for the recommended candidate's report (NOT_BLESSED when none passed), as ``edgeval check --bless-dir``.
    Raises :class:`~edgeval.errors.EdgevalError` for bad input (one line, exit code 2 or 3)."""
    from .publish import finish, start
    from .runner import execute

    cfg = SearchConfig(Path(model), Path(out_dir), tuple(methods), sparsity, dict(settings or {}), objective,
                       policy, **options)
    start(cfg, bless_dir)
    doc = execute(cfg, progress)
    return finish(cfg, doc, bless_dir, progress)


__all__ = ["search", "SearchResult", "SearchConfig"]
