"""The unit of parallel work: one run, trained if the store lacks it, then its missing values.

A :class:`WorkUnit` is plain data (a spec as a dict, measure names, paths), so it pickles to a
local worker process or to a Slurm job alike; :func:`execute_unit` is what every executor runs
on the other side. It talks to the store only, so a unit can run anywhere that sees the store:
what it trains and computes lands there as it finishes, and a unit run twice does nothing the
second time.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from gentest.errors import GentestError

# What a worker reports while it works: (kind, payload). Kinds: "preparing" {label} (the run's
# lock is taken; its data is being made), "training" {label, max_epochs},
# "epoch" {epoch, train_acc}, "trained" {key}, "measuring" {measure, index, total},
# "value" {measure, error}. The pool draws them; a crash between "measuring" and "value" is
# charged to that measure.
Emit = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class WorkUnit:
    """Everything a worker needs to do one run's work, as plain picklable data."""

    spec: dict[str, Any]  # RunSpec.to_dict()
    key: str
    label: str
    store: str  # absolute path of the run store
    measures: tuple[str, ...] = ()  # names; empty: train only
    plugins: tuple[str, ...] = ()  # absolute paths of --plugin files that define measures
    modules: tuple[str, ...] = ()  # importable modules that define measures (registered by direct import)
    device: str = "cpu"  # "cpu", "cuda:0", ...
    threads: int | None = None  # torch intra-op threads in the worker; None: leave torch's default
    data_root: str | None = None
    download: bool = False


@dataclass
class UnitResult:
    """How one unit ended. ``status``: "done", "failed", or "locked" (another process holds
    the run's lock; the executor comes back to it later)."""

    key: str
    label: str
    status: str
    message: str = ""
    trained: bool = False
    computed: int = 0
    seconds: float = 0.0
    host: str = field(default_factory=lambda: os.uname().nodename)


_DATA_CACHES: dict[tuple[Any, ...], Any] = {}


def _data_cache(unit: WorkUnit):
    """One DataCache per worker process and data root, so a worker loads each dataset once."""
    from gentest.runner import DataCache

    k = (unit.data_root, unit.download)
    if k not in _DATA_CACHES:
        _DATA_CACHES[k] = DataCache(unit.data_root, unit.download)
    return _DATA_CACHES[k]


def configure_threads(threads: int | None) -> None:
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def execute_unit(unit: WorkUnit, emit: Emit | None = None, wait_for_lock: bool = False) -> UnitResult:
    """Train ``unit``'s run if the store lacks it, then compute its missing measure values.

    Never raises for a failure of the work itself: an exception becomes a ``failed`` result
    with its message (the worker goes on to the next unit). If another process holds the run's
    lock, returns ``locked`` at once (or waits, with ``wait_for_lock``).
    """
    from gentest.spec import RunSpec
    from gentest.store import RunStore

    emit = emit or (lambda kind, payload: None)
    start = time.perf_counter()
    result = UnitResult(unit.key, unit.label, "done")
    try:
        configure_threads(unit.threads)
        device = torch.device(unit.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        spec = RunSpec.from_dict(unit.spec)
        store = RunStore(unit.store)
        data = _data_cache(unit)
        if spec.key not in store:
            lock = store.lock(spec.key) if wait_for_lock else store.try_lock(spec.key)
            if lock is None:
                result.status, result.message = "locked", "another process is training this run"
                return result
            with lock:
                if spec.key not in store:
                    emit("preparing", {"label": spec.label()})  # data and randomization, then training
                    _train(spec, store, device, data, emit)
                    result.trained = True
                    from gentest.runner import report_lost_lease

                    report_lost_lease(lock, spec)
        if unit.measures:
            result.computed = _measure(spec, unit, store, device, data, emit)
    except GentestError as e:
        result.status, result.message = "failed", str(e)
    except Exception as e:  # the work failed; the worker lives on and the other units go on
        last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" (at {os.path.basename(last.filename)}:{last.lineno})" if last else ""
        result.status, result.message = "failed", f"{type(e).__name__}: {e}{where}"
    finally:
        result.seconds = time.perf_counter() - start
    return result


def _train(spec, store, device, data, emit: Emit) -> None:
    from gentest.runner import Progress, train_one

    class Events(Progress):
        def run_started(self, spec, max_epochs: int) -> None:
            emit("training", {"label": spec.label(), "max_epochs": max_epochs})

        def epoch_done(self, epoch: int, row: dict[str, Any]) -> None:
            emit("epoch", {"epoch": epoch, "train_acc": row["train_acc"]})

        def run_finished(self, run) -> None:
            emit("trained", {"key": run.key, "row": run.row()})

    train_one(spec, store, device, data, Events(), take_lock=False)  # the caller holds the lock


def _measure(spec, unit: WorkUnit, store, device, data, emit: Emit) -> int:
    from gentest.evaluation import EvaluationProgress, evaluate
    from gentest.registry import all_measures, select

    import importlib

    for module in unit.modules:  # measures registered by importing a module, as in the parent
        importlib.import_module(module)
    measures = select(list(unit.measures), all_measures(unit.plugins))
    run = store.load(spec.key)
    counter = {"done": 0, "total": 0}

    class Events(EvaluationProgress):
        def planned(self, total: int, missing: int) -> None:
            counter["total"] = missing

        def value_started(self, run, measure) -> None:
            emit("measuring", {"measure": measure.name, "index": counter["done"], "total": counter["total"]})

        def value_done(self, run, value) -> None:
            counter["done"] += 1
            emit("value", {"measure": value.measure, "error": value.error, "not_applicable": value.not_applicable})

    evaluate([run], measures, store, device, data, Events())
    return counter["done"]
