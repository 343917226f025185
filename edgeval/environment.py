"""What machine and software a report was measured on."""
from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("edgeval", "numpy", "onnx", "onnxruntime", "tokenizers", "ai-edge-litert", "torch", "transformers",
            "litert-torch", "tensorflow", "tf-keras", "tensorflow-model-optimization")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(threads: int | None = None) -> dict:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": affinity,
        "threads": threads,
        "packages": package_versions(),
    }
