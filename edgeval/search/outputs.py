"""The search's outputs: ``search.json`` (schema ``edgeval.search/1``, :file:`edgeval/schemas/search.schema.json`),
``summary.md`` and ``search.html`` (the front plotted: objective × ΔSRS with its interval, and objective ×
perplexity ratio; every point kept, the recommendation marked, its own gate report linked)."""
from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any, Mapping

from .._version import __version__
from .metrics import front, metrics, recommend
from .space import OBJECTIVES

SCHEMA_ID = "edgeval.search/1"


def _file(path: Path | None, root: Path) -> dict[str, Any] | None:
    if path is None:
        return None
    path = Path(path)
    try:
        shown = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        shown = str(path)
    return {"path": shown, "sha256": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None}


def exit_code(points: list[dict[str, Any]], recommended: str | None) -> int:
    """0 a passing recommendation; 1 none passed (some candidate was gated); else the failures' code (3 or 4)."""
    if recommended is not None:
        return 0
    if any(p["status"] == "done" for p in points):
        return 1
    return max((int(p.get("exit_code") or 4) for p in points), default=4)


def settings(cfg: Any, space: Any, policy: dict[str, Any], screened: bool = False) -> dict[str, Any]:
    """What was searched, how, and under which policy (the one that gated every candidate); ``screened``:
    whether a screen's hint ordered some axis's design."""
    return {"methods": [a.name for a in space.axes], "sparsity": list(cfg.sparsity or ()) or None,
            "grid": {a.name: list(a.grid) for a in space.axes}, "fixed": dict(space.fixed),
            "objective": space.objective, "strategy": cfg.strategy, "screen": screened,
            "executor": cfg.executor, "seed": cfg.seed,
            "export": cfg.export, "policy": policy}


def screen_section(screens: Mapping[str, Any], points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each axis's forecast, with its agreement with the gate: every gated point the screen also forecast, the
    two perplexity ratios side by side (the forecast's own error, measured on every run)."""
    out = []
    for name, found in screens.items():
        entry = found.to_json()
        forecasts = {p["index"]: p for p in entry["points"]}
        entry["compared"] = [
            {"sparsity": p["sparsity"], "forecast_ratio": forecasts[p["index"]]["ratio"],
             "gated_ratio": p["metrics"]["perplexity_ratio"]}
            for p in points if p["axis"] == name and p["index"] in forecasts
            and (p.get("metrics") or {}).get("perplexity_ratio") is not None]
        out.append(entry)
    return out


def document(cfg: Any, space: Any, source: Any, base: Any, jobs: Mapping[str, list[Any]], journal: Any,  # noqa: PLR0913
             elapsed: float, screens: Mapping[str, Any] | None = None,
             hints: Mapping[str, int | None] | None = None) -> dict[str, Any]:
    """The search document from the journal (only this search's keys, in grid order); ``hints``: the order each
    axis's design ran in (see :func:`edgeval.search.runner._hints`)."""
    from .runner import axis_answer, decisions

    screens = screens or {}
    hints = dict(hints) if hints is not None else {name: s.hint for name, s in screens.items()}

    points = [dict(journal.records[j.key]) for a in space.axes for j in jobs[a.name] if j.key in journal.records]
    on_front = front(points, space.objective)
    for point in points:
        point["on_front"] = point["key"] in on_front
    best = recommend(points, space.objective)
    root = cfg.out_dir
    keys = {name: (v, k) for name, (v, k, _) in OBJECTIVES.items()}
    return {"schema": SCHEMA_ID, "edgeval_version": __version__,
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(elapsed, 3), "source": source.to_json(),
            "settings": settings(cfg, space, next(iter(jobs.values()))[0].policy,
                                 any(h is not None for h in hints.values())),
            "baseline": {"model": _file(base.model, root), "report": _file(base.report_path, root),
                         "predictions": _file(base.predictions, root),
                         "metrics": metrics(base.report.results, keys)},
            "points": points,
            "decisions": [d for a in space.axes
                          for d in decisions(a, jobs, journal, cfg.strategy, hints.get(a.name))],
            "screen": screen_section(screens, points),
            "methods": [axis_answer(a, jobs, journal, _settled(a, space, jobs, journal, cfg.strategy))
                        for a in space.axes],
            "front": on_front, "recommended": best,
            "counts": {"evaluated": len(points), "failed": sum(p["status"] == "failed" for p in points),
                       "bbq_items_scored": sum((p["metrics"] or {}).get("bbq_items_scored") or 0 for p in points)},
            "exit_code": exit_code(points, best)}


def _settled(axis: Any, space: Any, jobs: Mapping[str, list[Any]], journal: Any, strategy: str) -> str | None:
    """The quantizer-alone axis whose failure settled chain ``axis`` (None: not settled that way)."""
    from .runner import floors, outcomes

    floor = floors(space).get(axis.name) if strategy == "bisect" else None
    by_name = {a.name: a for a in space.axes}
    if floor is None or outcomes(by_name[floor], jobs, journal).get(0) != "fail" or outcomes(axis, jobs, journal):
        return None
    return floor


def load_schema() -> dict[str, Any]:
    """The search document's JSON Schema (``edgeval/schemas/search.schema.json``)."""
    from ..schemas import load_schema as schema

    return schema("search")


def check_document(doc: Mapping[str, Any], path: Path) -> None:
    """A search document that breaks its schema is an edgeval bug (SchemaViolation naming where)."""
    from ..schemas import check_side_file

    check_side_file("search", doc, path)


def write_all(doc: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """``search.json`` (schema-checked), ``summary.md``, ``search.html``; returns their paths by kind."""
    import json

    from ..atomic import atomic_write_text
    from .page import html, markdown

    check_document(doc, out_dir / "search.json")
    files = {"json": atomic_write_text(out_dir / "search.json", json.dumps(doc, indent=2, allow_nan=False) + "\n"),
             "markdown": atomic_write_text(out_dir / "summary.md", markdown(doc)),
             "html": atomic_write_text(out_dir / "search.html", html(doc, out_dir))}
    return files


__all__ = ["SCHEMA_ID", "document", "write_all", "exit_code", "load_schema", "check_document"]
