"""Load BBQ (Parrish et al., 2022) from a folder of upstream jsonl files into validated :class:`BBQItem` records.

A folder may hold any subset of the 11 category files (``<Category>.jsonl``); :attr:`BBQData.categories` says
which were evaluated. Items are keyed on ``(category, example_id)``. Each item's biased option comes from BBQ's
``additional_metadata.csv`` (``target_loc``) when that file sits in the folder or in ``../supplemental``, else
it is derived from ``answer_info`` and ``stereotyped_groups`` (rules in :mod:`.parsing`); items with no or two
candidate biased options are excluded and counted per reason. Every problem with a file is a
:class:`~edgeval.errors.DataError` that names the file and line. Download and checksums: :mod:`.download`.
"""
from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ...errors import DataError
from .download import CATEGORIES, EXPECTED_COUNTS, SHA256, UPSTREAM_COMMIT, ensure_bbq, raw_url, unknown_category_error
from .parsing import EXCLUSION_REASONS, RecordError, parse_record, read_lines
from .types import BBQItem, Key

__all__ = ["CATEGORIES", "SHA256", "UPSTREAM_COMMIT", "EXPECTED_COUNTS", "BBQData", "load_bbq", "ensure_bbq",
           "raw_url", "find_metadata", "read_target_locs"]

METADATA_NAME = "additional_metadata.csv"
_TARGET_COLUMNS = ("category", "example_id", "target_loc")
_TARGET_LOC = re.compile(r"([012])(?:\.0*)?")


@dataclass(frozen=True)
class BBQData:
    """What :func:`load_bbq` read: the usable items and an account of everything left out.

    ``excluded`` counts excluded items per reason (``no_biased_answer``, ``two_biased_answers``) and
    ``excluded_keys`` lists them; ``sha256`` maps each file read (name) to the sha256 of its bytes.
    ``target_loc_used`` is the number of items whose biased option came from ``target_loc_file``, and
    ``target_loc_disagreements`` the items where that differs from the option derived from the groups.
    """

    items: tuple[BBQItem, ...]
    categories: tuple[str, ...]
    excluded: dict[str, int]
    excluded_keys: dict[str, tuple[Key, ...]]
    source: Path
    sha256: dict[str, str]
    target_loc_file: Path | None = None
    target_loc_used: int = 0
    target_loc_disagreements: tuple[Key, ...] = field(default=())

    @property
    def pinned(self) -> bool:
        """Whether every file read is byte-identical to the pinned upstream file."""
        return all(SHA256.get(f"data/{name}") == digest for name, digest in self.sha256.items())

    def counts(self) -> dict[str, int]:
        """Usable items per category."""
        return dict(Counter(item.category for item in self.items))

    def excluded_by_category(self) -> dict[str, dict[str, int]]:
        """Excluded items per category and reason (every evaluated category and reason present, zeros included)."""
        out = {cat: dict.fromkeys(EXCLUSION_REASONS, 0) for cat in self.categories}
        for reason, keys in self.excluded_keys.items():
            for cat, _ in keys:
                out[cat][reason] += 1
        return out

    def excluded_summary(self) -> dict[str, Any]:
        """A JSON-ready account of the exclusions, for the report."""
        return {"total": sum(self.excluded.values()), "by_reason": dict(self.excluded),
                "by_category": self.excluded_by_category(),
                "keys": {r: [list(k) for k in keys] for r, keys in self.excluded_keys.items()},
                "target_loc_file": None if self.target_loc_file is None else str(self.target_loc_file),
                "target_loc_used": self.target_loc_used,
                "target_loc_disagreements": len(self.target_loc_disagreements)}


def _resolve_categories(directory: Path, categories: Iterable[str] | None) -> list[str]:
    present = [c for c in CATEGORIES if (directory / f"{c}.jsonl").is_file()]
    if categories is None:
        if not present:
            raise DataError(f"no BBQ category files here (expected names like Age.jsonl; "
                            f"categories: {', '.join(CATEGORIES)})", path=directory)
        return present
    wanted = list(dict.fromkeys([categories] if isinstance(categories, str) else categories))
    if not wanted:
        raise DataError("no BBQ categories requested (categories is empty)")
    for name in wanted:
        if name not in CATEGORIES:
            raise unknown_category_error(name)
        if name not in present:
            raise DataError(f"BBQ category {name!r} was requested but {name}.jsonl is not here (present: "
                            f"{', '.join(present) or 'none'}); fetch it with ensure_bbq() or from "
                            f"{raw_url(name)}", path=directory)
    return [c for c in CATEGORIES if c in wanted]


