"""The public plugin surface: everything a third-party validator, runtime or sink may import.

Write plugins against this module only; names not exported here are internal and may change without notice.
The tutorial is ``docs/plugins.md``.
"""
from __future__ import annotations

from .atomic import atomic_write_bytes, atomic_write_text
from .cache import user_cache_dir
from .decision import ON_INCONCLUSIVE, Decision, PairedUnits, Plan, ScopeTest, decide
from .errors import BadInputError, DataError, EdgevalError, MeasurementError, ModelError, PolicyError
from .fetch import extract_members, fetch_url, pip_wheel, sha256_file
from .looks import run_looks
from .plugins import hookimpl
from .report import Check, error_check, threshold_check
from .settings import Settings
from .stats import PairedDifference, paired_rate_difference, sequential_bounds
from .validators.base import Outcome, RunContext, Validator
from .validators.bbq.gate import slug

__all__ = [
    "hookimpl", "Check", "Outcome", "RunContext", "Validator", "Settings", "threshold_check", "error_check", "slug",
    "EdgevalError", "BadInputError", "DataError", "MeasurementError", "ModelError", "PolicyError",
    "PairedDifference", "paired_rate_difference", "sequential_bounds",
    "Plan", "PairedUnits", "ScopeTest", "Decision", "decide", "ON_INCONCLUSIVE", "run_looks",
    "fetch_url", "pip_wheel", "extract_members", "sha256_file", "user_cache_dir",
    "atomic_write_bytes", "atomic_write_text",
]
