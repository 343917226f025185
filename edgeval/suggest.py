"""The one "did you mean" of every unknown name a user types (policy keys, validators, BBQ categories, pruning
methods): the closest known name, compared case-insensitively, in one message shape."""
from __future__ import annotations

import difflib
from typing import Iterable

CUTOFF = 0.6


def closest(word: str, known: Iterable[str], cutoff: float = CUTOFF) -> str | None:
    """The known name most like ``word`` (ignoring case; ``difflib`` similarity >= ``cutoff``), or None."""
    folded = {name.casefold(): name for name in known}
    match = difflib.get_close_matches(str(word).casefold(), list(folded), n=1, cutoff=cutoff)
    return folded[match[0]] if match else None


def suggestion(word: str, known: Iterable[str], list_known: bool = False) -> str:
    """The tail of an "unknown name" message: `` (did you mean 'x'?)``, else `` (known: a, b)``; with
    ``list_known`` the known names follow the suggestion too: `` (did you mean 'x'? known: a, b)``."""
    names = list(known)
    close = closest(word, names)
    listed = f"known: {', '.join(names)}"
    if close is None:
        return f" ({listed})"
    return f" (did you mean '{close}'? {listed})" if list_known else f" (did you mean '{close}'?)"
