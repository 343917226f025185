"""Where BBQ comes from: the pinned upstream commit, its checksums, and a verified download into a user cache.

:func:`ensure_bbq` resolves a data directory in this order: an explicit ``data_dir`` (or ``$EDGEVAL_BBQ_DIR``),
used as is and never written to; then the cache ``<cache>/bbq/<commit>/data`` (``<cache>`` is ``cache_dir``,
``$EDGEVAL_CACHE_DIR`` or the platform's user cache directory + ``/edgeval``); files missing there are
downloaded from ``base_url``, streamed to a temporary file next to their destination, checked against
:data:`SHA256` and only then renamed into place, so the cache never holds a partial or unverified file.
The cache mirrors upstream's layout (``data/*.jsonl``, ``supplemental/additional_metadata.csv``) so that
:func:`~edgeval.validators.bbq.data.load_bbq` finds the ``target_loc`` metadata next to the data.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ...cache import ENV_CACHE_DIR, user_cache_dir  # noqa: F401  (re-exported)
from ...errors import DataError
from ...fetch import TIMEOUT_S, Progress, cached_ok, fetch_url, sha256_file, stderr_progress  # noqa: F401
from ...suggest import suggestion

UPSTREAM_REPO = "nyu-mll/BBQ"
UPSTREAM_COMMIT = "bea11bd97d79217245b5871acd247b9d6eb24598"
BASE_URL = f"https://raw.githubusercontent.com/{UPSTREAM_REPO}/{UPSTREAM_COMMIT}"
CATEGORIES: tuple[str, ...] = (
    "Age", "Disability_status", "Gender_identity", "Nationality", "Physical_appearance", "Race_ethnicity",
    "Race_x_SES", "Race_x_gender", "Religion", "SES", "Sexual_orientation")
METADATA_FILE = "supplemental/additional_metadata.csv"
#: sha256 of every upstream file at :data:`UPSTREAM_COMMIT`, keyed on its path in the upstream repository.
SHA256: dict[str, str] = {
    "data/Age.jsonl": "46e805b3fc2d8cbd26eeb8e8430d98cf7b2dc9c83574ff3674e8ce4f0fca2a60",
    "data/Disability_status.jsonl": "375d40d9b71f056150264445ec189b13934998f3f49a1e311aa7578eb3b45e5f",
    "data/Gender_identity.jsonl": "8b5adbb368510a97d5775dc43e1c719e0249fe2da33f13c83e3e29edafec7a00",
    "data/Nationality.jsonl": "a583e74666aec0341ded8aa3983e7cad694eb24de72c254d28b2df3035720090",
    "data/Physical_appearance.jsonl": "e48d7e13508565f4801574e611043470c25c95a0a62af3699cb5ee7cb02608fb",
    "data/Race_ethnicity.jsonl": "4a9f1214cfaa115ce7f0bdb40609122e431f5152c71b8ca64d665e483b946ae6",
    "data/Race_x_SES.jsonl": "af8e2ae3d0e5be9ebcbfe7149e591d47ff649e263307f4548f7fb12f6a6d83e8",
    "data/Race_x_gender.jsonl": "e5dbba782f8c4e25b99dd5470b5136e2db73dbf401cf6d4a5a3ed31b02f95696",
    "data/Religion.jsonl": "cb9555f9f3454a52cd2df85956b59bd7fcca5aa922c8527693b1164d08417616",
    "data/SES.jsonl": "9f92754bb037b0982604b9112705fb81d60a19d9e759c67e4a85e484a070f528",
    "data/Sexual_orientation.jsonl": "2c71036b9e7584fe589c42aef32c1a42bc01b9a5e9b1b8704342630cdb08cefd",
    METADATA_FILE: "f36708416b0e7adb81b47ad1926f9c39c2beb611702b73b01e06c9b6c9ffbd3d",
}
#: Number of examples per upstream file (Parrish et al. 2022; 58,492 in all).
EXPECTED_COUNTS: dict[str, int] = {
    "Age": 3680, "Disability_status": 1556, "Gender_identity": 5672, "Nationality": 3080,
    "Physical_appearance": 1576, "Race_ethnicity": 6880, "Race_x_SES": 11160, "Race_x_gender": 15960,
    "Religion": 1200, "SES": 6864, "Sexual_orientation": 864}
ENV_DATA_DIR = "EDGEVAL_BBQ_DIR"


def raw_url(name: str, base_url: str = BASE_URL) -> str:
    """The download URL of category ``name``'s jsonl file at the pinned commit."""
    return f"{base_url.rstrip('/')}/data/{name}.jsonl"


def unknown_category_error(name: str) -> DataError:
    """A :class:`DataError` for a category name BBQ does not have, with a did-you-mean suggestion."""
    return DataError(f"unknown BBQ category {name!r}{suggestion(name, CATEGORIES, list_known=True)}")


def bbq_cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder holding this commit's cached files (``data/`` and ``supplemental/`` inside it)."""
    return (Path(cache_dir).expanduser() if cache_dir else user_cache_dir()) / "bbq" / UPSTREAM_COMMIT


def _wanted(categories: Iterable[str] | None, metadata: bool) -> list[str]:
    names = list(CATEGORIES if categories is None else [categories] if isinstance(categories, str) else categories)
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise unknown_category_error(unknown[0])
    return [f"data/{n}.jsonl" for n in names] + ([METADATA_FILE] if metadata else [])


def ensure_bbq(data_dir: str | Path | None = None, categories: Iterable[str] | None = None,
               cache_dir: str | Path | None = None, base_url: str = BASE_URL, *, metadata: bool = True,
               timeout: float = TIMEOUT_S, progress: Progress | None = None) -> Path:
    """Return a folder holding the BBQ jsonl files for ``categories`` (all 11 when None), downloading if needed.

    An explicit ``data_dir`` (or ``$EDGEVAL_BBQ_DIR``) wins and is returned untouched (missing categories are
    reported later by :func:`load_bbq`). Otherwise the pinned files are taken from, or downloaded into, the
    cache (see the module docstring); ``metadata`` also fetches ``supplemental/additional_metadata.csv``.
    One progress line per downloaded file goes to ``progress`` (default: stderr). Raises :class:`DataError`
    when ``data_dir`` is not a folder, on an HTTP error (naming the URL) and on a sha256 mismatch (nothing is
    left in the cache).
    """
    explicit = data_dir if data_dir is not None else os.environ.get(ENV_DATA_DIR) or None
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise DataError("BBQ data folder does not exist", path=path)
        return path
    root, say = bbq_cache_root(cache_dir), progress or stderr_progress
    for rel in _wanted(categories, metadata):
        dest = root / rel
        if not cached_ok(dest, SHA256[rel], say):
            url = f"{base_url.rstrip('/')}/{rel}"
            say(f"downloading BBQ {rel} from {url}")
            fetch_url(url, dest, SHA256[rel], what=f"BBQ {rel}", timeout=timeout, progress=say,
                      local_hint=f"pass data_dir or set {ENV_DATA_DIR} to use a local copy")
    return root / "data"
