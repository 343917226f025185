"""Small helpers shared by the built-in runtime backends."""
from __future__ import annotations


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception message on one line (ORT, LiteRT and transformers write multi-line errors), ≤ ``limit`` chars."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
