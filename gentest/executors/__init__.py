"""Executors: where a suite's runs are trained and measured.

The unit of work is one run (:class:`~gentest.executors.work.WorkUnit`): train it if the store
lacks it, then compute its missing measure values. An executor takes units and returns how each
ended; everything it produces lands in the run store as it finishes, so any executor can be
interrupted and run again to do only what is missing. Three ship with gentest:

- ``pool`` (the default): supervised local worker processes, ``--jobs N`` of them, each with
  ``--threads`` torch threads (CPU) or pinned to one GPU (CUDA). A worker that dies or hangs
  costs one run (or, inside a measure, that measure's value on that run), never the grid.
- ``slurm``: one Slurm job array through submitit, ``--runs-per-job`` units per array task.
- ``submitit-local``: the same submitit code path with local subprocesses instead of
  ``sbatch``, to try the cluster path on a laptop.

Adding an engine means writing one class with ``run(units, display) -> list[UnitResult]``.
"""

from __future__ import annotations

from typing import Protocol

from gentest.executors.work import UnitResult, WorkUnit, execute_unit

EXECUTORS = ("pool", "slurm", "submitit-local")

__all__ = ["EXECUTORS", "Executor", "GridDisplay", "UnitResult", "WorkUnit", "execute_unit"]


class GridDisplay:
    """What an executor reports while the grid runs; the CLI draws it, tests may record it.

    ``worker`` names where a unit runs ("worker 1", "job 1234_5")."""

    def planned(self, units: list[WorkUnit], workers: int) -> None: ...
    def unit_started(self, worker: str, unit: WorkUnit) -> None: ...
    def event(self, worker: str, unit: WorkUnit, kind: str, payload: dict) -> None: ...
    def unit_finished(self, worker: str, result: UnitResult) -> None: ...
    def note(self, message: str) -> None: ...


class Executor(Protocol):
    """One engine that runs units: submit a run's work, get a result or a failure."""

    name: str

    def run(self, units: list[WorkUnit], display: GridDisplay) -> list[UnitResult]: ...
