"""The hand-written BBQ-format fixture (invented items, see fixtures/bbq/README.md) as a data directory.

The files are stored as ``<Category>.invented.jsonl`` so that nobody mistakes them for the benchmark's own data;
:data:`FIXTURE_DIR` is a temporary copy under the names the loader expects (``<Category>.jsonl``).
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

SOURCE = Path(__file__).parent / "fixtures" / "bbq"


def materialise() -> Path:
    target = Path(tempfile.mkdtemp(prefix="edgeval-bbq-fixture-"))
    atexit.register(shutil.rmtree, target, True)
    for path in SOURCE.glob("*.invented.jsonl"):
        shutil.copyfile(path, target / path.name.replace(".invented.jsonl", ".jsonl"))
    return target


FIXTURE_DIR = materialise()
