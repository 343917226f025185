"""The executors agree: the same search on the tiny Llama in this process, in a local process pool and as Ray
tasks on a real local Ray instance reaches the same points, front and recommendation."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeval.errors import UsageError
from edgeval.policy import Policy

POLICY = {"validators": ["size", "parity"],
          "parity": {"mode": "exact", "max_abs_logit_diff": 0.17, "min_top1_agreement": None,
                     "min_letter_agreement": None}}
#: three searches and a Ray start: 1-5 min on two shared cores
slow = pytest.mark.slow


def summary(result):
    return ([(p["axis"], p["sparsity"], p["verdict"], p["key"]) for p in result.points],
            result.document["front"], result.document["recommended"], result.highest_passing)


def run(model, out, **kwargs):
    from edgeval import search

    return search(model, out, methods=("magnitude",), sparsity=(0.1, 0.9, 0.2), policy=Policy.from_dict(POLICY),
                  **kwargs)


@pytest.fixture(scope="module")
def inline(tiny_llama_dir, tmp_path_factory):
    return run(tiny_llama_dir, tmp_path_factory.mktemp("inline") / "out", workers=1)


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    root = str(Path(__file__).parents[1])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": root}})
    try:
        yield ray
    finally:
        ray.shutdown()


@slow
def test_ray_gives_the_same_front_as_local(inline, local_ray, tiny_llama_dir, tmp_path):
    result = run(tiny_llama_dir, tmp_path / "out", executor="ray")
    assert result.exit_code == inline.exit_code == 0
    assert summary(result) == summary(inline)
    assert local_ray.is_initialized()  # a search does not shut down an instance it did not start


@slow
def test_local_pool_gives_the_same_front(inline, tiny_llama_dir, tmp_path):
    from edgeval.search.executors import PoolExecutor, make_executor

    executor = make_executor("local", 1000, workers=2)
    try:
        assert isinstance(executor, PoolExecutor) or executor.workers == 1
    finally:
        executor.close()
    result = run(tiny_llama_dir, tmp_path / "out", workers=2)
    assert summary(result) == summary(inline)


def test_local_workers_fit_cores_and_memory():
    from edgeval.search.executors import local_workers, peak_bytes

    gb = 1 << 30
    assert local_workers(600_000_000, cores=16, memory=24 * gb) == 24 * gb // peak_bytes(600_000_000) < 16
    assert local_workers(600_000_000, cores=2, memory=64 * gb) == 2
    assert local_workers(30 * gb, cores=8, memory=24 * gb) == 1  # never zero: one candidate at a time
    assert local_workers(100, requested=1, cores=8, memory=64 * gb) == 1


def test_a_bad_ray_address_is_a_one_line_usage_error():
    """``--ray-address bogus://x`` was an internal error (exit 4); it is the user's input: exit 2, one line."""
    ray = pytest.importorskip("ray")
    from edgeval.search.executors import RayExecutor

    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    with pytest.raises(UsageError, match="cannot start or reach Ray at bogus://x") as info:
        RayExecutor(1000, "bogus://x")
    assert "\n" not in str(info.value)
