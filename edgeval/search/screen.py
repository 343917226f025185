"""The perplexity screen: a cheap, in-memory forecast of where each method's candidates start failing the
perplexity gate, used only to choose the order in which the real gate evaluates them.

Building and gating one candidate costs a prune, an ONNX export, a zlib pass and a BBQ run (about 110 CPU-s on
SmolLM2-135M). The perplexity gate alone, on the *source* model pruned in memory by the same compressor code, costs a
few seconds. So before the sequential design starts, each screened method is bisected on that forecast: the model
is loaded once with the torch runtime, its prunable weights kept aside, and for each probed sparsity the weights are
restored, pruned with the method's own settings, and the policy's perplexity text scored with the perplexity
validator's own function (same text, windows, token limit). The forecast fails where the ratio to the dense model's
perplexity exceeds ``perplexity.max_ratio_to_baseline`` (or the perplexity exceeds ``perplexity.max_perplexity``).

The result per method is a **hint**: the lowest grid index forecast to fail. The design
(:func:`edgeval.search.design.next_index`) gates the point just below the hint first and then the hint itself; an
answer still rests only on gated outcomes (a pass below, a fail above), so a wrong forecast costs evaluations, never
correctness. Each gated point's forecast is kept beside its gated ratio in ``search.json`` (the screen's agreement
with the gate is measured on every run, not assumed).

Screened: a method whose chain is a built-in pruning step (``random``, ``magnitude``, ``wanda``), alone or followed
by a quantizer, on a Hugging Face or GGUF source, under a policy with a perplexity limit. For a chain the forecast
is that of its pruning step alone (shared with the pruner's own axis): a quantizer usually adds loss, so the chain's
boundary usually lies at or below it, and the design's first candidate may fail on the quantizer's share (one
candidate more, never a different answer with monotone outcomes). Anything else is searched by plain bisection, and the
document says why. ``--no-screen`` turns it off. The forecasts are cached in ``screen.json`` (keyed by source
sha256, chain settings, perplexity settings and edgeval version), so a resumed search does not repeat them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import environment
from .._version import __version__
from ..errors import EdgevalError
from .candidate import digest
from .design import FAIL, PASS, bracket, next_index

NAME = "screen.json"
Log = Callable[[str], None]


@dataclass(frozen=True)
class AxisScreen:
    """One method's forecast: the probed points (``{"index", "sparsity", "perplexity", "ratio", "forecast"}``),
    the hint (the lowest index forecast to fail; None: none does) or why the method was not screened."""

    axis: str
    applied: bool
    reason: str | None = None
    points: tuple[dict[str, Any], ...] = ()
    hint: int | None = None
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"axis": self.axis, "applied": self.applied, "reason": self.reason, "points": list(self.points),
                "hint": self.hint, "elapsed_s": round(self.elapsed_s, 3)}


def limits(policy: Any) -> tuple[float | None, float | None]:
    """(max ratio to the baseline, max perplexity) of the policy's perplexity gate (None, None: no such gate)."""
    if "perplexity" not in policy.validators:
        return None, None
    section = policy.section("perplexity")
    from ..validators.perplexity import PerplexitySettings

    defaults = PerplexitySettings()
    ratio = section.get("max_ratio_to_baseline", defaults.max_ratio_to_baseline)
    return ratio, section.get("max_perplexity", defaults.max_perplexity)


def memory_needed(source: Any) -> int:
    """Bytes the screen may hold: the source in float32 twice (the model and its prunable weights kept aside) and
    1 GiB besides; a GGUF file is counted as 2-bit weights (16x to float32), a Hugging Face one as 16-bit (2x):
    on the safe side of what the file holds."""
    return int(source.bytes) * (16 if source.format == "gguf" else 2) * 2 + 2**30


def why_not(axis: Any, source_format: str, policy: Any, disabled: tuple[str, ...] = ()) -> str | None:
    """Why ``axis`` cannot be screened (None: it can)."""
    from ..converters.pruning.compressors import _Pruner
    from ..plugins import registered_compressors

    if len(axis.grid) < 2:
        return "a single point: nothing to order"
    if source_format not in ("hf", "gguf"):
        return f"the source is a {source_format} file, not a model torch can prune in memory"
    if limits(policy) == (None, None):
        return "the policy has no perplexity limit to forecast"
    if axis.chain[0][1] != "prune" or any(kind != "quantize" for _, kind in axis.chain[1:]):
        return "only a pruning step, alone or followed by a quantizer, is screened"
    if not isinstance(registered_compressors(disabled).get(axis.chain[0][0]), _Pruner):
        return f"{axis.chain[0][0]} is not one of edgeval's own pruners"
    return None


def forecast(ratio: float, perplexity: float, policy: Any) -> str:
    """``pass`` or ``fail``: whether the perplexity gate would block a candidate with these figures."""
    max_ratio, max_ppl = limits(policy)
    bad = (not math.isfinite(ratio) or (max_ratio is not None and ratio > max_ratio)
           or (max_ppl is not None and perplexity > max_ppl))
    return FAIL if bad else PASS


