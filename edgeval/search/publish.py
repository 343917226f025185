"""The end of a search: the recommended candidate's HTML report, the blessing marker (through
:func:`edgeval.api.publish`, like ``edgeval check``), the outputs, then ``edgeval_search_done`` plugins. The stale
marker is removed before the search starts, so a search that dies leaves no ``BLESSED`` behind (the
``edgeval check --bless-dir`` semantics)."""
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
    best = _report_of(doc, out, doc["recommended"])
    if best is not None:
        from ..atomic import atomic_write_text
        from ..render import render

        atomic_write_text(out / "recommended-report.html", render(best[0], "html"))
    files = write_all(doc, out)
    if not _announce(SearchResult(out, files["json"], doc, files, None), cfg.disabled, say):
        doc["exit_code"] = 4  # a consumer of the front failed: not a run to deploy from, so nothing is blessed
        bless_dir = None
    marker = _bless(doc, out, Path(bless_dir), cfg.disabled) if bless_dir is not None else None
    files = write_all(doc, out)
    result = SearchResult(out, files["json"], doc, files, marker)
    say(f"edgeval search: {doc['counts']['evaluated']} candidates, exit {doc['exit_code']}: open {files['html']}")
    return result


def _report_of(doc: dict[str, Any], out: Path, key: str | None) -> tuple[Any, Path, dict[str, Any]] | None:
    """(report, path, point) of the point ``key``, read back from its file (the gate's own verdict)."""
    from ..report import Report

    point = next((p for p in doc["points"] if p["key"] == key), None)
    if point is None or not point.get("report"):
        return None
    path = out / point["report"]["path"]
    return Report.load(path), path, point


def _bless(doc: dict[str, Any], out: Path, directory: Path, disabled: Any) -> Path | None:
    """The marker through :func:`edgeval.api.publish`, the one blessing step: ``BLESSED`` with the recommended
    candidate's report; when none passed, ``NOT_BLESSED`` with the report of the most compressed candidate gated
    (no marker at all when no candidate has a report). The point's report sha256 is re-read afterwards."""
    import hashlib

    from ..api import publish
    from .metrics import compression_rank

    objective = doc["settings"]["objective"]
    gated = [p for p in doc["points"] if p["status"] == "done" and p.get("report")
             and (p.get("metrics") or {}).get(objective) is not None]
    key = doc["recommended"] or (min(gated, key=lambda p: compression_rank(p, objective))["key"] if gated else None)
    chosen = _report_of(doc, out, key)
    if chosen is None:
        return None
    report, path, point = chosen
    marker = publish(report, path, bless_dir=directory, disabled_plugins=disabled).marker
    point["report"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return marker


def _announce(result: Any, disabled: Any, say: Callable[[str], None]) -> bool:
    """``edgeval_search_done(result, path)`` for every plugin, before any blessing; a failing plugin is reported,
    not raised (the search's files stay), and makes the run exit 4 unblessed. True when every plugin succeeded."""
    from ..plugins import plugin_manager

    ok = True
    for impl in plugin_manager(disabled).hook.edgeval_search_done.get_hookimpls():
        try:
            impl.function(result=result, path=str(result.path))
        except Exception as exc:  # noqa: BLE001  (a plugin's failure must not lose a finished search)
            say(f"edgeval: error: plugin '{impl.plugin_name}' failed on search_done: {type(exc).__name__}: {exc}")
            ok = False
    return ok


__all__ = ["start", "finish"]
