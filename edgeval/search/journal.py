"""The search journal: one record per evaluated candidate, keyed by its evaluation key, rewritten atomically
(:func:`edgeval.atomic.atomic_write_text`) after every candidate. A search killed at any point (``kill -9``)
leaves either the previous journal or the new one, never a torn file; the rerun reads it and evaluates only the
points it does not hold. Records of other settings stay in the file (their keys differ) and are ignored.

``orders`` keeps, per axis (keyed by its candidates' keys), the screen's hint the design first ran with, so that a
resumed search replays the same order whatever its own screen says (a screen skipped, recomputed or turned off)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import DataError

FORMAT = "edgeval-search-journal"
VERSION = 1
NAME = "journal.json"


class Journal:
    """``records``: ``{key: record}`` in the order they were added."""

    def __init__(self, path: Path, records: dict[str, dict[str, Any]] | None = None,
                 orders: dict[str, int | None] | None = None):
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = dict(records or {})
        self.orders: dict[str, int | None] = dict(orders or {})

    @classmethod
    def load(cls, path: str | Path) -> "Journal":
        """The journal at ``path`` (empty when there is none); a file that is not one is a DataError."""
        path = Path(path)
        if not path.is_file():
            return cls(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the search journal: {exc} (delete it to start over)", path=path) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION \
                or not isinstance(doc.get("records"), list):
            raise DataError(f"not an edgeval search journal of version {VERSION} (delete it to start over)",
                            path=path)
        orders = doc.get("orders")
        orders = orders if isinstance(orders, dict) else {}
        return cls(path, {r["key"]: r for r in doc["records"] if isinstance(r, dict) and isinstance(r.get("key"), str)},
                   {k: v for k, v in orders.items()
                    if v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)})

    def order(self, axis_key: str, hint: int | None, size: int) -> int | None:
        """The hint of the axis whose candidates' keys digest to ``axis_key``: the one first recorded (when it
        lies on the grid of ``size`` points), else ``hint``, recorded now."""
        recorded = self.orders.get(axis_key, -1)
        if axis_key in self.orders and (recorded is None or recorded < size):
            return recorded
        self.orders[axis_key] = hint
        self.save()
        return hint

    def outcome(self, key: str) -> str | None:
        record = self.records.get(key)
        return None if record is None else str(record["outcome"])

    def add(self, record: dict[str, Any]) -> None:
        """Keep ``record`` and rewrite the file."""
        self.records[record["key"]] = record
        self.save()

    def save(self) -> None:
        doc = {"format": FORMAT, "version": VERSION, "records": list(self.records.values()), "orders": self.orders}
        atomic_write_text(self.path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


__all__ = ["Journal", "NAME"]