def find_metadata(directory: Path) -> Path | None:
    """BBQ's ``additional_metadata.csv`` in ``directory`` or in ``directory/../supplemental``, if there."""
    for candidate in (directory / METADATA_NAME, directory.parent / "supplemental" / METADATA_NAME):
        if candidate.is_file():
            return candidate
    return None


def _target_loc(value: str | None, where: str) -> int | None:
    text = (value or "").strip()
    if not text or text.upper() == "NA":
        return None
    match = _TARGET_LOC.fullmatch(text)
    if match is None:
        raise DataError(f"target_loc must be 0, 1, 2 or blank, got {text!r}", path=where)
    return int(match.group(1))


def read_target_locs(path: Path) -> dict[Key, tuple[int | None, int]]:
    """``(category, example_id) -> (target_loc or None when blank, csv line)`` from an additional_metadata.csv."""
    try:
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""))
        missing = [c for c in _TARGET_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"missing column(s): {', '.join(missing)}", path=path)
        out: dict[Key, tuple[int | None, int]] = {}
        for row in reader:
            where = f"{path}:{reader.line_num}"
            try:
                key = (str(row["category"]).strip(), int(str(row["example_id"]).strip()))
            except ValueError:
                raise DataError(f"example_id must be an integer, got {row['example_id']!r}", path=where) from None
            loc = _target_loc(row["target_loc"], where)
            if key in out and out[key][0] != loc:
                raise DataError(f"conflicting target_loc for {key} (also on line {out[key][1]})", path=where)
            out[key] = (loc, reader.line_num)
        return out
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read BBQ metadata: {exc}", path=path) from None


@dataclass
class _Tally:
    items: list[BBQItem] = field(default_factory=list)
    excluded: dict[str, list[Key]] = field(default_factory=lambda: {r: [] for r in EXCLUSION_REASONS})
    used: int = 0
    disagree: list[Key] = field(default_factory=list)


def _load_file(path: Path, category: str, locs: dict[Key, tuple[int | None, int]], tally: _Tally) -> str:
    """Parse one category file into ``tally``; returns the file's sha256."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror}", path=path) from None
    seen: dict[int, int] = {}
    for lineno, rec in read_lines(path, raw):
        eid = rec.get("example_id") if isinstance(rec, dict) else None
        loc = locs.get((category, eid), (None, 0))[0] if type(eid) is int else None
        try:
            item, reason, derived = parse_record(rec, category, loc)
        except RecordError as exc:
            raise DataError(str(exc), path=f"{path}:{lineno}") from None
        if item.example_id in seen:
            raise DataError(f"duplicate example_id {item.example_id} in {category} (first on line "
                            f"{seen[item.example_id]})", path=f"{path}:{lineno}")
        seen[item.example_id] = lineno
        if loc is not None:
            tally.used += 1
            if derived != loc:
                tally.disagree.append(item.key)
        if reason is None:
            tally.items.append(item)
        else:
            tally.excluded[reason].append(item.key)
    return hashlib.sha256(raw).hexdigest()


def load_bbq(data_dir: str | Path, categories: Iterable[str] | None = None) -> BBQData:
    """Read and validate the BBQ jsonl files in ``data_dir``: every category present, or just ``categories``.

    Raises :class:`DataError` for an unknown category name (with a did-you-mean), a requested category
    without a file, and any malformed file: empty, invalid JSON, missing or extra fields, a bad label, a
    category that does not match the file name, no option tagged unknown, a duplicate example_id.
    """
    directory = Path(data_dir).expanduser()
    if not directory.is_dir():
        raise DataError("BBQ data folder does not exist", path=directory)
    cats = _resolve_categories(directory, categories)
    meta = find_metadata(directory)
    locs = read_target_locs(meta) if meta is not None else {}
    tally, digests = _Tally(), {}
    for cat in cats:
        digests[f"{cat}.jsonl"] = _load_file(directory / f"{cat}.jsonl", cat, locs, tally)
    return BBQData(items=tuple(tally.items), categories=tuple(cats),
                   excluded={r: len(k) for r, k in tally.excluded.items()},
                   excluded_keys={r: tuple(k) for r, k in tally.excluded.items()}, source=directory,
                   sha256=digests, target_loc_file=meta, target_loc_used=tally.used,
                   target_loc_disagreements=tuple(tally.disagree))
