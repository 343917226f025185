"""The end of a search: write the outputs, the recommended candidate's HTML report, the blessing marker, then
hand the result to ``edgeval_search_done`` plugins. The stale marker is removed before the search starts, so a
search that dies leaves no ``BLESSED`` behind (the ``edgeval check --bless-dir`` semantics)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import BadInputError


def start(cfg: Any, bless_dir: str | Path | None) -> None:
    """Before any work: refuse an output folder inside the model; revoke the old marker."""
    from ..api import prepare

    source, out = Path(cfg.source).resolve(), Path(cfg.out_dir).resolve()
    if out == source or out.is_relative_to(source) or (source.is_file() and source.parent == out):
        raise BadInputError("the search output folder would sit in or be the model's folder; choose another --out",
                            path=cfg.out_dir)
    if bless_dir is not None:
        prepare(None, bless_dir, disabled_plugins=cfg.disabled)


def finish(cfg: Any, doc: dict[str, Any], bless_dir: str | Path | None,
           progress: Callable[[str], None] | None) -> Any:
    from . import SearchResult
    from .outputs import write_all

    say = progress or (lambda _m: None)
    out = Path(cfg.out_dir)
    best = _best_report(doc, out)
    if best is not None:
        from ..atomic import atomic_write_text
        from ..render import render

        atomic_write_text(out / "recommended-report.html", render(best[0], "html"))
    files = write_all(doc, out)
    marker = _bless(Path(bless_dir), best) if bless_dir is not None else None
    result = SearchResult(out, files["json"], doc, files, marker)
    _announce(result, cfg.disabled, say)
    say(f"edgeval search: {doc['counts']['evaluated']} candidates, exit {doc['exit_code']}: open {files['html']}")
    return result


def _best_report(doc: dict[str, Any], out: Path) -> tuple[Any, Path] | None:
    """(report, path) of the recommended point, read back from its file (the gate's own verdict)."""
    from ..report import Report

    best = next((p for p in doc["points"] if p["key"] == doc["recommended"]), None)
    if best is None or not best.get("report"):
        return None
    path = out / best["report"]["path"]
    return Report.load(path), path


def _bless(directory: Path, best: tuple[Any, Path] | None) -> Path:
    """BLESSED for the recommended report (it passed), else NOT_BLESSED with no report."""
    import json

    from ..atomic import atomic_write_text
    from ..hooks.blessing import NOT_BLESSED, bless, revoke

    if best is not None:
        return bless(directory, best[0], best[1])
    revoke(directory)
    body = {"verdict": "blocked", "exit_code": 1, "report": None, "report_sha256": None, "candidate_sha256": None,
            "reason": "edgeval search: no candidate passed the gate"}
    return atomic_write_text(directory / NOT_BLESSED, json.dumps(body, indent=2) + "\n")


def _announce(result: Any, disabled: Any, say: Callable[[str], None]) -> None:
    """``edgeval_search_done(result, path)`` for every plugin; a failing plugin is reported, not raised."""
    from ..plugins import plugin_manager

    for impl in plugin_manager(disabled).hook.edgeval_search_done.get_hookimpls():
        try:
            impl.function(result=result, path=str(result.path))
        except Exception as exc:  # noqa: BLE001  (a plugin's failure must not lose a finished search)
            say(f"edgeval: error: plugin '{impl.plugin_name}' failed on search_done: {type(exc).__name__}: {exc}")


__all__ = ["start", "finish"]
