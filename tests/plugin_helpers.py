"""Installing a plugin package for a test: pip into a private ``--target`` directory that only the subprocesses of
that test put on their path (the shared virtual environment is never changed), and running edgeval there."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgeval.plugins import AUTOLOAD_ENV, plugin_manager


def pip_install_target(src: Path, root: Path) -> Path:
    """Install the package at ``src`` (copied first, so the source stays clean) into ``root/site``; returns it."""
    copy = shutil.copytree(src, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), "--quiet",
           "--disable-pip-version-check", "--no-input"]
    if importlib.util.find_spec("setuptools") is not None:  # build offline with what is installed
        cmd += ["--no-build-isolation", "--no-index"]
    proc = subprocess.run(cmd + [str(copy)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip could not install {src.name}:\n{proc.stdout}\n{proc.stderr}"
    return site


def env_with(site: Path, drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The environment with ``site`` first on PYTHONPATH, plugin autoload on, ``drop`` removed, ``extra`` added."""
    env = {k: v for k, v in os.environ.items() if k not in (AUTOLOAD_ENV, *drop)}
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


@contextlib.contextmanager
def registered_plugin(plugin: object, name: str):
    """``plugin`` registered in the process's plugin manager (autoload on) for the duration of the block."""
    pm = plugin_manager()
    pm.register(plugin, name=name)
    try:
        yield pm
    finally:
        pm.unregister(name=name)
