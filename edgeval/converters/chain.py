"""Chains of compressors: ``wanda 50 % → export to ONNX → int8`` in one call, with one ``compression.json``.

:func:`plan` turns the requested methods into steps and refuses an impossible chain before any work starts:
an unknown method, a pruning step after a quantization (pruning needs the float weights), two quantizations, a
step that cannot take the format the chain has at that point, bad settings. Where a step needs an exported
model (an ONNX quantizer after a pruner, or ``to="onnx"`` at the end), an **export** step is put in between; it
checks exact parity with its source on edgeval's parity prompts, as ``edgeval export`` does, so a quantized
artifact never rests on a broken export.

:func:`compress` runs the steps in a temporary folder beside the output: intermediate artifacts live in a work
folder that is removed at the end, the last step writes straight into a staging folder that is renamed to
``out_dir`` only when every step (and the manifest) succeeded. A failure at any point leaves no partial output.
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import BadInputError, EdgevalError, ModelError, UsageError
from ..settings import parse
from ..suggest import suggestion
from . import manifest as mf
from .compressor import StepContext, StepResult, refusal

EXPORT_TARGETS = ("onnx", "tflite")
_FLOAT_SOURCES = ("hf", "gguf")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExportOptions:
    """How an export step builds its graph (``edgeval export``'s options) and whether it checks parity."""

    legacy: bool = False
    kv_cache: bool = False
    next_token_output: bool = False
    batch: int | None = None  # TFLite export: None is 1
    seq_len: int | None = None  # TFLite export: None is 256
    parity: bool = True

    def for_target(self, target: str) -> dict[str, Any]:
        """The settings that apply to ``target`` (what the manifest records)."""
        if target == "onnx":
            return {"to": "onnx", "legacy": self.legacy, "kv_cache": self.kv_cache,
                    "next_token_output": self.next_token_output, "parity": self.parity}
        return {"to": target, "batch": self.batch or 1, "seq_len": self.seq_len or 256, "parity": self.parity}

    def unused(self, targets: set[str]) -> list[str]:
        """The TFLite bucket options given that no export step to ``targets`` reads (as command-line flags); the
        ONNX flags may go with every chain (they say how an ONNX export, if any, is built)."""
        tflite = [f"--{n.replace('_', '-')}" for n in ("batch", "seq_len") if getattr(self, n) is not None]
        return [] if "tflite" in targets else tflite


@dataclass(frozen=True)
class Step:
    """One planned step: a compressor with its parsed settings, or an export (``compressor`` None)."""

    method: str
    kind: str
    settings: Any
    input_format: str
    output_format: str
    compressor: Any = None

    @property
    def label(self) -> str:
        return f"{self.method} ({self.kind}, {self.input_format} -> {self.output_format})"

    def settings_json(self) -> dict[str, Any]:
        return self.settings.to_json() if hasattr(self.settings, "to_json") else dict(self.settings)


@dataclass(frozen=True)
class CompressResult:
    """Where the compressed model is and what the manifest says."""

    path: Path
    out_dir: Path
    manifest: dict[str, Any] = field(repr=False)


# -- planning ----------------------------------------------------------------------------------------------
def plan(source_format: str, methods: Sequence[tuple[str, dict[str, Any]]], to: str | None = None,
         export: ExportOptions = ExportOptions(), disabled: Iterable[str] = ()) -> list[Step]:
    """The steps that turn a ``source_format`` model into ``to`` through ``methods`` (``[(name, settings)]``);
    :class:`BadInputError` with one line for an impossible chain or a bad setting."""
    from ..plugins import registered_compressors

    if not methods:
        raise UsageError("nothing to do: name at least one compression method (--method)")
    if to is not None and to not in (*EXPORT_TARGETS, "hf"):
        raise UsageError(f"--to must be one of {', '.join((*EXPORT_TARGETS, 'hf'))}, got {to!r}")
    known = registered_compressors(disabled)
    steps: list[Step] = []
    current = source_format
    for name, options in methods:
        comp = _compressor(known, name)
        _check_order(steps, comp)
        if current not in comp.accepts:
            steps.append(_export_step(current, _export_target(comp, current), export))
            current = steps[-1].output_format
        steps.append(Step(name, comp.kind, _settings(comp, options), current, comp.produces, comp))
        current = comp.produces
    if to is not None and to != current:
        steps.append(_final_export(current, to, steps[-1].method, export))
    _check_export_options(steps, export)
    return steps


def _check_export_options(steps: list[Step], export: ExportOptions) -> None:
    """Refuse export options that no export step of the chain would read (they would be dropped silently)."""
    unused = export.unused({s.output_format for s in steps if s.kind == "export"})
    if unused:
        own = [f"--set {s.method}.{k}" for s in steps if s.kind != "export" for k in ("batch", "seq_len")
               if f"--{k.replace('_', '-')}" in unused and k in getattr(s.compressor.Settings,
                                                                           "__dataclass_fields__", {})]
        raise UsageError(f"{', '.join(unused)}: no export step of this chain ({' -> '.join(s.method for s in steps)}) "
                         "reads it" + (f"; use {', '.join(own)}" if own else ""))


def _compressor(known: dict[str, Any], name: str) -> Any:
    if name not in known:
        raise BadInputError(f"unknown compression method '{name}'{suggestion(name, sorted(known), list_known=True)}")
    return known[name]


def _check_order(steps: list[Step], comp: Any) -> None:
    """Prune steps come first; a chain quantizes at most once."""
    done = [s for s in steps if s.kind == "quantize"]
    if done and comp.kind == "prune":
        raise BadInputError(f"impossible chain: {done[0].method} -> {comp.name}: pruning after quantization is not "
                            "possible (pruning needs the float weights); put the pruning step first")
    if done and comp.kind == "quantize":
        raise BadInputError(f"impossible chain: {done[0].method} -> {comp.name}: a model is quantized once; "
                            "choose one quantization method")


def _export_target(comp: Any, current: str) -> str:
    targets = [t for t in EXPORT_TARGETS if t in comp.accepts]
    if current not in _FLOAT_SOURCES or not targets:
        raise BadInputError(f"impossible chain: {comp.name} takes {' or '.join(_a(f) for f in comp.accepts)} "
                            f"model, but the chain has {_a(current)} model at that point")
    return targets[0]


def _final_export(current: str, to: str, last: str, export: ExportOptions) -> Step:
    if current not in _FLOAT_SOURCES or to == "hf":
        raise BadInputError(f"impossible chain: --to {to}, but the chain ends with {_a(current)} model "
                            f"(made by {last})")
    return _export_step(current, to, export)


def _a(fmt: str) -> str:
    """The format with its article: "an onnx", "a tflite"."""
    return f"{'an' if fmt[:1] in 'aeiou' else 'a'} {fmt}"


def _export_step(current: str, target: str, export: ExportOptions) -> Step:
    if target != "onnx" and (export.kv_cache or export.next_token_output or export.legacy):
        raise UsageError("--kv-cache, --next-token-output and --legacy are ONNX export options")
    return Step(f"export-{target}", "export", export.for_target(target), current, target)


def _settings(comp: Any, options: dict[str, Any]) -> Any:
    """The compressor's settings parsed (schema) and, where it can, checked for combinations."""
    settings = parse(comp.Settings, options, comp.name)
    check = getattr(comp, "check", None)
    if callable(check):
        check(settings)
    return settings


# -- running -----------------------------------------------------------------------------------------------
def compress(source: str | Path, out_dir: str | Path, methods: Sequence[tuple[str, dict[str, Any]]], *,  # noqa: PLR0913  (keyword-only options of a public API)
             to: str | None = None, export: ExportOptions = ExportOptions(), overwrite: bool = False,
             progress: Progress | None = None, threads: int | None = None,
             disabled: Iterable[str] = ()) -> CompressResult:
    """Compress ``source`` through ``methods`` (``[(name, settings mapping)]``, in order) into ``out_dir``.

    ``out_dir`` receives the final artifact (a Hugging Face directory's files, or ``model.onnx`` / the
    quantized ONNX file / ``model.tflite``) with its tokenizer files and ``compression.json``. Plugins'
    ``edgeval_after_compress`` hooks run afterwards."""
    from ..artifacts import load_artifact
    from ..atomic import atomic_dir
    from .pruning.io import check_output

    say = progress or (lambda message: None)
    artifact = load_artifact(source)
    steps = plan(artifact.format, methods, to, export, disabled)
    _refuse_input(steps[0], artifact.path)
    _refuse_quantized_gguf(steps, artifact)
    out = _check_apart(check_output(out_dir, overwrite).resolve(), artifact.path)
    started = time.perf_counter()
    try:  # the staging and work folders go beside it
        tempfile.TemporaryDirectory(dir=_mkdirs(out.parent)).cleanup()
    except OSError as exc:
        raise UsageError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    with atomic_dir(out) as staging, tempfile.TemporaryDirectory(prefix=".edgeval-work-", dir=out.parent) as work:
        path, entries = _run_steps(steps, artifact.path, staging, Path(work), StepContext(say, threads))
        doc = _write_manifest(artifact, path, out, entries)
    say(f"compressed in {time.perf_counter() - started:.1f} s -> {out}")
    final = out / path.relative_to(staging) if path != staging else out
    _after(steps, out, doc, disabled)
    return CompressResult(final, out, doc)


def _mkdirs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_apart(out: Path, source: Path) -> Path:
    """Refuse an ``out`` that is the source, holds it (--overwrite would delete it) or lies inside it."""
    source = source.resolve()
    if source == out or source.is_relative_to(out) or out.is_relative_to(source):
        raise UsageError(f"--out {out} would replace or sit inside the source model {source}; choose a folder "
                         "apart from it")
    return out


def _refuse_quantized_gguf(steps: list[Step], artifact: Any) -> None:
    """A GGUF source is dequantized on load: a chain that quantizes it again is refused when it holds quantized
    (not F32/F16/BF16) weights."""
    quantizer = next((s.method for s in steps if s.kind == "quantize"), None)
    if artifact.format != "gguf" or quantizer is None:
        return
    import gguf

    try:
        types = sorted({t.tensor_type.name for t in gguf.GGUFReader(artifact.path).tensors} - {"F32", "F16", "BF16"})
    except Exception as exc:  # noqa: BLE001  (gguf's reader raises anything on a damaged file)
        raise ModelError(f"not a readable GGUF file: {type(exc).__name__}: {exc}", path=artifact.path) from None
    if types:
        raise BadInputError(f"{quantizer} cannot compress this model: it is already quantized "
                            f"({', '.join(types)} tensors); quantize the float model instead", path=artifact.path)


def _refuse_input(step: Step, source: Path) -> None:
    reason = refusal(step.compressor, source) if step.compressor is not None else None
    if reason:
        raise BadInputError(f"{step.method} cannot compress this model: {reason}", path=source)


def _run_steps(steps: list[Step], source: Path, staging: Path, work: Path,
               ctx: StepContext) -> tuple[Path, list[dict[str, Any]]]:
    current, entries = source, []
    for number, step in enumerate(steps, 1):
        target = staging if number == len(steps) else work / f"{number:02d}-{step.method}"
        target.mkdir(parents=True, exist_ok=True)
        ctx.progress(f"[{number}/{len(steps)}] {step.label}")
        if number > 1:
            _refuse_input(step, current)
        started = time.perf_counter()
        result = _apply(step, current, target, ctx)
        entries.append(mf.step_entry(step.method, step.kind, step.settings_json(),
                                     (step.input_format, step.output_format), measured=result.measured,
                                     layers=result.layers, tools=result.tools, warnings=result.warnings,
                                     elapsed_s=time.perf_counter() - started))
        for line in result.warnings:
            ctx.progress(f"WARNING: {line}")
        current = result.path
    return current, entries


def _apply(step: Step, source: Path, out_dir: Path, ctx: StepContext) -> StepResult:
    if step.compressor is not None:
        try:
            result = step.compressor.apply(source, out_dir, step.settings, ctx)
        except Exception as exc:  # noqa: BLE001  (a plugin's bug: one line naming it; edgeval's own stay exit 4)
            if isinstance(exc, EdgevalError) or type(step.compressor).__module__.startswith("edgeval."):
                raise
            raise ModelError(f"compressor '{step.method}' ({type(step.compressor).__module__}) failed: "
                             f"{type(exc).__name__}: {exc}", path=source) from None
        if not isinstance(result, StepResult) or not _written_in(Path(result.path), out_dir):
            raise BadInputError(f"compressor '{step.method}' did not return the artifact it wrote "
                                "(a StepResult whose path exists inside its output folder)")
        return result
    from .export_step import run_export

    return run_export(source, out_dir, step.settings, ctx)


def _written_in(path: Path, out_dir: Path) -> bool:
    """Whether a step's artifact exists inside the folder it was given (never its input or a place elsewhere)."""
    path, out_dir = path.resolve(), out_dir.resolve()
    return path.exists() and (path == out_dir or path.is_relative_to(out_dir))


def _write_manifest(artifact: Any, path: Path, out: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``compression.json`` in the staging folder; the output's path is where it will be after the rename (the
    last step writes its artifact file, or its Hugging Face directory's files, straight into staging)."""
    from ..artifacts import load_artifact
    from ..atomic import atomic_write_text
    from ..schemas import check_side_file

    output = {**load_artifact(path).to_json(), "path": str(out / path.name if path.is_file() else out)}
    doc = mf.build(artifact.to_json(), output, entries)
    where = (path.parent if path.is_file() else path) / mf.MANIFEST_NAME
    check_side_file("compression", doc, where)
    atomic_write_text(where, json.dumps(doc, indent=2) + "\n")
    return doc


def _after(steps: list[Step], out: Path, doc: dict[str, Any], disabled: Iterable[str]) -> None:
    from ..plugins import plugin_manager

    hook = plugin_manager(disabled).hook
    if steps[-1].kind == "prune":
        hook.edgeval_after_prune(model_dir=str(out), manifest=mf.prune_record(doc))
    hook.edgeval_after_compress(out_dir=str(out), manifest=doc)


__all__ = ["ExportOptions", "Step", "CompressResult", "plan", "compress", "EXPORT_TARGETS"]