class _Model:
    """The source on the torch runtime with its prunable weights kept aside, pruned and restored per probe."""

    def __init__(self, source: Any, threads: int | None):
        import torch

        from ..artifacts import load_artifact
        from ..converters.pruning.discovery import find_layers
        from ..runtimes.torch import TorchRuntime, auto_tokenizer

        self.threads_before = torch.get_num_threads()  # the torch runtime sets the process's threads: restored
        self.runtime = TorchRuntime(load_artifact(source.path), threads=threads)
        self.hf_tokenizer = auto_tokenizer(source.path)
        self.layers = find_layers(self.runtime.model)
        self.saved = [layer.module.weight.detach().clone() for layer in self.layers]

    def restore(self) -> None:
        import torch

        with torch.no_grad():
            for layer, weight in zip(self.layers, self.saved, strict=True):
                layer.module.weight.copy_(weight)

    def prune(self, axis: Any, index: int, fixed: Mapping[str, Any], disabled: tuple[str, ...]) -> None:
        from ..converters.chain import plan
        from ..converters.pruning.api import prune_model
        from .space import _export_probe

        self.restore()
        steps = plan("hf", axis.methods(index, fixed), None, _export_probe(), disabled)
        step = next(s for s in steps if s.kind == "prune")
        prune_model(self.runtime.model, step.method, step.settings.sparsity, tokenizer=self.hf_tokenizer,
                    **step.compressor.options(step.settings))

    def close(self) -> None:
        import torch

        self.runtime.close()
        self.saved = []
        torch.set_num_threads(self.threads_before)


def _key(source: Any, axis: Any, fixed: Mapping[str, Any], policy: Any) -> str:
    """The cache key of an axis's forecast: source, chain settings, perplexity settings and the text's own sha256,
    edgeval, torch and transformers versions and edgeval's code (:func:`~edgeval.environment.build_fingerprint`)."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    from ..validators.perplexity import load_text

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    chain = [axis.methods(i, fixed)[0] for i in range(len(axis.grid))]  # the pruning step: what is forecast
    section = {**_perplexity_defaults(), **policy.section("perplexity")}
    text = hashlib.sha256(load_text(section.get("text"))[0].encode()).hexdigest()
    return digest({"source": source.sha256, "chain": chain, "perplexity": section, "text": text,
                   "limits": list(limits(policy)), "edgeval": __version__,
                   "torch": installed("torch"), "transformers": installed("transformers"),
                   "code": environment.build_fingerprint()})


def _load(path: Path) -> dict[str, Any]:
    """The cached forecasts by key (empty when the file is missing, unreadable or from another edgeval)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    axes = doc.get("axes") if isinstance(doc, dict) and doc.get("edgeval") == __version__ else None
    return dict(axes) if isinstance(axes, dict) else {}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _point_ok(p: Any, axis: Any) -> bool:
    """A cached probe: this axis's index with its sparsity, finite positive figures, a known forecast."""
    return (isinstance(p, dict) and set(p) == {"index", "sparsity", "perplexity", "ratio", "forecast"}
            and isinstance(p["index"], int) and not isinstance(p["index"], bool) and 0 <= p["index"] < len(axis.grid)
            and p["sparsity"] == axis.grid[p["index"]] and _number(p["perplexity"]) and _number(p["ratio"])
            and p["perplexity"] > 0 and p["ratio"] > 0 and p["forecast"] in (PASS, FAIL))


def _cached(entry: Any, axis: Any, policy: Any) -> AxisScreen | None:
    """A cached forecast, if it is well formed for this axis and consistent with itself under the policy's limits
    (anything else is recomputed, never trusted)."""
    try:
        points = tuple(dict(p) for p in entry["points"])
        hint, elapsed = entry["hint"], entry.get("elapsed_s", 0.0)
        ok = points and all(_point_ok(p, axis) and forecast(p["ratio"], p["perplexity"], policy) == p["forecast"]
                            for p in points) and len({p["index"] for p in points}) == len(points) \
            and (hint is None or (isinstance(hint, int) and not isinstance(hint, bool)
                                  and 0 <= hint < len(axis.grid))) and _number(elapsed) and elapsed >= 0
        hi = bracket(len(axis.grid), {p["index"]: p["forecast"] for p in points})[1]
        if not ok or hint != (hi if hi < len(axis.grid) else None):
            return None
        return AxisScreen(axis.name, True, None, points, hint, float(elapsed))
    except (KeyError, TypeError, ValueError):
        return None


