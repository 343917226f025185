"""What machine and software a report was measured on."""
from __future__ import annotations

import functools
import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

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


def source_digest(root: Path) -> str:
    """sha256 over the files under ``root`` (relative paths and bytes, in sorted order): the code and the data it
    ships (schemas, parity prompts, perplexity and calibration texts); compiled caches are left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.suffix not in (".pyc", ".pyo")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def build_fingerprint() -> dict[str, object]:
    """What built and gated a cached result, for cache keys that must not outlive the code: edgeval's version and
    the sha256 of its own source (a development build changes code without a version bump), the versions of
    the packages that export, compress and run models, and every installed edgeval plugin's distribution and
    version. Computed once per process (tens of milliseconds)."""
    from .plugins import ENTRY_POINT_GROUP

    plugins = sorted({f"{ep.name}={ep.dist.name if ep.dist else '?'}=={ep.dist.version if ep.dist else '?'}"
                      for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    return {"source": source_digest(Path(__file__).resolve().parent), "packages": package_versions(),
            "plugins": plugins}
