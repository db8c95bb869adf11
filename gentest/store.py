"""The run store: one folder per RunSpec key, written atomically, loaded safely.

Layout (default root ``.gentest/`` in the working directory)::

    runs/<key>/run.json      spec, metrics, learning curve, randomization record, versions
    runs/<key>/weights.pt    initial and final state_dicts, and the randomization's tensors
    runs/<key>/measures/<name>@<version>.json   one measure value (or its error) per file
    tmp/                     runs being written (a crash leaves debris here, never in runs/)

A run is first written whole into ``tmp/`` and then moved into ``runs/`` with one
``os.rename`` of its folder, which is atomic on POSIX file systems: a crash or a kill leaves
either a whole run or none. Weights load with ``torch.load(weights_only=True)``; nothing in
the store is unpickled arbitrarily.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

import gentest
from gentest.errors import GentestError
from gentest.leaderboard import MeasureValue
from gentest.spec import RunSpec

DEFAULT_STORE = Path(".gentest")


@dataclass(frozen=True)
class Run:
    """A stored run: what ``run.json`` holds, with weights loaded on demand."""

    key: str
    spec: RunSpec
    metrics: dict[str, Any]
    curve: list[dict[str, Any]]
    randomization: dict[str, Any]
    versions: dict[str, str]
    path: Path

    def weights(self) -> dict[str, Any]:
        """``{"initial": state_dict, "final": state_dict, "randomization": {name: tensor}}``."""
        return torch.load(self.path / "weights.pt", map_location="cpu", weights_only=True)

    def row(self) -> dict[str, Any]:
        """The flat summary that ``gentest runs --json`` and the leaderboard list."""
        s, m = self.spec, self.metrics
        return {
            "key": self.key,
            "dataset": s.dataset,
            "model": s.model,
            "randomization": s.randomization,
            "p": s.p,
            "effective_corruption": self.randomization.get("effective_corruption"),
            "seed": s.seed,
            "train_acc": m["train_acc"],
            "test_acc": m["test_acc"],
            "gap": m["gap"],
            "fitted": m["fitted"],
            "epochs": m["epochs"],
            "steps_to_fit": m["steps_to_fit"],
            "wall_s": m["wall_s"],
            "device": m["device"],
            "replace_k": s.replace_k,
        }


class RunStore:
    def __init__(self, root: str | Path = DEFAULT_STORE):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.tmp_dir = self.root / "tmp"

    def __contains__(self, key: str) -> bool:
        return (self.runs_dir / key / "run.json").is_file()

    def save(
        self,
        spec: RunSpec,
        metrics: dict[str, Any],
        curve: list[dict[str, Any]],
        randomization: dict[str, Any],
        weights: dict[str, Any],
    ) -> Run:
        """Write a run atomically; if another process stored the same key first, keep that one."""
        key = spec.key
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        staging = self.tmp_dir / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            record = {
                "key": key,
                "spec": spec.to_dict(),
                "metrics": metrics,
                "curve": curve,
                "randomization": randomization,
                "versions": library_versions(),
            }
            _write_synced(staging / "weights.pt", lambda f: torch.save(weights, f))
            _write_synced(staging / "run.json", lambda f: f.write(json.dumps(record, indent=1).encode()))
            try:
                os.rename(staging, self.runs_dir / key)
            except OSError:
                if key not in self:  # not a lost race: a real failure
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.load(key)

    def load(self, key: str) -> Run:
        path = self.runs_dir / key
        try:
            record = json.loads((path / "run.json").read_text())
        except FileNotFoundError:
            raise GentestError(f"no run '{key}' in the store {self.root}") from None
        return Run(
            key=record["key"],
            spec=RunSpec.from_dict(record["spec"]),
            metrics=record["metrics"],
            curve=record["curve"],
            randomization=record["randomization"],
            versions=record["versions"],
            path=path,
        )

    def keys(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / "run.json").is_file())

    def runs(self) -> Iterator[Run]:
        for key in self.keys():
            yield self.load(key)

    def value_path(self, key: str, measure: str, version: str) -> Path:
        safe = measure.replace("/", "_").replace(os.sep, "_")
        return self.runs_dir / key / "measures" / f"{safe}@{version}.json"

    def get_value(self, key: str, measure: str, version: str) -> MeasureValue | None:
        """The cached value of (run, measure, version), or None if it was never computed."""
        try:
            return MeasureValue(**json.loads(self.value_path(key, measure, version).read_text()))
        except FileNotFoundError:
            return None

    def put_value(self, value: MeasureValue) -> None:
        """Write one measure value atomically (temp file, then rename)."""
        path = self.value_path(value.run_key, value.measure, value.version)
        path.parent.mkdir(exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _write_synced(staging, lambda f: f.write(json.dumps(value.to_json()).encode()))
        os.replace(staging, path)

    # Interim per-run locks (the store branch replaces these with host/pid-aware ones).
    def lock(self, key: str, timeout: float | None = None):
        from filelock import FileLock

        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / "locks" / f"{key}.lock"), timeout=-1 if timeout is None else timeout)

    def try_lock(self, key: str):
        from filelock import FileLock, Timeout

        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / "locks" / f"{key}.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return None
        return lock

    def clean_debris(self) -> int:
        """Remove staging folders left by processes that no longer exist; return how many."""
        if not self.tmp_dir.is_dir():
            return 0
        removed = 0
        for entry in self.tmp_dir.iterdir():
            parts = entry.name.split(".")
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            if pid is None or not _alive(pid):
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed


def library_versions() -> dict[str, str]:
    import numpy

    return {
        "gentest": gentest.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        # CPU float results depend on these: the same thread count, ISA and torch give the same bits.
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": cpu_model(),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _write_synced(path: Path, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
