"""Atomic outputs: every file or folder edgeval writes appears complete or not at all, with normal permissions.

A file goes to a temporary sibling (``.NAME.XXXX.tmp``), is flushed and fsynced, gets the mode a plain ``open``
would give it under the current umask (``mkstemp`` creates 0600, which must not survive the rename), and is
renamed over the target. A folder is built in a temporary sibling (:func:`atomic_dir`) and renamed into place
only when the block that fills it finishes; an existing target is moved aside first and deleted afterwards.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def umask_mode(directory: bool = False) -> int:
    """The mode ``open()`` / ``mkdir()`` would give a new file (0o666) or folder (0o777) under the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def temp_sibling(path: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh, empty temporary folder beside ``path`` (same filesystem, so a rename is atomic), umask mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent))
    tmp.chmod(umask_mode(directory=True))
    return tmp


def replace_path(new: Path, target: Path) -> None:
    """Move ``new`` (file or folder) to ``target``; an existing ``target`` is moved aside, then deleted."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        _remove(old)
        target.rename(old)
    new.rename(target)
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``target``; rename it to ``target`` when the block ends normally,
    delete it when the block raises (``target`` is then left as it was)."""
    target = Path(target)
    tmp = temp_sibling(target)
    try:
        yield tmp
        replace_path(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_dir", "temp_sibling", "replace_path", "umask_mode"]
