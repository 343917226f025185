"""Check ids: the one pattern every check id follows (the report schema's), and :func:`slug` to make id parts.

An id is dotted lower-case words, ``<validator>.<what>`` by convention (``bbq.race_x_ses.delta_srs``). It is
checked when a :class:`~edgeval.report.Check` is built, so a plugin with a bad id fails at once, naming it.
"""
from __future__ import annotations

import re

#: the ``id`` pattern of ``schemas/report.schema.json`` (a test keeps the two equal)
CHECK_ID_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_]+)*$"
_CHECK_ID = re.compile(CHECK_ID_PATTERN)


def slug(text: str) -> str:
    """An id part from any text: lower case, runs of other characters -> "_" ("Race_x_SES" -> "race_x_ses")."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "unnamed"


def is_check_id(value: object) -> bool:
    """Whether ``value`` is a valid check id (dotted parts of lower-case letters, digits and ``_``)."""
    return isinstance(value, str) and _CHECK_ID.fullmatch(value) is not None


def require_check_id(check_id: object, validator: object) -> None:
    """Raise ``ValueError`` naming the id and its validator unless ``check_id`` is valid."""
    if not is_check_id(check_id):
        raise ValueError(f"validator {validator!r} built a check with the invalid id {check_id!r}: an id is dotted "
                         "parts of lower-case letters, digits and '_' (e.g. 'myval.p50_ms'); "
                         "edgeval.plugin.slug() turns any text into a part")


__all__ = ["CHECK_ID_PATTERN", "slug", "is_check_id", "require_check_id"]
