"""A supervised pool of local worker processes (``--executor pool``, the default).

Each worker is a spawned process that takes one unit at a time over a pipe and sends back what
it is doing ("training", "epoch", "measuring", "value") and how the unit ended. The parent
watches the pipes and the processes together, so it always knows which run, and which measure,
a worker is in:

- a unit whose work raises is ``failed`` with the message; the worker goes on;
- a worker that dies (a crash, ``os._exit``, a segfault, the OOM killer) while *training*
  fails that run; while *measuring*, the error is recorded for that measure on that run, and the
  unit is re-queued on a fresh worker to compute the rest of its values;
- a measure that runs past its ``timeout_s`` (plus a grace period for the worker's own timer)
  is killed, not asked: the worker is replaced and the timeout recorded for that measure;
- a run locked by another process is put back in the queue and retried a moment later.

Workers ignore SIGINT: Ctrl-C stops the parent, which stops the workers; the store keeps
everything finished, and the run in progress is lost at most. A worker whose parent dies
(even by SIGKILL) exits at once rather than finish its unit as an orphan.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gentest.executors import GridDisplay
from gentest.executors.work import UnitResult, WorkUnit, execute_unit

# Extra seconds past a measure's own time limit before the parent kills its worker: the
# worker's SIGALRM gets the first chance to stop it cleanly.
KILL_GRACE_S = 10.0
# A unit whose measures keep killing workers is given up after this many fresh workers.
MAX_RESTARTS_PER_UNIT = 8
LOCKED_RETRY_S = 1.0


def _die_with_parent() -> None:
    """Exit this worker the moment its parent process ends, however it ends (SIGKILL too, which
    no cleanup of the parent's can answer): a watcher thread waits on the parent's sentinel.
    Without it an orphaned worker would finish its unit and store a run after its command was
    killed; the store stays sound either way (writes are atomic, a dead pid's lock is broken)."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        mp.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="gentest-parent-watch", daemon=True).start()


def _worker_main(conn: mp.connection.Connection, threads: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _die_with_parent()
    from gentest.executors.work import configure_threads
    from gentest.warnings_filter import quiet_third_party_warnings

    quiet_third_party_warnings()
    configure_threads(threads)
    while True:
        unit = conn.recv()
        if unit is None:
            return

        def emit(kind: str, payload: dict[str, Any]) -> None:
            conn.send(("event", kind, payload))

        conn.send(("result", execute_unit(unit, emit)))


@dataclass
class _Worker:
    index: int
    device: str
    process: Any
    conn: mp.connection.Connection
    unit: WorkUnit | None = None
    measure: str | None = None  # the measure in flight, if any
    measure_started: float = 0.0
    training: bool = False
    trained_keys: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        return f"worker {self.index + 1}"


class PoolExecutor:
    name = "pool"

    def __init__(self, devices: list[str], threads: int | None, timeouts: dict[str, float] | None = None,
                 versions: dict[str, str] | None = None):
        """One worker per entry of ``devices`` ("cpu", "cuda:0", ...), each with ``threads`` torch
        threads. ``timeouts`` and ``versions`` give each measure's time limit and version, so the
        parent can enforce the limit and record a crash under the right cache key."""
        if not devices:
            raise ValueError("a pool needs at least one worker")
        self.devices, self.threads = devices, threads
        self.timeouts, self.versions = timeouts or {}, versions or {}
        self._ctx = mp.get_context("spawn")

    def _start(self, index: int) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main, args=(child_conn, self.threads), name=f"gentest-worker-{index + 1}", daemon=True
        )
        process.start()
        child_conn.close()
        return _Worker(index, self.devices[index], process, parent_conn)

    def run(self, units: list[WorkUnit], display: GridDisplay) -> list[UnitResult]:
        queue: collections.deque[tuple[float, WorkUnit]] = collections.deque((0.0, u) for u in units)
        restarts: collections.Counter[str] = collections.Counter()
        results: dict[str, UnitResult] = {}
        display.planned(units, len(self.devices))
        workers = [self._start(i) for i in range(len(self.devices))]
        try:
            while queue or any(w.unit is not None for w in workers):
                self._dispatch(workers, queue, display)
                busy = [w for w in workers if w.unit is not None]
                ready = mp.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=0.5)
                for w in busy:
                    if w.conn in ready or w.process.sentinel in ready:
                        self._drain(w, queue, results, display)
                now = time.monotonic()
                for i, w in enumerate(workers):
                    if w.unit is not None and not w.process.is_alive():
                        self._crashed(w, queue, restarts, results, display, reason=_exit_reason(w.process.exitcode))
                        workers[i] = self._start(w.index)
                    elif w.unit is not None and w.measure is not None:
                        limit = self.timeouts.get(w.measure, 0)
                        if limit > 0 and now - w.measure_started > limit + KILL_GRACE_S:
                            w.process.kill()
                            w.process.join()
                            self._crashed(w, queue, restarts, results, display,
                                          reason=f"timed out after {limit:g} s (its worker was killed)", timeout=True)
                            workers[i] = self._start(w.index)
        finally:
            for w in workers:
                _stop(w)
        return [results[u.key] for u in units if u.key in results]

    def _dispatch(self, workers: list[_Worker], queue, display: GridDisplay) -> None:
        for w in workers:
            if w.unit is not None or not queue:
                continue
            now = time.monotonic()
            # Take the first unit that is due; locked ones wait a moment at the back.
            for _ in range(len(queue)):
                not_before, unit = queue[0]
                if not_before <= now:
                    queue.popleft()
                    break
                queue.rotate(-1)
            else:
                return
            w.unit = dataclasses.replace(unit, device=w.device, threads=self.threads)
            w.measure, w.training = None, False
            w.conn.send(w.unit)
            display.unit_started(w.name, w.unit)

    def _drain(self, w: _Worker, queue, results: dict[str, UnitResult], display: GridDisplay) -> None:
        try:
            while w.unit is not None and w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "event":
                    _, kind, payload = msg
                    if kind == "measuring":
                        w.measure, w.measure_started = payload["measure"], time.monotonic()
                    elif kind == "value":
                        w.measure = None
                    elif kind in ("preparing", "training"):
                        w.training = True
                    elif kind == "trained":
                        w.training = False
                    display.event(w.name, w.unit, kind, payload)
                else:
                    result: UnitResult = msg[1]
                    if result.status == "locked":
                        queue.append((time.monotonic() + LOCKED_RETRY_S, w.unit))
                    else:
                        results[result.key] = result
                        display.unit_finished(w.name, result)
                    w.unit, w.measure = None, None
        except (EOFError, OSError):
            pass  # the worker died; the liveness check records it

    def _crashed(self, w: _Worker, queue, restarts, results, display: GridDisplay, reason: str,
                 timeout: bool = False) -> None:
        unit = w.unit
        assert unit is not None
        if w.measure is not None:
            # Charge the crash to the measure in flight, and carry on with the run's other values.
            _record_measure_error(unit, w.measure, self.versions.get(w.measure, "1"),
                                  reason if timeout else f"killed its worker process: {reason}",
                                  time.monotonic() - w.measure_started)
            display.event(w.name, unit, "value", {"measure": w.measure, "error": reason, "not_applicable": False})
            restarts[unit.key] += 1
            if restarts[unit.key] <= MAX_RESTARTS_PER_UNIT:
                queue.appendleft((0.0, unit))
            else:
                results[unit.key] = UnitResult(unit.key, unit.label, "failed",
                                               f"its measures killed {restarts[unit.key]} workers; gave up")
                display.unit_finished(w.name, results[unit.key])
        else:
            phase = "while training" if w.training else "while loading or storing the run"
            results[unit.key] = UnitResult(unit.key, unit.label, "failed", f"worker process {reason} {phase}")
            display.unit_finished(w.name, results[unit.key])
        w.unit, w.measure = None, None


def _record_measure_error(unit: WorkUnit, measure: str, version: str, error: str, seconds: float) -> None:
    from gentest.leaderboard import MeasureValue
    from gentest.store import RunStore

    RunStore(unit.store).put_value(MeasureValue(unit.key, measure, version, None, error, seconds))


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        try:
            sig = signal.Signals(-code).name
        except ValueError:
            sig = f"signal {-code}"
        hint = {"SIGKILL": "; out of memory?", "SIGSEGV": "; a segmentation fault"}.get(sig, "")
        return f"was killed by {sig}{hint}"
    return f"exited with code {code}"


def _stop(w: _Worker) -> None:
    try:
        if w.process.is_alive():
            if w.unit is None:
                w.conn.send(None)
                w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
    except (OSError, ValueError, BrokenPipeError):
        pass
    finally:
        w.conn.close()


def cpu_count() -> int:
    """Cores this process may use (the affinity mask, e.g. under Slurm or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
