"""Where candidates run: in this process, in a local process pool, or as Ray tasks.

Every executor has the same two calls: ``submit(job)`` returns a handle, ``wait(handles)`` blocks until at least
one is done and returns ``[(handle, record)]``. A task that raised (after Ray's retries) comes back as a
``failed`` record with its error: never dropped, never a pass. The search loop (:mod:`edgeval.search.runner`)
decides *what* runs next; placement, queueing and retries are the pool's or Ray's.

Sizing the local pool: one worker per core, capped so that the workers fit in the memory available now, each
taking :data:`PEAK_FACTOR` times the source model's bytes plus :data:`PEAK_OVERHEAD` (torch, ONNX Runtime and
the export's copies of the weights); never fewer than one. With one worker the candidates run in this process.
"""
from __future__ import annotations

import os
import time
from typing import Any, Sequence

from ..errors import UsageError, require
from .candidate import Job, failed_record, run_candidate

#: a candidate's peak memory: the model loaded in float32, its pruned copy, the export and an ORT session
PEAK_FACTOR = 4.0
PEAK_OVERHEAD = 1 << 30
EXECUTORS = ("local", "ray")


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo; else physical pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def peak_bytes(model_bytes: int) -> int:
    """Estimated peak memory of one candidate built from a ``model_bytes`` model."""
    return int(PEAK_FACTOR * model_bytes) + PEAK_OVERHEAD


def local_workers(model_bytes: int, requested: int | None = None, cores: int | None = None,
                  memory: int | None = None) -> int:
    """Workers for the local pool: ``requested`` (default: the cores), capped by cores and by memory."""
    cores = cores or os.cpu_count() or 1
    fit = (available_memory() if memory is None else memory) // peak_bytes(model_bytes)
    return max(1, min(requested or cores, cores, int(fit)))


class InlineExecutor:
    """Runs each candidate in this process, at submit time."""

    workers = 1

    def __init__(self) -> None:
        self._done: dict[int, dict[str, Any]] = {}

    def submit(self, job: Job) -> int:
        started = time.perf_counter()
        try:
            self._done[id(job)] = run_candidate(job)
        except Exception as exc:  # noqa: BLE001  (a bug in one candidate is that candidate's failure)
            self._done[id(job)] = failed_record(job, f"{type(exc).__name__}: {exc}", started)
        return id(job)

    def wait(self, handles: Sequence[int]) -> list[tuple[int, dict[str, Any]]]:
        return [(h, self._done.pop(h)) for h in handles if h in self._done]

    def close(self) -> None:
        self._done.clear()


class PoolExecutor:
    """A ``concurrent.futures`` process pool (spawned workers: no forked torch state)."""

    def __init__(self, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self._jobs: dict[Any, tuple[Job, float]] = {}

    def submit(self, job: Job) -> Any:
        future = self._pool.submit(run_candidate, job)
        self._jobs[future] = (job, time.perf_counter())
        return future

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, dict[str, Any]]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        return [(f, self._result(f)) for f in done]

    def _result(self, future: Any) -> dict[str, Any]:
        job, started = self._jobs.pop(future)
        exc = future.exception()
        return future.result() if exc is None else failed_record(job, f"{type(exc).__name__}: {exc}", started)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Candidates as Ray tasks with CPU and memory requests; a task that raises or whose worker dies is retried
    ``max_retries`` times by Ray, then recorded as failed. Connects to ``address`` (``auto``, ``ray://host:10001``)
    or to the instance this process already started; else starts a local one (and shuts it down on close)."""

    def __init__(self, model_bytes: int, address: str | None = None, cpus: int = 1, max_retries: int = 2):
        require("ray", "ray", "edgeval search --executor ray")
        import ray

        self._ray, self._owned = ray, False
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:  # a bad or unreachable --ray-address
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UsageError(f"cannot start or reach Ray at {address or 'a local instance'}: {first}") from None
            self._owned = True
        self._task = ray.remote(run_candidate).options(num_cpus=cpus, memory=peak_bytes(model_bytes),
                                                       max_retries=max_retries, retry_exceptions=True)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        self._jobs: dict[Any, tuple[Job, float]] = {}

    def submit(self, job: Job) -> Any:
        ref = self._task.remote(job)
        self._jobs[ref] = (job, time.perf_counter())
        return ref

    def wait(self, handles: Sequence[Any]) -> list[tuple[Any, dict[str, Any]]]:
        ready, _ = self._ray.wait(list(handles), num_returns=1)
        return [(ref, self._result(ref)) for ref in ready]

    def _result(self, ref: Any) -> dict[str, Any]:
        job, started = self._jobs.pop(ref)
        try:
            return dict(self._ray.get(ref))
        except Exception as exc:  # noqa: BLE001  (RayTaskError, WorkerCrashedError, OOM: the candidate failed)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            return failed_record(job, f"{type(exc).__name__}: {first}", started)

    def close(self) -> None:
        if self._owned:
            self._ray.shutdown()


def check_executor(kind: str, ray_address: str | None) -> None:
    """UsageError for an unknown executor, or a Ray address without Ray; MissingExtraError without ray."""
    if kind not in EXECUTORS:
        raise UsageError(f"unknown executor {kind!r}; known: {', '.join(EXECUTORS)}")
    if ray_address and kind != "ray":
        raise UsageError("--ray-address needs --executor ray")
    if kind == "ray":
        require("ray", "ray", "edgeval search --executor ray")


def make_executor(kind: str, model_bytes: int, workers: int | None = None,
                  ray_address: str | None = None) -> Any:
    """The executor ``kind`` (``local`` or ``ray``) sized for a ``model_bytes`` model."""
    check_executor(kind, ray_address)
    if kind == "ray":
        return RayExecutor(model_bytes, ray_address)
    n = local_workers(model_bytes, workers)
    return InlineExecutor() if n == 1 else PoolExecutor(n)


__all__ = ["make_executor", "local_workers", "peak_bytes", "available_memory", "InlineExecutor", "PoolExecutor",
           "RayExecutor", "EXECUTORS", "PEAK_FACTOR", "check_executor"]
