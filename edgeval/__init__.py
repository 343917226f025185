"""edgeval: a deployment gate for compressed LLMs headed to ONNX Runtime and TFLite.

    >>> import edgeval
    >>> report = edgeval.check("pruned.onnx", baseline="dense.onnx")
    >>> report.raise_for_verdict()      # DeploymentBlocked carries the report

Heavy frameworks (torch, TensorFlow, ONNX Runtime) are imported only by the modules that need them.
"""
from ._version import __version__
from .api import CheckOptions, check
from .errors import (
    BadInputError,
    DataError,
    DeploymentBlocked,
    EdgevalError,
    ExitCode,
    MeasurementError,
    MissingExtraError,
    ModelError,
    PolicyError,
    TokenizerError,
    UsageError,
)
from .policy import Policy
from .report import Check, Report, Verdict
from .search import SearchResult, search  # noqa: E402  (the function shadows the subpackage's name on purpose)

__all__ = ["__version__", "check", "CheckOptions", "Policy", "Report", "Check", "Verdict", "ExitCode",
           "EdgevalError", "BadInputError", "ModelError", "TokenizerError", "PolicyError", "DataError",
           "MeasurementError", "MissingExtraError", "UsageError", "DeploymentBlocked",
           "search", "SearchResult"]
