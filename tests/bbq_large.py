"""A large BBQ-format data folder made from the invented fixture (tests/fixtures/bbq): each usable context group
is repeated with a numbered sentence appended to its context, so that every copy is a distinct group.

``write_large_bbq(directory, groups_per_category=100)`` writes Age, Race_x_gender and Religion files with
``groups_per_category`` groups (4 items) each: 1,200 usable items by default. Invented text, not BBQ's.
"""
from __future__ import annotations

import json
from pathlib import Path

SOURCE = Path(__file__).parent / "fixtures" / "bbq"
CATEGORIES = ("Age", "Race_x_gender", "Religion")
_EXCLUDED = {"Religion": range(16, 24)}  # the fixture's deliberately unusable groups


def _groups(category: str) -> list[list[dict]]:
    lines = (SOURCE / f"{category}.invented.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    records = [r for r in records if r["example_id"] not in _EXCLUDED.get(category, ())]
    by_group: dict[int, list[dict]] = {}
    for rec in records:
        by_group.setdefault(rec["example_id"] // 4, []).append(rec)
    return [sorted(g, key=lambda r: r["example_id"]) for _, g in sorted(by_group.items())]


def _copy(group: list[dict], copy: int, first_id: int) -> list[dict]:
    stem = next(r["context"] for r in group if r["context_condition"] == "ambig")
    new_stem = f"{stem} This was case number {copy}."
    out = []
    for j, rec in enumerate(group):
        rec = dict(rec, example_id=first_id + j)
        rec["context"] = new_stem + rec["context"][len(stem):]
        out.append(rec)
    return out


def write_large_bbq(directory: Path, groups_per_category: int = 100) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for category in CATEGORIES:
        templates = _groups(category)
        rows = [rec for i in range(groups_per_category)
                for rec in _copy(templates[i % len(templates)], i, 4 * i)]
        (directory / f"{category}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return directory
