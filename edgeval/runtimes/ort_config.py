"""Session config keys that this onnxruntime knows, so that a misspelt ``--session-option`` is refused.

ONNX Runtime accepts any key in ``SessionOptions.add_session_config_entry`` and ignores the ones it does not know:
``session.intra_op.allow_spining=0`` would be measured as if it were set. ORT has no list of its keys at run time,
but every key it reads is a string constant in its own libraries (``onnxruntime_session_options_config_keys.h``
and the execution providers' option names), so a key is known when the installed onnxruntime's libraries hold it
as a C string. Keys under a prefix that ORT itself matches by prefix (``ep.cuda.`` …) are known through that
prefix. This catches misspellings; it is not a full validation of values, which ORT does when it reads them.
"""
from __future__ import annotations

import difflib
import mmap
import re
from pathlib import Path
from typing import Any

from ..errors import UsageError

_LIBRARY_MARKS = (".so", ".pyd", ".dll", ".dylib")
_KEY = re.compile(rb"[a-z][a-z0-9_]*(?:\.[A-Za-z0-9_]+)+\.?(?=\x00)")


def libraries(ort: Any) -> list[Path]:
    """ONNX Runtime's native libraries (its Python binding and execution providers)."""
    folder = Path(ort.__file__).resolve().parent / "capi"
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and any(m in p.name for m in _LIBRARY_MARKS))
    except OSError:
        return []


def _holds(path: Path, needles: list[bytes]) -> set[bytes]:
    """The ``needles`` found in ``path``'s bytes."""
    found: set[bytes] = set()
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            found.update(n for n in needles if data.find(n) >= 0)
    except (OSError, ValueError):  # unreadable, or empty (mmap of 0 bytes)
        pass
    return found


def _prefixes(key: str) -> list[str]:
    """The dotted prefixes of ``key`` of two parts or more, each ending in ``.`` (``ep.cuda.x.y`` → ``ep.cuda.``,
    ``ep.cuda.x.``): ORT matches some keys by such a prefix."""
    parts = key.split(".")
    return [".".join(parts[:n]) + "." for n in range(2, len(parts))]


def unknown_keys(ort: Any, keys: list[str]) -> list[str]:
    """The ``keys`` that none of ``ort``'s libraries holds as a whole C string (NUL on both sides, so that the
    tail of a longer message does not count), itself or through a prefix (:func:`_prefixes`)."""
    wanted = {key: [b"\x00" + form.encode() + b"\x00" for form in [key, *_prefixes(key)]] for key in keys}
    needles = sorted({n for forms in wanted.values() for n in forms})
    seen: set[bytes] = set()
    for path in libraries(ort):
        seen |= _holds(path, [n for n in needles if n not in seen])
    return [key for key, forms in wanted.items() if not seen.intersection(forms)]


def _suggestion(ort: Any, key: str) -> str:
    """``' (did you mean X?)'`` for the closest known key, or ``''``."""
    known: set[str] = set()
    for path in libraries(ort):
        try:
            known.update(m.decode() for m in _KEY.findall(path.read_bytes()))
        except OSError:
            continue
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


_CHECKED: set[tuple[str, str]] = set()  # (onnxruntime version, key) found known in this process


def check_config_keys(ort: Any, keys: list[str]) -> None:
    """UsageError naming the first key the installed onnxruntime does not know (it would ignore it silently), or
    saying that its libraries could not be read to check. About 0.1 s per new key, once per process."""
    keys = [key for key in dict.fromkeys(keys) if (ort.__version__, key) not in _CHECKED]
    if not keys:
        return
    if not libraries(ort):
        raise UsageError(f"--session-option {keys[0]}: cannot check it against this onnxruntime ({ort.__version__}): "
                         "its native libraries were not found")
    missing = unknown_keys(ort, keys)
    if missing:
        key = missing[0]
        raise UsageError(f"--session-option {key}: onnxruntime {ort.__version__} has no such session setting and "
                         f"would ignore it{_suggestion(ort, key)}")
    _CHECKED.update((ort.__version__, key) for key in keys)


__all__ = ["check_config_keys", "libraries", "unknown_keys"]
