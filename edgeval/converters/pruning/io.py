"""Load a model to prune (Hugging Face directory or ``.gguf``) and write the pruned one atomically.

Loading goes through the exporters' shared loader (:func:`edgeval.converters._torch_model.load_torch_model`:
float32, eager attention, safetensors or GGUF only, no ``trust_remote_code``), so a pruned model is read exactly
the way the exporters and the torch runtime read it. Tokenizer files are copied with the same module's
:func:`write_tokenizer` (byte for byte from an HF directory; converted from a GGUF).

The output is written into a temporary sibling directory and renamed into place, so a crash never leaves a
half-written model at ``out_dir``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...artifacts import detect_format
from ...atomic import atomic_dir, atomic_write_text, umask_mode
from ...errors import ModelError, UsageError
from ...schemas import check_side_file
from .. import manifest as chain_manifest


def load_model(src: str | Path) -> tuple[Any, Any, Path]:
    """``(model, tokenizer, source)`` from an HF directory or ``.gguf``; :class:`ModelError` if unusable.

    ``source`` is the path the tokenizer files are copied from when the pruned model is saved.
    """
    path = Path(src).expanduser()
    fmt = detect_format(path)
    if fmt not in ("hf", "gguf"):
        raise ModelError(f"pruning needs a Hugging Face directory or a .gguf file, not {fmt}", path=path)
    from ...runtimes.torch import auto_tokenizer, dequantized
    from .._torch_model import load_torch_model

    model, source = load_torch_model(path)
    return dequantized(model), auto_tokenizer(path), source or path


def check_output(out_dir: str | Path, overwrite: bool) -> Path:
    """Refuse (:class:`UsageError`) to replace a non-empty ``out_dir`` unless ``overwrite``, and even then unless it
    is a previous edgeval output (it holds ``compression.json``, or an older ``pruning.json``): ``--overwrite``
    never deletes an arbitrary folder."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path exists and is not a directory: {out}")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"output directory {out} exists and is not empty (pass overwrite=True / --overwrite)")
        if not any((out / name).is_file() for name in (chain_manifest.MANIFEST_NAME, chain_manifest.LEGACY_NAME)):
            raise UsageError(f"refusing to replace {out}: it is not an edgeval output (no "
                             f"{chain_manifest.MANIFEST_NAME}); choose an empty or new --out")
    return out


def save_model_dir(model: Any, source: Path, out_dir: Path) -> Path:
    """Write safetensors + config + tokenizer files (copied from ``source``) into ``out_dir``, every file with
    the umask's mode (a compression step's output; the chain makes it atomic)."""
    from .._torch_model import write_tokenizer

    mode = umask_mode()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    write_tokenizer(source, out_dir)
    for file in out_dir.iterdir():
        if file.is_file():
            file.chmod(mode)  # some writers leave 0600 files behind
    return out_dir


def save_pruned(model: Any, source: Path, out_dir: Path, record: dict) -> dict:
    """Write safetensors + config + tokenizer files (copied from ``source``) + ``compression.json`` (one prune
    step made of the pruning ``record``) to a temporary sibling folder, then rename it to ``out_dir`` (a previous
    output there is replaced only then). Returns the manifest."""
    from ...artifacts import load_artifact

    check_side_file("pruning", record, Path(out_dir) / chain_manifest.LEGACY_NAME)  # a bad record is a bug
    with atomic_dir(out_dir) as tmp:
        save_model_dir(model, source, tmp)
        output = {**load_artifact(tmp).to_json(), "path": str(out_dir)}
        doc = chain_manifest.build(record.get("source") or {"path": str(source), "format": "hf"}, output,
                                   [chain_manifest.prune_step(record)])
        check_side_file("compression", doc, Path(out_dir) / chain_manifest.MANIFEST_NAME)
        atomic_write_text(tmp / chain_manifest.MANIFEST_NAME, json.dumps(doc, indent=2) + "\n")
    return doc
