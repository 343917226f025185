"""The dense baseline of a search, built and scored once: the source exported with the candidates' exporter
options (cached by source sha256, options and edgeval version), then checked under the search's policy without a
baseline. Its BBQ predictions side file becomes every candidate's saved baseline (``bbq.baseline_predictions``),
so BBQ runs on the dense model once, whatever the number of candidates. Given saved predictions, the dense model
is checked without BBQ. Only the validator that measures the objective and BBQ run on the dense model: the
other checks (perplexity ratio, parity, latency ratio) compare each candidate with it inside its own gate."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import environment
from .._version import __version__
from ..errors import BadInputError, EdgevalError, ExitCode
from .candidate import digest


class BaselineError(EdgevalError):
    """The dense model's own check failed: nothing can be compared with it."""

    def __init__(self, message: str, exit_code: int = int(ExitCode.BAD_INPUT), path: Path | None = None):
        super().__init__(f"{path}: {message}" if path else message)
        self.exit_code = ExitCode(exit_code)


@dataclass(frozen=True)
class Baseline:
    """The dense model, its report and the BBQ predictions every candidate reuses."""

    model: Path
    sha256: str
    report_path: Path
    report: Any
    predictions: Path | None
    predictions_sha256: str | None


def dense_model(source: Any, out_dir: Path, export: dict[str, Any], say: Callable[[str], None]) -> Path:
    """The dense ONNX export (the source itself when it already is an ONNX/TFLite file)."""
    from ..atomic import atomic_dir
    from ..converters.export import export_onnx

    if source.format in ("onnx", "tflite"):
        return Path(source.path)
    folder = out_dir / "baseline" / digest({"source": source.sha256, "export": export, "edgeval": __version__,
                                            "code": environment.build_fingerprint()})[:16]
    if not (folder / "model.onnx").is_file():
        say(f"exporting the dense model to {folder / 'model.onnx'}")
        with atomic_dir(folder) as staging:
            export_onnx(source.path, staging / "model.onnx", legacy=export["legacy"], kv_cache=export["kv_cache"],
                        next_token_output=export["next_token_output"])
    return folder / "model.onnx"


def score_baseline(model: Path, policy: Any, out_dir: Path, saved: Path | None, options: dict[str, Any],  # noqa: PLR0913
                   say: Callable[[str], None], measure: str = "size") -> Baseline:
    """Check the dense model once with the validator that measures the objective (``measure``) and BBQ (unless
    ``saved`` predictions are given); cached: a report of the same model, policy and seed is reused."""
    from ..api import CheckOptions, check, outputs_for, prepare, publish
    from ..artifacts import load_artifact
    from ..policy import Policy

    sha = load_artifact(model).sha256
    validators = [v for v in policy.validators if v == measure or (v == "bbq" and not saved)]
    key = digest({"model": sha, "policy": policy.to_json(), "validators": validators, **options,
                  "code": environment.build_fingerprint()})
    path = out_dir / "baseline" / f"dense-report-{key[:12]}.json"
    report = _cached(path, sha)
    if report is None:
        say(f"checking the dense model once ({', '.join(validators)})")
        prepare(path, None, disabled_plugins=options["disabled"], protect=[model])
        pol = Policy(data={**policy.to_json(), "validators": validators}, source=policy.source,
                     disabled=policy.disabled)
        opts = CheckOptions(validators=validators, seed=options["seed"], threads=options["threads"],
                            disabled_plugins=options["disabled"], outputs=outputs_for(path))
        report = publish(check(model, None, pol, options=opts), path, disabled_plugins=options["disabled"]).report
    if report.verdict == "error":
        problem = ([e.message for e in report.errors] + [c.message for c in report.checks if c.status == "error"])
        raise BaselineError(f"the dense model's check failed: {(problem or ['verdict error'])[0].splitlines()[0]}",
                            report.exit_code, path)
    predictions = saved or _predictions(report, "bbq" in validators, path)
    return Baseline(model, sha, path, report, predictions,
                    hashlib.sha256(predictions.read_bytes()).hexdigest() if predictions else None)


def _cached(path: Path, sha: str) -> Any:
    """The dense report at ``path`` when it is one of this model whose BBQ side file is intact."""
    from ..report import Report

    if not path.is_file():
        return None
    try:
        report = Report.load(path)
    except (EdgevalError, OSError, ValueError):
        return None
    side = ((report.results.get("bbq") or {}).get("candidate_predictions") or {})
    intact = not side or (Path(side["path"]).is_file() and hashlib.sha256(Path(side["path"]).read_bytes())
                          .hexdigest() == side.get("sha256"))
    return report if report.candidate.get("sha256") == sha and intact else None


def _predictions(report: Any, wanted: bool, path: Path) -> Path | None:
    if not wanted:
        return None
    saved = ((report.results.get("bbq") or {}).get("candidate_predictions") or {}).get("path")
    if not saved:
        raise BadInputError("the dense model's BBQ check wrote no predictions, so candidates cannot reuse them",
                            path=path)
    return Path(saved)


__all__ = ["Baseline", "BaselineError", "dense_model", "score_baseline"]
