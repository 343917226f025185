"""The search loop: dense baseline once, then per axis the sequential design picks the next candidate, the
executor runs it, the journal keeps its record; finally the front, the recommendation and the outputs.

Axes run concurrently (one candidate in flight per axis: bisection is sequential within an axis); the set of
evaluated points depends only on the outcomes, never on which candidate finished first, so the local and the Ray
executor, and a resumed search, reach the same points and the same front.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import BadInputError, UsageError
from ..runtimes.options import cpus
from .candidate import Job, keys, trusted
from .design import FAIL, STRATEGIES, answer, next_index, replay
from .executors import check_executor
from .journal import NAME, Journal
from .space import OBJECTIVES, Axis, Space, build_space

Log = Callable[[str], None]


@dataclass(frozen=True)
class SearchConfig:
    """Settings of one search (the keyword arguments of :func:`edgeval.search`)."""

    source: Path
    out_dir: Path
    methods: tuple[str, ...] = ("magnitude", "wanda")
    sparsity: tuple[float, float, float] | None = None
    fixed: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objective: str = "zlib"
    policy: Any = None
    strategy: str = "bisect"
    executor: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    baseline_predictions: Path | None = None
    seed: int = 0
    threads: int | None = None
    dynamo: bool = False
    disabled: tuple[str, ...] = ()
    screen: bool = True

    @property
    def export(self) -> dict[str, Any]:
        from ..converters.chain import ExportOptions

        return asdict(ExportOptions(legacy=not self.dynamo, kv_cache=True, next_token_output=True, parity=False))


def search_policy(policy: Any, objective: str, disabled: tuple[str, ...]) -> Any:
    """The policy with the validator that measures ``objective`` added to its list when missing."""
    from ..policy import Policy

    policy = policy if policy is not None else Policy.default(disabled)
    if not isinstance(policy, Policy):
        policy = Policy.load(policy, disabled)
    validator = OBJECTIVES[objective][0]
    if validator in policy.validators:
        return policy
    raw = policy.to_json()
    raw["validators"] = [*raw["validators"], validator]
    return Policy(data=raw, source=policy.source, disabled=policy.disabled)


def plan(cfg: SearchConfig) -> tuple[Any, Space, Any]:
    """(source artifact, space, policy), every setting checked before any work: one-line errors."""
    from ..artifacts import load_artifact

    if cfg.strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {cfg.strategy!r}; known: {', '.join(STRATEGIES)}")
    check_executor(cfg.executor, cfg.ray_address)
    source = load_artifact(cfg.source)
    space = build_space(cfg.methods, cfg.sparsity, cfg.fixed, cfg.objective, source.format, cfg.disabled)
    return source, space, search_policy(cfg.policy, cfg.objective, cfg.disabled)


def execute(cfg: SearchConfig, progress: Log | None = None) -> dict[str, Any]:
    """Run the search; the plain-JSON search document (see :mod:`edgeval.search.outputs`)."""
    from .baseline import dense_model, score_baseline
    from .executors import make_executor

    say = progress or (lambda _m: None)
    started = time.perf_counter()
    source, space, policy = plan(cfg)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    dense = dense_model(source, cfg.out_dir, cfg.export, say)
    executor = make_executor(cfg.executor, source.bytes, cfg.workers, cfg.ray_address)
    threads = cfg.threads or (max(1, cpus() // executor.workers) if executor.workers > 1 else None)
    options = {"seed": cfg.seed, "threads": threads, "disabled": list(cfg.disabled)}
    try:
        base = score_baseline(dense, policy, cfg.out_dir, cfg.baseline_predictions, options, say,
                              OBJECTIVES[space.objective][0])
        _objective_measured(base, space)
        jobs = _jobs(cfg, space, source, base, policy, threads)
        journal = Journal.load(cfg.out_dir / NAME)
        _distrust(journal, jobs, say)
        screens = _screens(cfg, source, space, policy, threads, say)
        hints = _hints(space, jobs, journal, screens, say)
        say(f"searching {space.size} grid points over {len(space.axes)} method(s) ({cfg.strategy}, "
            f"{type(executor).__name__}, {executor.workers} worker(s))")
        loop(space, jobs, journal, executor, cfg.strategy, say, hints)
    finally:
        executor.close()
    from .outputs import document

    return document(cfg, space, source, base, jobs, journal, time.perf_counter() - started, screens, hints)


def _hints(space: Space, jobs: Mapping[str, list[Job]], journal: Journal, screens: Mapping[str, Any],
           say: Log) -> dict[str, int | None]:
    """Each axis's hint: the one its design first ran with (kept in the journal), else the screen's now."""
    from .candidate import digest

    out = {}
    for axis in space.axes:
        now = screens[axis.name].hint if axis.name in screens else None
        key = digest([j.key for j in jobs[axis.name]])
        if key not in journal.orders and any(j.key in journal.records for j in jobs[axis.name]):
            now = None  # points gated before hints were journaled: by plain bisection, the only design then
        kept = journal.order(key, now, len(axis.grid))
        if kept != now:
            say(f"{axis.name}: resuming in the order the search began with (hint {kept}, the screen now says {now})")
        out[axis.name] = kept
    return out


def _screens(cfg: SearchConfig, source: Any, space: Space, policy: Any, threads: int | None,
             say: Log) -> dict[str, Any]:
    """The perplexity screen's forecast per axis (:mod:`edgeval.search.screen`); none for the grid or --no-screen."""
    from .screen import AxisScreen, screen

    if cfg.strategy != "bisect" or not cfg.screen:
        why = "--no-screen" if cfg.strategy == "bisect" else "the grid gates every point"
        return {a.name: AxisScreen(a.name, False, why) for a in space.axes}
    return screen(source, space, policy, cfg.out_dir, threads, cfg.disabled, say)


