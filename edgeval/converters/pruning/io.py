"""Load a model to prune (Hugging Face directory or ``.gguf``) and write the pruned one atomically.

Stop-gap loader: ``edgeval/converters/_torch_model.py`` (``load_torch_model``) is meant to become the shared one;
until it exists this module loads models itself, without ``trust_remote_code`` and without pickle (safetensors or
GGUF only: ``use_safetensors=True``).

The output is written into a temporary sibling directory and renamed into place, so a crash never leaves a
half-written model at ``out_dir``.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...artifacts import detect_format
from ...errors import ModelError, TokenizerError, UsageError, require
from .manifest import MANIFEST_NAME


def load_model(src: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in float32 from an HF directory or a ``.gguf`` file; :class:`ModelError` if unusable."""
    path = Path(src).expanduser()
    fmt = detect_format(path)
    if fmt not in ("hf", "gguf"):
        raise ModelError(f"pruning needs a Hugging Face directory or a .gguf file, not {fmt}", path=path)
    transformers = require("transformers", "torch", "Pruning")
    torch = require("torch", "torch", "Pruning")
    where, extra = (path, {"use_safetensors": True}) if fmt == "hf" else (path.parent, {"gguf_file": path.name})
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **extra)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load as a causal LM: {_first_line(exc)}", path=path) from None
    return _dequantized(model).eval(), _tokenizer(transformers, where, extra, path)


def _tokenizer(transformers: Any, where: Path, extra: dict, path: Path) -> Any:
    extra = {k: v for k, v in extra.items() if k == "gguf_file"}
    try:
        return transformers.AutoTokenizer.from_pretrained(where, **extra)
    except (OSError, ValueError, KeyError) as exc:
        raise TokenizerError(f"cannot load the tokenizer: {_first_line(exc)}", path=path) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _dequantized(model: Any) -> Any:
    """A GGUF-loaded model holds dequantized float weights but refuses ``save_pretrained``: drop the marker."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def check_output(out_dir: str | Path, overwrite: bool) -> Path:
    """Refuse (:class:`UsageError`) to replace a non-empty ``out_dir`` unless ``overwrite``."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path exists and is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"output directory {out} exists and is not empty (pass overwrite=True / --force)")
    return out


def save_pruned(model: Any, tokenizer: Any, out_dir: Path, manifest: dict) -> Path:
    """Write safetensors + config + tokenizer + ``pruning.json`` to a temp dir, then rename it to ``out_dir``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; the renamed directory should look like any other
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        _replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _replace(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing ``target`` is moved aside first and deleted afterwards."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        old.rmdir()
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
