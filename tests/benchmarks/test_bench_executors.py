"""Executors: what parallel workers buy on this machine, and what submitit costs per job.

    python -m pytest tests/benchmarks/test_bench_executors.py --benchmark-enable --benchmark-group-by=group

- ``grid-8-ci-runs``: train 8 ci-sized runs with ``--jobs 1`` (the baseline) and ``--jobs 2``,
  one torch thread per worker either way (so both give the same bits); each round starts from
  an empty store, worker start-up included.
- ``parallel-ceiling-sgemm``: the same float32 matmuls (one torch thread each) done by one
  process, then split over two processes started beforehand: what two workers can gain on
  this machine at best, before any start-up cost. Read the grid's ratio against this one.
- ``submitit-local-noop-jobs``: 4 units whose runs are already stored (so the work is nothing)
  through submitit's local executor, against the same units run in this process: the
  difference is submitit's overhead (pickling, a subprocess per job, polling).

In ordinary test runs (benchmarks disabled) each body runs once, as a smoke test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gentest.executors import GridDisplay, execute_unit
from gentest.pipeline import GridPlan, plan_units, run_grid
from gentest.store import RunStore
from gentest.suites import load_suite

GRID = """
[suite]
name = "grid8"
[base]
dataset = { name = "mnist1d", train_size = 400, test_size = 400 }
model = { name = "mlp", hidden = [128, 128] }
lr = 0.05
batch_size = 64
max_epochs = 300
[axes]
randomization = ["none", "labels"]
seed = [0, 1, 2, 3]
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid")
    (folder / "grid8.toml").write_text(GRID)
    return folder, load_suite(str(folder / "grid8.toml"))


def train_grid(folder: Path, suite, jobs: int) -> int:
    store_dir = folder / f"store-jobs{jobs}"
    shutil.rmtree(store_dir, ignore_errors=True)
    plan = GridPlan.from_options(executor="pool", jobs=jobs, threads=1, device="cpu", store=str(store_dir))
    outcome = run_grid(suite.specs, [], RunStore(store_dir), plan)
    assert not outcome.failures
    return len(RunStore(store_dir).keys())


@pytest.mark.benchmark(group="grid-8-ci-runs")
def test_grid_jobs_1_baseline(benchmark, grid):
    assert benchmark.pedantic(train_grid, args=(*grid, 1), rounds=2, iterations=1) == 8


@pytest.mark.benchmark(group="grid-8-ci-runs")
def test_grid_jobs_2(benchmark, grid):
    assert benchmark.pedantic(train_grid, args=(*grid, 2), rounds=2, iterations=1) == 8


# A worker for the ceiling: import torch, say "ready", wait for "go", do its share of matmuls.
SGEMM_WORKER = """
import sys, torch
torch.set_num_threads(1)
a, b = torch.randn(512, 512), torch.randn(512, 512)
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[1])):
    a @ b
"""
SGEMM_TOTAL = 400  # matmuls of 512 x 512 in all, split evenly over the processes


def start_sgemm_workers(n: int):
    procs = [subprocess.Popen([sys.executable, "-c", SGEMM_WORKER, str(SGEMM_TOTAL // n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    return (procs,), {}


def release_sgemm_workers(procs) -> int:
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    return sum(p.wait() == 0 for p in procs)


@pytest.mark.benchmark(group="parallel-ceiling-sgemm")
def test_sgemm_one_process_baseline(benchmark):
    assert benchmark.pedantic(release_sgemm_workers, setup=lambda: start_sgemm_workers(1), rounds=3) == 1


@pytest.mark.benchmark(group="parallel-ceiling-sgemm")
def test_sgemm_split_over_two_processes(benchmark):
    assert benchmark.pedantic(release_sgemm_workers, setup=lambda: start_sgemm_workers(2), rounds=3) == 2


@pytest.fixture(scope="module")
def stored_units(tmp_path_factory):
    """4 ci units whose runs are stored already: executing them does nothing but look."""
    folder = tmp_path_factory.mktemp("noop")
    store_dir = folder / "store"
    suite = load_suite("ci")
    plan = GridPlan.from_options(executor="pool", jobs=2, threads=1, device="cpu", store=str(store_dir))
    run_grid(suite.specs, [], RunStore(store_dir), plan)
    units = [u for s in suite.specs for u in plan_units([s], [], RunStore(folder / "empty"), plan)]
    units = [u.__class__(**{**u.__dict__, "store": str(store_dir)}) for u in units]
    return folder, store_dir, units


def in_process(units) -> int:
    return sum(execute_unit(u).status == "done" for u in units)


def through_submitit(folder: Path, store_dir: Path, units) -> int:
    from gentest.executors.cluster import SlurmOptions, SubmititExecutor

    shutil.rmtree(folder / "submitit", ignore_errors=True)
    executor = SubmititExecutor(folder / "submitit", SlurmOptions(runs_per_job=1, time_min=10), local=True, poll_s=0.1)
    return sum(r.status == "done" for r in executor.run(units, GridDisplay()))


@pytest.mark.benchmark(group="submitit-local-noop-jobs")
def test_noop_units_in_process_baseline(benchmark, stored_units):
    pytest.importorskip("submitit")
    folder, store_dir, units = stored_units
    assert benchmark.pedantic(in_process, args=(units,), rounds=3, iterations=1) == 4


@pytest.mark.benchmark(group="submitit-local-noop-jobs")
def test_noop_units_through_submitit_local(benchmark, stored_units):
    pytest.importorskip("submitit")
    assert benchmark.pedantic(through_submitit, args=stored_units, rounds=2, iterations=1) == 4
