"""Slurm through submitit (``--executor slurm``), and its local twin (``--executor submitit-local``).

The grid goes out as one Slurm job array: the units are chunked ``runs_per_job`` to a task
(short runs share a job's start-up), and each task runs its units one after the other with
:func:`~gentest.executors.work.execute_unit`, writing to the shared store as each finishes. A
task that is preempted or hits its time limit is checkpointed by submitit and requeued with
the same units: whatever already landed in the store is skipped, so the run in progress is
lost at most. ``submitit-local`` runs the same pickled job through submitit's local executor
(real subprocesses, the same code path except ``sbatch``), so the cluster path can be tried
anywhere. The parent waits and shows progress, or returns the job ids at once (``--no-wait``);
``gentest status`` shows what is done, running and failed from the store alone.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gentest.errors import GentestError
from gentest.executors import GridDisplay
from gentest.executors.work import UnitResult, WorkUnit, execute_unit


def _submitit():
    try:
        import submitit
    except ImportError:
        raise GentestError(
            "the slurm and submitit-local executors need submitit: pip install \"gentest-harness[slurm]\""
        ) from None
    return submitit


def require_slurm() -> None:
    """One sentence when this machine cannot submit to Slurm (checked before submitit, which
    would not help)."""
    if shutil.which("sbatch") is None:
        raise GentestError("--executor slurm needs a Slurm cluster: sbatch is not on PATH "
                           "(--executor submitit-local runs the same jobs on this machine)")


@dataclass
class SlurmOptions:
    """The usual knobs; ``params`` passes anything else through to sbatch (KEY=VALUE)."""

    partition: str | None = None
    time_min: int = 240
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    array_parallelism: int = 64
    account: str | None = None
    qos: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    runs_per_job: int = 1


try:  # optional dependency: without it only the pool executor is available
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - exercised by the "missing submitit" test via _submitit()
    _Checkpointable = object  # type: ignore[assignment,misc]


class GridChunk(_Checkpointable):
    """The submitted callable: run a chunk of units in order, deferring locked runs.

    A submitit Checkpointable: on preemption or timeout submitit requeues it with the same
    units, and :func:`execute_unit` skips whatever already landed in the store."""

    def __call__(self, units: list[WorkUnit]) -> list[UnitResult]:
        from gentest.warnings_filter import quiet_third_party_warnings

        quiet_third_party_warnings()
        pending, results = list(units), []
        while pending:
            unit = pending.pop(0)
            result = execute_unit(unit)
            if result.status == "locked":
                pending.append(unit)
                if pending[0] is unit:  # nothing else to do meanwhile
                    time.sleep(1.0)
            else:
                results.append(result)
        return results


class SubmititExecutor:
    """A job array on Slurm (``local=False``) or on local subprocesses (``local=True``)."""

    def __init__(self, folder: Path, options: SlurmOptions, local: bool = False, wait: bool = True,
                 poll_s: float = 1.0):
        self.name = "submitit-local" if local else "slurm"
        self.folder, self.options, self.local, self.wait, self.poll_s = Path(folder), options, local, wait, poll_s
        self.job_ids: list[str] = []

    def _executor(self):
        submitit = _submitit()
        o = self.options
        if self.local:
            ex = submitit.LocalExecutor(folder=self.folder / "%j")
            ex.update_parameters(timeout_min=o.time_min, gpus_per_node=o.gpus_per_job)
            return ex
        try:
            ex = submitit.SlurmExecutor(folder=self.folder / "%j")
        except RuntimeError as e:  # submitit looks for srun
            raise GentestError(f"--executor slurm needs a Slurm cluster: {e}") from None
        params: dict[str, Any] = {"time": o.time_min, "array_parallelism": o.array_parallelism}
        optional = {"partition": o.partition, "account": o.account, "qos": o.qos, "cpus_per_task": o.cpus_per_job}
        params |= {k: v for k, v in optional.items() if v is not None}
        if o.gpus_per_job:
            params["gpus_per_node"] = o.gpus_per_job
        if o.params:
            params["additional_parameters"] = dict(o.params)
        ex.update_parameters(**params)
        return ex

    def run(self, units: list[WorkUnit], display: GridDisplay) -> list[UnitResult]:
        if not units:
            return []
        k = max(1, self.options.runs_per_job)
        chunks = [units[i : i + k] for i in range(0, len(units), k)]
        executor = self._executor()
        display.planned(units, len(chunks))
        jobs = executor.map_array(GridChunk(), chunks)
        self.job_ids = [job.job_id for job in jobs]
        display.note(f"submitted {len(jobs)} {'task' if len(jobs) == 1 else 'tasks'} "
                     f"({_array_id(self.job_ids)}) to {'local subprocesses' if self.local else 'Slurm'}; "
                     f"logs in {self.folder}")
        if not self.wait:
            return []
        return self._wait(jobs, chunks, display)

    def _wait(self, jobs, chunks: list[list[WorkUnit]], display: GridDisplay) -> list[UnitResult]:
        results: dict[str, UnitResult] = {}
        pending = dict(enumerate(jobs))
        started: set[int] = set()
        while pending:
            for i, job in list(pending.items()):
                name = f"job {job.job_id}"
                if i not in started and job.state not in ("PENDING", "UNKNOWN"):
                    started.add(i)
                    for unit in chunks[i]:
                        display.unit_started(name, unit)
                if not job.done():
                    continue
                del pending[i]
                try:
                    for r in job.result():
                        results[r.key] = r
                        display.unit_finished(name, r)
                except Exception as e:  # the job itself failed (killed, out of time after requeues)
                    message = _job_failure(e)
                    for unit in chunks[i]:
                        if unit.key not in results:
                            results[unit.key] = UnitResult(unit.key, unit.label, "failed", f"{name}: {message}")
                            display.unit_finished(name, results[unit.key])
            if pending:
                time.sleep(self.poll_s)
        return [results[u.key] for chunk in chunks for u in chunk if u.key in results]


def _job_failure(e: Exception) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


def _array_id(job_ids: list[str]) -> str:
    if len(job_ids) == 1:
        return f"job {job_ids[0]}"
    base = {j.split("_")[0] for j in job_ids}
    return f"array {base.pop()}" if len(base) == 1 else f"jobs {', '.join(job_ids)}"


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``--slurm-param KEY=VALUE`` pairs as a dict; one sentence for a malformed pair."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise GentestError(f"--slurm-param takes KEY=VALUE (e.g. constraint=a100), not '{pair}'")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def chunk_count(n_units: int, runs_per_job: int) -> int:
    return math.ceil(n_units / max(1, runs_per_job))
