"""Typed runtime options: which runtime, how many threads, which execution provider or device, which dtype.

One :class:`RuntimeOptions` travels from the CLI (``--runtime``, ``--threads``, ``--provider``, ``--device``,
``--dtype``, ``--session-option``) or the API through :class:`~edgeval.validators.base.RunContext` to every runtime
a run opens, the latency validator's dedicated ones included. A runtime reads the fields that apply to it and
refuses the ones it cannot honour (a provider on a runtime without providers, a device it cannot use) with one
line and exit 3: a gate asked to measure on CUDA must not quietly measure on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from ..errors import UsageError

#: dtypes a runtime may be asked to compute in (torch: the weights' dtype; others refuse anything but float32)
DTYPES = ("float32", "float16", "bfloat16")


def cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def max_threads() -> int:
    """The most intra-op threads a runtime is given: 4 per CPU, at least 64 (llama.cpp's OpenMP aborted at 40,000
    and crashed at 100,000; ONNX Runtime stalled)."""
    return max(64, 4 * cpus())


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model. ``None`` everywhere means the runtime's defaults (edgeval's choice of runtime for the
    format, the runtime's thread count, the CPU, float32)."""

    #: runtime name (``onnxruntime``, ``torch``, ``llama.cpp`` …); None: plugins first, then the built-in default
    runtime: str | None = None
    threads: int | None = None
    #: ONNX Runtime execution provider, e.g. ``CUDAExecutionProvider``; None: ``CPUExecutionProvider``
    provider: str | None = None
    #: torch device, e.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``; None: ``cpu``
    device: str | None = None
    #: compute dtype, one of :data:`DTYPES`; None: float32
    dtype: str | None = None
    #: extra session settings, passed to the runtime as strings (ONNX Runtime: session config entries)
    session: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                                         or self.threads < 1):
            raise UsageError(f"threads must be a positive integer, not {self.threads!r}")
        if self.threads is not None and self.threads > max_threads():
            raise UsageError(f"threads {self.threads} is more than 4 per CPU of this machine ({cpus()} CPUs, at most "
                             f"{max_threads()}): runtimes crash or stall on tens of thousands of threads")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}: expected one of {', '.join(DTYPES)}")
        for name in ("runtime", "provider", "device"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise UsageError(f"{name} must be a non-empty name, not {value!r}")
        object.__setattr__(self, "session", dict(self.session))

    def with_(self, **changes: Any) -> "RuntimeOptions":
        """A copy with some fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_policy(cls, section: Mapping[str, Any] | None, **overrides: Any) -> "RuntimeOptions":
        """Options from the policy's ``runtime:`` section, with ``overrides`` (the command line) winning."""
        data = dict(section or {})
        name = data.pop("name", None)
        base = cls(runtime=name, **{k: v for k, v in data.items() if k in _FIELDS})
        return base.with_(**overrides)


_FIELDS = ("threads", "provider", "device", "dtype", "session")


def unsupported(options: RuntimeOptions, runtime: Any) -> list[str]:
    """The options ``runtime`` (a runtime class or object: its ``has_providers``, ``has_devices``, ``dtypes``)
    cannot honour, as command-line flags."""
    found = []
    if options.provider is not None and not getattr(runtime, "has_providers", False):
        found.append(f"--provider {options.provider}")
    if options.device not in (None, "cpu") and not getattr(runtime, "has_devices", False):
        found.append(f"--device {options.device}")
    if options.dtype is not None and options.dtype not in getattr(runtime, "dtypes", ("float32",)):
        found.append(f"--dtype {options.dtype}")
    return found


def refuse_unsupported(options: RuntimeOptions, runtime: Any) -> None:
    """UsageError (exit 2) naming the options ``runtime`` cannot honour (see :func:`unsupported`): providers are
    ONNX Runtime's, devices and dtypes torch's; a gate asked for them must not measure something else."""
    found = unsupported(options, runtime)
    if found:
        raise UsageError(f"runtime '{getattr(runtime, 'name', runtime)}' cannot honour {', '.join(found)} "
                         f"(it runs on the CPU in {', '.join(getattr(runtime, 'dtypes', ('float32',)))})")


def for_reference(options: RuntimeOptions, runtime: Any) -> RuntimeOptions:
    """The options a baseline's runtime is opened with: the run's, less those it cannot honour (the candidate is
    what is measured as asked; the baseline is a reference, measured as well as its runtime can)."""
    return replace(options, provider=options.provider if getattr(runtime, "has_providers", False) else None,
                   device=options.device if getattr(runtime, "has_devices", False) else None,
                   dtype=options.dtype if options.dtype in getattr(runtime, "dtypes", ("float32",)) else None)
