"""edgeval's cache directory: ``$EDGEVAL_CACHE_DIR``, else the platform's user cache directory + ``edgeval``.

Downloads (BBQ files, the demo model) are cached here after their checksum is verified. Never inside the
repository's ``shared/`` data, which is read-only in CI.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_CACHE_DIR = "EDGEVAL_CACHE_DIR"


def user_cache_dir() -> Path:
    """The folder for downloaded data (not created here): ``$EDGEVAL_CACHE_DIR``, else the user cache dir."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgeval"
