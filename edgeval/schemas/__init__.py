"""The public contract: JSON Schemas of the report and the policy, versioned with ``schema_version``, and of the
side files edgeval writes (BBQ predictions, ``compression.json`` and the older ``pruning.json``,
``OUT.parity.json``, ``search.json``).

Side files are checked where they are made and where they are read: :func:`side_file_problem` names the first
place a document breaks its schema, :func:`read_side_file` reads and checks one file (a bad one is a one-line
:class:`~edgeval.errors.DataError` naming the file)."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_NAMES = ("report", "policy", "bbq-predictions", "pruning", "parity", "compression", "search")
#: the ``schema`` value each side file carries
SIDE_FILE_IDS = {"pruning": "edgeval.pruning/1", "parity": "edgeval.parity/1", "compression": "edgeval.compression/1",
                 "search": "edgeval.search/1"}
REPORT_SCHEMA_VERSION = "1.2"
POLICY_SCHEMA_VERSION = "1.0"


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """The parsed schema ``name`` (one of :data:`SCHEMA_NAMES`)."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def validator_for(name: str):
    """A cached jsonschema validator for schema ``name`` (with date-time format checking)."""
    import jsonschema

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def side_file_problem(name: str, doc: Any) -> str | None:
    """Where and how ``doc`` first breaks schema ``name`` (``"at layers.x.zeros: -1 is less than ..."``), or None."""
    errors = sorted(validator_for(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    where = ".".join(str(p) for p in errors[0].absolute_path) or "(top level)"
    return f"at {where}: {errors[0].message}"


def check_side_file(name: str, doc: Any, path: str | Path) -> None:
    """Before writing ``doc`` to ``path``: a document that breaks its schema is an edgeval bug (SchemaViolation)."""
    from ..errors import SchemaViolation

    problem = side_file_problem(name, doc)
    if problem is not None:
        raise SchemaViolation(f"{name} file does not match its schema {problem}", path=path)


def read_side_file(name: str, path: str | Path) -> dict:
    """The JSON document in ``path``, checked against schema ``name``; DataError (exit 3) naming the file if it
    cannot be read, is not JSON, or breaks the schema."""
    from ..errors import DataError

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the {name} file: {exc}", path=path) from None
    except ValueError as exc:
        raise DataError(f"not a valid {name} file: not JSON ({exc})", path=path) from None
    problem = side_file_problem(name, doc)
    if problem is not None:
        raise DataError(f"not a valid {name} file ({SIDE_FILE_IDS.get(name, name)}): {problem}", path=path)
    return doc
