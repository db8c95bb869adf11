"""Materialize runs: for each RunSpec the store lacks, load data, randomize, train, store.

Runs are trained one at a time and stored as each finishes, so an interrupted suite loses at
most the run in progress and the next invocation picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from gentest.datasets import DataSplit, load_dataset
from gentest.randomizations import Randomized, randomize
from gentest.spec import RunSpec, thaw
from gentest.store import Run, RunLock, RunStore
from gentest.training import train


class Progress:
    """What the runner reports while it works; the CLI draws it, tests may count it."""

    def runs_planned(self, total: int, missing: int) -> None: ...
    def run_started(self, spec: RunSpec, max_epochs: int) -> None: ...
    def epoch_done(self, epoch: int, row: dict[str, Any]) -> None: ...
    def run_finished(self, run: Run) -> None: ...


class DataCache:
    """Loads each (dataset, options) once per process."""

    def __init__(self, data_root: str | Path | None = None, download: bool = False):
        self.data_root, self.download = data_root, download
        self._loaded: dict[tuple[str, str], DataSplit] = {}

    def get(self, spec: RunSpec) -> DataSplit:
        k = (spec.dataset, spec.dataset_args)
        if k not in self._loaded:
            self._loaded[k] = load_dataset(spec.dataset, thaw(spec.dataset_args), self.data_root, self.download)
        return self._loaded[k]


def training_data(spec: RunSpec, data: DataCache) -> Randomized:
    """The data exactly as ``spec`` trains on it: the dataset with its randomization applied
    (and, for a stability retrain, ``replace_k`` training examples replaced)."""
    randomized = randomize(
        data.get(spec), spec.randomization, spec.p, spec.seed_for("randomization"), spec.corrupt_test_labels,
        pixel_unit=spec.pixel_unit,
    )
    if spec.replace_k:
        from gentest.stability import replace_examples

        randomized = replace_examples(randomized, data.get(spec), spec)
    return randomized


def _train_each_once(specs: list[RunSpec], store: RunStore, device: torch.device, data: DataCache, progress: Progress) -> None:
    """Train each spec unless another process does: take its run lock first, skip a locked
    run and come back to it later (when its holder has stored it, there is nothing to do)."""
    pending = list(dict.fromkeys(specs))
    pause = 0.05
    while pending:
        locked = []
        for spec in pending:
            if spec.key in store:
                continue
            lock = store.try_lock(spec.key)
            if lock is None:
                locked.append(spec)
                continue
            with lock:
                if spec.key not in store:  # not stored by another process meanwhile
                    train_one(spec, store, device, data, progress, take_lock=False)
                    report_lost_lease(lock, spec)
        pending = locked
        if pending:
            time.sleep(pause)
            pause = min(2 * pause, 1.0)


def train_one(
    spec: RunSpec,
    store: RunStore,
    device: torch.device,
    data: DataCache,
    progress: Progress | None = None,
    *,
    take_lock: bool = True,
) -> Run:
    """Train one spec and store it, unless the store has it already; return the stored run.

    The run's lock is held while it trains, so two processes (or hosts) sharing the store never
    both train it: the second waits for the first and then finds the run stored. A caller that
    holds the lock already passes ``take_lock=False``.
    """
    progress = progress or Progress()
    with store.lock(spec.key) if take_lock else contextlib.nullcontext() as lock:
        if spec.key in store:  # trained by another process while we waited for the lock
            return store.load(spec.key)
        randomized = training_data(spec, data)
        progress.run_started(spec, spec.train.max_epochs)
        result = train(spec, randomized.data, device, on_epoch=progress.epoch_done)
        run = store.save(
            spec,
            metrics=result.metrics,
            curve=result.curve,
            randomization=randomized.record,
            weights={
                "initial": result.initial_state,
                "final": result.model.state_dict(),
                "randomization": randomized.tensors,
            },
        )
        if lock is not None:
            report_lost_lease(lock, spec)
    progress.run_finished(run)
    return run


def report_lost_lease(lock: RunLock, spec: RunSpec) -> bool:
    """Say so on stderr if the run's lock was taken over while it trained (its holder was cut
    off from the store, or frozen, for longer than the lease); True if it was. One last
    refresh first, so that a takeover since the heartbeat's last beat is seen too. Nothing is
    corrupted: the run may be trained twice, and the store keeps the first copy stored."""
    lock.refresh()
    if lock.lost:
        print(f"gentest: run {spec.label()} ({spec.key}): its lock's lease lapsed while it trained and another "
              "process took the run over; it may be trained twice (the store keeps the first copy)",
              file=sys.stderr, flush=True)
    return lock.lost


def train_missing(
    specs: Iterable[RunSpec],
    store: RunStore,
    device: torch.device,
    data: DataCache | None = None,
    progress: Progress | None = None,
) -> list[Run]:
    """Train every spec the store lacks; return all of ``specs``' runs, in order."""
    specs = list(specs)
    data = data or DataCache()
    progress = progress or Progress()
    store.clean_debris()
    missing = [s for s in specs if s.key not in store]
    for spec in missing:  # fail on missing data before any training starts
        data.get(spec)
    progress.runs_planned(len(specs), len(missing))
    _train_each_once(missing, store, device, data, progress)
    return [store.load(s.key) for s in specs]