def screen(source: Any, space: Any, policy: Any, out_dir: Path, threads: int | None = None,  # noqa: PLR0913
           disabled: tuple[str, ...] = (), say: Log | None = None) -> dict[str, AxisScreen]:
    """Each axis's forecast (see the module docstring); cached in ``out_dir/screen.json``."""
    from ..atomic import atomic_write_text
    from ..validators.perplexity import load_text, perplexity

    say = say or (lambda _m: None)
    out: dict[str, AxisScreen] = {}
    todo = []
    cache_path = out_dir / NAME
    entries = _load(cache_path)
    for axis in space.axes:
        reason = why_not(axis, source.format, policy, disabled)
        if reason is not None:
            out[axis.name] = AxisScreen(axis.name, False, reason)
            continue
        key = _key(source, axis, space.fixed, policy)
        hit = _cached(entries.get(key), axis, policy)
        if hit is not None:
            out[axis.name] = hit
        else:
            todo.append((axis, key))
    if not todo:
        return out
    from .executors import available_memory

    if memory_needed(source) > available_memory():
        why = (f"not enough memory: the screen holds about {memory_needed(source) / 2**30:.1f} GiB, "
               f"{available_memory() / 2**30:.1f} GiB is available")
        say(f"screen skipped ({why}); plain bisection")
        return {**out, **{a.name: AxisScreen(a.name, False, why) for a, _ in todo}}
    section = {**_perplexity_defaults(), **policy.section("perplexity")}
    text, _ = load_text(section.get("text"))
    args = (section["window"], section["stride"], section.get("max_tokens"))
    say(f"screening {', '.join(a.name for a, _ in todo)}: perplexity of the source pruned in memory")
    try:
        model = _Model(source, threads)
    except Exception as error:  # noqa: BLE001 - a screen that cannot start (load error, no memory): unscreened
        exc = _one_line(error)
        say(f"screen skipped ({exc}); plain bisection")
        return {**out, **{a.name: AxisScreen(a.name, False, f"the source cannot be loaded on torch: {exc}")
                          for a, _ in todo}}
    try:
        try:
            dense = perplexity(model.runtime, text, *args)["perplexity"]
        except Exception as error:  # noqa: BLE001 - see _probe
            exc = _one_line(error)
            say(f"screen skipped ({exc}); plain bisection")
            return {**out, **{a.name: AxisScreen(a.name, False, f"the dense perplexity could not be measured: {exc}")
                              for a, _ in todo}}
        for axis, key in todo:
            hit = _cached(entries.get(key), axis, policy)  # an earlier axis of this run with the same pruning step
            out[axis.name] = hit if hit is not None else _probe(
                model, axis, space.fixed, policy, lambda m: perplexity(m, text, *args), dense, disabled, say)
            if out[axis.name].applied:
                entries[key] = out[axis.name].to_json()
                atomic_write_text(cache_path, json.dumps({"edgeval": __version__, "axes": entries}, indent=1) + "\n")
    finally:
        model.close()
    return out


def _probe(model: _Model, axis: Any, fixed: Mapping[str, Any], policy: Any,  # noqa: PLR0913
           score: Callable[[Any], dict[str, Any]], dense: float, disabled: tuple[str, ...], say: Log) -> AxisScreen:
    """Bisect ``axis`` on the forecast: prune in memory, score, forecast; the lowest index forecast to fail."""
    import time

    started = time.perf_counter()
    points: dict[int, dict[str, Any]] = {}
    outcomes: dict[int, str] = {}
    while (index := next_index(len(axis.grid), outcomes)) is not None:
        try:
            model.prune(axis, index, fixed, disabled)
            ppl = score(model.runtime)["perplexity"]
        except Exception as error:  # noqa: BLE001 - a forecast that cannot be made (a non-finite perplexity, out
            exc = _one_line(error)  # of memory, a setting torch refuses): the axis is bisected unscreened
            say(f"{axis.name}: screen stopped ({exc}); plain bisection")
            return AxisScreen(axis.name, False, f"the forecast could not be made: {exc}")
        outcomes[index] = forecast(ppl / dense, ppl, policy)
        points[index] = {"index": index, "sparsity": axis.grid[index], "perplexity": ppl, "ratio": ppl / dense,
                         "forecast": outcomes[index]}
        say(f"{axis.name} @ {100 * axis.grid[index]:g}%: perplexity ratio {ppl / dense:.3f} "
            f"(forecast {outcomes[index]})")
    hi = bracket(len(axis.grid), outcomes)[1]
    return AxisScreen(axis.name, True, None, tuple(points[i] for i in sorted(points)),
                      hi if hi < len(axis.grid) else None, time.perf_counter() - started)


def _one_line(exc: BaseException) -> str:
    """The project's one-line message, with the type for non-edgeval errors (OverflowError: …)."""
    from ..runtimes._util import one_line

    return one_line(exc) if isinstance(exc, EdgevalError) else f"{type(exc).__name__}: {one_line(exc)}"


def _perplexity_defaults() -> dict[str, Any]:
    from ..validators.perplexity import PerplexitySettings

    return PerplexitySettings().to_json()


__all__ = ["AxisScreen", "screen", "why_not", "forecast", "limits", "NAME"]