def _objective_measured(base: Any, space: Space) -> None:
    validator, key, what = OBJECTIVES[space.objective]
    if ((base.report.results.get(validator) or {}).get(key)) is None:
        why = [c.message for c in base.report.checks if c.validator == validator and c.status == "error"]
        raise BadInputError(f"objective '{space.objective}' ({what}) cannot be measured on this runtime: the dense "
                            f"model's check has no {validator}.{key}" + (f" ({why[0].splitlines()[0]})" if why
                                                                          else "") + "; choose another --objective",
                            path=base.report_path)


def _jobs(cfg: SearchConfig, space: Space, source: Any, base: Any, policy: Any,  # noqa: PLR0913
          threads: int | None) -> dict[str, list[Job]]:
    """Every grid point's job, by axis (cheap: no work is done until one is submitted)."""
    gate = {"policy": policy.to_json(), "baseline": base.sha256, "predictions": base.predictions_sha256,
            "seed": cfg.seed}
    objective_keys = {name: (v, k) for name, (v, k, _) in OBJECTIVES.items() if v in policy.validators}
    out: dict[str, list[Job]] = {}
    for axis in space.axes:
        out[axis.name] = []
        for index, sparsity in enumerate(axis.grid):
            methods = axis.methods(index, space.fixed)
            key, artifact_key = keys(source.sha256, methods, cfg.export, gate)
            out[axis.name].append(Job(key, artifact_key, axis.name, index, sparsity, methods, str(source.path),
                                      "onnx" if axis.chain[-1][1] == "prune" else None, cfg.export,
                                      str(base.model), None if base.predictions is None else str(base.predictions),
                                      policy.to_json(), str(cfg.out_dir.resolve()), cfg.seed, threads,
                                      tuple(cfg.disabled), objective_keys))
    return out


def _distrust(journal: Journal, jobs: Mapping[str, list[Job]], say: Log) -> None:
    """Forget the journal's records of this search that their reports do not back (a journal edited by hand, or
    a report replaced): those candidates are gated again, never taken on the journal's word."""
    dropped = [job for axis in jobs.values() for job in axis
               if job.key in journal.records and not trusted(job, journal.records[job.key])]
    for job in dropped:
        say(f"{job.axis} @ {_label(job.sparsity)}: the journal's record does not match its report; gating again")
        del journal.records[job.key]


