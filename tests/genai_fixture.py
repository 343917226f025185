"""ONNX Runtime GenAI bundles for tests, built offline from a local Hugging Face directory by onnxruntime-genai's
model builder (GroupQueryAttention; MatMulNBits at int4), and broken variants of them.

``build_bundle(hf_dir, out_dir, precision)`` calls the builder in this process (0.2-0.3 s a bundle once torch is
loaded, plus 1-2 s to import the builder once); ``python -m onnxruntime_genai.models.builder -i HF_DIR -o OUT -p fp32
-e cpu`` does the same from a shell. Nothing is downloaded: ``-i`` is a local directory.
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path


def build_bundle(hf_dir: Path, out_dir: Path, precision: str = "fp32") -> Path:
    """A GenAI bundle of the model in ``hf_dir`` at ``precision`` (fp32, int4 …) for the CPU, in ``out_dir``."""
    from onnxruntime_genai.models import builder

    cache = out_dir.parent / f"{out_dir.name}-cache"
    args = (None, str(hf_dir), str(out_dir), precision, "cpu", str(cache))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        builder.create_model(*args, **builder.parse_extra_options(*args, []))
    shutil.rmtree(cache, ignore_errors=True)
    return out_dir


def copy_bundle(bundle: Path, out_dir: Path, **config_changes) -> Path:
    """A copy of ``bundle`` whose genai_config.json ``model.decoder`` gets ``config_changes``."""
    shutil.copytree(bundle, out_dir)
    path = out_dir / "genai_config.json"
    config = json.loads(path.read_text())
    config["model"]["decoder"].update(config_changes)
    path.write_text(json.dumps(config, indent=2))
    return out_dir
