"""The shared frame of the ONNX Runtime quantizers: refuse an already-quantized input, run ORT's quantizer on a
staged copy, write ``out_dir/<source name>`` (external data in one content-named file when the source had
external data, as :func:`edgeval.converters.export.name_external_data` names it), carry the tokenizer files,
and measure what changed in the graph."""
from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from ...errors import BadInputError, ModelError
from ...runtimes._util import one_line
from ..compressor import StepContext, StepResult, carry_tokenizer
from . import graph as g

#: op types whose counts before and after are reported
_REPORTED_OPS = ("MatMul", "Gemm", "Gather")
#: the loggers ORT's quantization modules write their per-node chatter to
_ORT_LOGGERS = ("onnxruntime.quantization.matmul_nbits_quantizer", "neural_compressor", "root")


class OrtQuantizer:
    """Base of the ONNX Runtime quantizers: an ONNX file in, an ONNX file with quantized weights out.

    A subclass sets ``name``, ``summary``, ``Settings`` and implements :meth:`quantize`."""

    kind = "quantize"
    accepts = ("onnx",)
    produces = "onnx"
    name = ""
    summary = ""
    Settings: type

    def check(self, settings: Any) -> None:
        """Refuse impossible settings (BadInputError, one line) before any model is loaded."""

    def refuse(self, source: Path) -> str | None:
        """Why ``source`` cannot be quantized (it already is), or None."""
        return self.reason(source, g.already_quantized(g.load_graph(Path(source))))

    def reason(self, source: Path, quantized: str | None) -> str | None:
        """The refusal line for ``source`` when it is already quantized (``quantized``: what it holds)."""
        return None if quantized is None else (f"{source}: cannot quantize it with '{self.name}': {quantized}; "
                                               "quantize the float model instead")

    def quantize(self, source: Path, out: Path, settings: Any, before: g.GraphFacts,
                 ctx: StepContext) -> dict[str, Any]:
        """Write the quantized model to ``out`` (weights inline, or external when the source had external
        data), ORT's calls inside :func:`quiet_ort`; return extra measured figures (``warnings``: a list of
        lines, taken out of them)."""
        raise NotImplementedError

    def apply(self, source: Path, out_dir: Path, settings: Any, ctx: StepContext) -> StepResult:
        """Quantize ``source`` into ``out_dir/<source name>`` and measure the result."""
        source, out_dir = Path(source), Path(out_dir)
        self.check(settings)
        before = g.facts(g.load_graph(source))  # the ModelProto goes at once: ORT loads its own copy
        if reason := self.reason(source, before.quantized):
            raise BadInputError(reason)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / source.name
        started = time.perf_counter()
        ctx.progress(f"{self.name}: quantizing {source.name} with onnxruntime.quantization")
        extra = self.quantize(source, out, settings, before, ctx)
        finish_output(out, before.external)
        carry_tokenizer(source, out_dir)
        return self.result(source, out, before, extra, time.perf_counter() - started)

    def result(self, source: Path, out: Path, before: g.GraphFacts, extra: dict[str, Any],
               elapsed: float) -> StepResult:
        """The step's record: ops before/after, where the output's bytes go, what stayed float."""
        import onnx
        import onnxruntime

        after = g.load_graph(out)
        if g.already_quantized(after) is None:  # fail closed: a float copy must not pass as quantized
            ops = ", ".join(f"{n} {op}" for op, n in sorted(before.ops.items()) if op in _REPORTED_OPS)
            raise ModelError(f"{self.name} quantized nothing: no quantized op or integer weight in its output "
                             f"(the input has {ops}); check its op_types", path=source)
        lines = list(extra.pop("warnings", []))
        kept = g.float_weights_kept(after)
        if kept:
            lines.append(float_kept_line(kept))
        measured = {**measure(source, out, before, after), "elapsed_s": round(elapsed, 3), **extra,
                    "float_weights_kept": [{"name": n, "consumers": c, "bytes": b} for n, c, b in kept]}
        return StepResult(out, measured=measured, warnings=lines,
                          tools={"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__})


def measure(source: Path, out: Path, before: g.GraphFacts, after: Any) -> dict[str, Any]:
    """Bytes in and out, op counts before and after (and every op type whose count changed), and the
    output's initializer bytes by role (:func:`.graph.weight_inventory`)."""
    from ..export import artifact_bytes

    ops_after = g.op_counts(after)
    changed = {op: ops_after[op] - before.ops[op] for op in sorted(set(before.ops) | set(ops_after))
               if ops_after[op] != before.ops[op]}
    return {"input_bytes": artifact_bytes(source), "output_bytes": artifact_bytes(out),
            "ops_before": {op: before.ops[op] for op in _REPORTED_OPS},
            "ops_after": {op: ops_after[op] for op in _REPORTED_OPS}, "ops_changed": changed,
            **g.weight_inventory(after), "float_weight_bytes_before": before.inventory["float_weight_bytes"]}


def float_kept_line(kept: list[tuple[str, str, int]]) -> str:
    """One warning line about float weights left unquantized (the largest three named)."""
    total = sum(size for _, _, size in kept)
    named = ", ".join(f"'{name}' ({consumers}, {size / 2**20:.1f} MiB)" for name, consumers, size in kept[:3])
    return (f"{len(kept)} float weight tensor(s) stay unquantized ({total / 2**20:.1f} MiB): "
            f"{named}; ONNX Runtime's quantizers leave weights outside the chosen op types in float (an "
            "embedding read by Gather: int8's op_types [MatMul, Gather] quantizes it)")


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """Silence ONNX Runtime's quantization chatter during the block (one INFO line per node, 'consider
    pre-processing', a progress bar printed to stdout, torch's warnings inside hqq); errors still show."""
    saved = [(logging.getLogger(name), logging.getLogger(name).level) for name in _ORT_LOGGERS]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


@contextlib.contextmanager
def staged(source: Path, out_dir: Path, before: g.GraphFacts) -> Iterator[Path]:
    """``source`` in a scratch folder inside ``out_dir`` with its weights as external data, removed after the
    block. ORT's quantizers write a ``-inferred`` copy beside the model they read (which must not land in the
    source's folder) and run shape inference on it: on a graph whose weights are external that costs no copy
    of the weights. Identity nodes that hide a shared weight from the quantizer are folded on the way. A source
    that already keeps its weights external (and has no such Identity) is linked, not copied."""
    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=out_dir))
    try:
        if before.external and not before.identities:
            for name in {source.name, *before.data_files}:
                (stage / name).symlink_to((source.parent / name).resolve())
        else:
            _write_folded(source, stage / source.name)
        yield stage / source.name
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_folded(source: Path, target: Path) -> None:
    """``source`` with its initializer-renaming Identity nodes folded away, written to ``target`` with every
    tensor of 1 KiB or more in one external file."""
    import onnx

    model = onnx.load(str(source))
    g.fold_initializer_identities(model)
    try:
        onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{target.name}.data", size_threshold=1024)
    except (ValueError, OSError) as exc:
        raise ModelError(f"cannot stage the model for quantization: {one_line(exc)}", path=target) from None


def save_model(model: Any, out: Path, external: bool) -> None:
    """Write a ModelProto to ``out``: inline, or with every tensor in one external file (renamed afterwards)."""
    import onnx

    try:
        onnx.save_model(model, str(out), save_as_external_data=external, all_tensors_to_one_file=True,
                        location=f"{out.name}.data", size_threshold=0)
    except (ValueError, OSError) as exc:
        raise ModelError(f"cannot write the quantized model: {one_line(exc)}", path=out) from None


def finish_output(out: Path, external: bool) -> None:
    """Give an output with external data the export's content-named data file; check it exists."""
    from ..export import name_external_data

    if not out.is_file():
        raise ModelError("ONNX Runtime's quantizer wrote no model", path=out)
    if external or g.has_external_data(g.load_graph(out)):
        name_external_data(out, force=True)


__all__ = ["OrtQuantizer", "measure", "float_kept_line", "quiet_ort", "staged", "save_model", "finish_output"]