def loop(space: Space, jobs: Mapping[str, list[Job]], journal: Journal, executor: Any, strategy: str,  # noqa: PLR0913
         say: Log, hints: Mapping[str, int | None] | None = None) -> None:
    """Submit each axis's next point (one in flight per axis) until every design is done; ``hints``: the
    screen's forecast per axis (see :func:`edgeval.search.design.next_index`)."""
    hints = hints or {}
    floor_of = floors(space) if strategy == "bisect" else {}
    by_name = {a.name: a for a in space.axes}
    flying: dict[Any, str] = {}
    while True:
        for axis in space.axes:
            if axis.name in flying.values():
                continue
            if axis.name in floor_of:
                floor = outcomes(by_name[floor_of[axis.name]], jobs, journal).get(0)
                if floor is None or floor == FAIL:  # wait for the quantizer alone; settled when it failed
                    continue
            index = next_index(len(axis.grid), outcomes(axis, jobs, journal), strategy, hints.get(axis.name))
            if index is not None:
                job = jobs[axis.name][index]
                say(f"{axis.name} @ {_label(job.sparsity)}: building and gating")
                flying[executor.submit(job)] = axis.name
        if not flying:
            return
        for handle, record in executor.wait(list(flying)):
            flying.pop(handle)
            journal.add(record)
            say(f"{record['axis']} @ {_label(record['sparsity'])}: {record['verdict']}"
                + (f" ({record['error']})" if record.get("error") else "") + f" in {record['elapsed_s']:.1f} s")


def floors(space: Space) -> dict[str, str]:
    """``{chain axis: single-point axis}`` for each prune+quantize chain whose quantizer alone (with the same
    settings) is also searched: the chain at sparsity 0. Passing being monotone in sparsity (the design's
    assumption), the chain passes nowhere when that point fails: bisection then gates none of the chain's
    candidates (and waits for that point's outcome first, so every executor makes the same decisions). A
    quantizer-alone point that errored settles nothing."""
    out = {}
    for axis in space.axes:
        if not axis.prunes or len(axis.chain) < 2:
            continue
        rest = axis.methods(0, space.fixed)[1:]
        found = next((o.name for o in space.axes if o.grid == (None,) and o.methods(0, space.fixed) == rest), None)
        if found is not None:
            out[axis.name] = found
    return out


def outcomes(axis: Axis, jobs: Mapping[str, list[Job]], journal: Journal) -> dict[int, str]:
    found = {i: journal.outcome(job.key) for i, job in enumerate(jobs[axis.name])}
    return {i: o for i, o in found.items() if o is not None}


def decisions(axis: Axis, jobs: Mapping[str, list[Job]], journal: Journal, strategy: str,
              hint: int | None = None) -> list[dict[str, Any]]:
    """The design's steps for ``axis``, replayed from the journal (the same after a resume)."""
    steps = replay(len(axis.grid), lambda i: journal.outcome(jobs[axis.name][i].key), strategy, hint)
    return [{"axis": axis.name, "step": n, "index": i, "sparsity": axis.grid[i], "key": jobs[axis.name][i].key,
             "outcome": o} for n, (i, o) in enumerate(steps, 1) if o is not None]


def axis_answer(axis: Axis, jobs: Mapping[str, list[Job]], journal: Journal,
                settled_by: str | None = None) -> dict[str, Any]:
    """The axis's answer; ``settled_by``: the quantizer-alone axis whose failure settled a chain (see
    :func:`floors`): no passing sparsity, nothing of the chain gated."""
    result = answer(len(axis.grid), outcomes(axis, jobs, journal))
    lo, hi = result.bracket
    return {"axis": axis.name, "highest_passing_sparsity": axis.grid[lo] if lo >= 0 else None,
            "highest_passing_key": jobs[axis.name][lo].key if lo >= 0 else None,
            "lowest_failing_sparsity": axis.grid[hi] if hi < len(axis.grid) else None,
            "unresolved": result.unresolved, "settled_by": settled_by}


def _label(sparsity: float | None) -> str:
    return "-" if sparsity is None else f"{sparsity:.0%}" if round(sparsity * 100, 6).is_integer() \
        else f"{100 * sparsity:g}%"


__all__ = ["SearchConfig", "plan", "execute", "search_policy", "loop", "outcomes", "decisions", "axis_answer"]
