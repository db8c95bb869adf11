"""The run store: one folder per RunSpec key, written atomically, loaded safely, shared by many
processes and hosts, checked on every read, and healed when damaged.

Layout (default root ``.gentest/`` in the working directory)::

    runs/<key>/run.json      schema, spec, metrics, learning curve, randomization record,
                             versions, and the size and sha256 of weights.pt
    runs/<key>/weights.pt    initial and final state_dicts, and the randomization's tensors
    runs/<key>/measures/<name>@<version>.json   one measure value (or its error) per file
    locks/<key>.lock[.json]  per-run locks (gentest.locks): who trains the run right now
    tmp/                     runs and values being written (a crash leaves debris here only)
    quarantine/<key>.<UTC time>/   damaged runs, moved aside to be retrained

**Atomic writes.** A run is first written whole into ``tmp/`` and then moved into ``runs/``
with one ``os.rename`` of its folder, atomic on POSIX file systems: a crash or a kill leaves
either a whole run or none. A value file is written to a temp file with a name no other
process or host can pick (host, pid, random) and moved over its place with ``os.replace``; a
reader sees the old file or the new one, never a part. Weights load with
``torch.load(weights_only=True)``; nothing in the store is unpickled arbitrarily.

**Many processes.** ``try_lock``/``lock`` give per-run locks (see gentest.locks) so that a run
is trained once however many processes or hosts ask for it. Temp names carry host and pid, so
``clean_debris`` removes only what dead processes of this host left, and other hosts' debris
only after a day.

**Damage.** Every read is checked. A run folder whose ``run.json`` is missing, not UTF-8, not
JSON or lacks a field, or whose ``weights.pt`` is missing, has another size than recorded, fails
its sha256 (checked whenever the weights are read) or does not load, is *damaged*: it is
reported by name (:meth:`RunStore.damaged`, and ``on_damage`` as it happens), moved to
``quarantine/``, and its key counts as missing, so the next ``train`` retrains it. A value file
that does not parse, lacks a field, fails its checksum, or names another run, measure, version
or other weights counts as missing, so it is recomputed (:meth:`RunStore.bad_values`). A store
written by a newer gentest (a schema above :data:`STORE_SCHEMA`) is a :class:`NewerStoreError`.
Runs and values written before schemas existed (schema 0: no checksum) are read as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

import gentest
from gentest import locks
from gentest.errors import GentestError
from gentest.locks import DEFAULT_LEASE_S, LockTimeout, RunLock
from gentest.spec import RunSpec
from gentest.values import MeasureValue

__all__ = [
    "DEFAULT_STORE", "STORE_SCHEMA", "DEBRIS_AGE_S", "DEFAULT_LEASE_S", "Run", "RunStore", "RunLock", "LockTimeout",
    "DamagedRun", "BadValue", "DamagedRunError", "NewerStoreError", "library_versions", "print_damage", "ignore_damage",
]

DEFAULT_STORE = Path(".gentest")
STORE_SCHEMA = 1  # of run.json and of value files; files without "schema" are schema 0
DEBRIS_AGE_S = 24 * 3600.0  # other hosts' temp files are debris only after this long

_RECORD_FIELDS = {"key": str, "spec": dict, "metrics": dict, "curve": list, "randomization": dict, "versions": dict}
_METRIC_FIELDS = ("train_acc", "test_acc", "gap", "fitted", "epochs", "steps_to_fit", "wall_s", "device")


class NewerStoreError(GentestError):
    """The store holds files of a newer schema than this gentest reads."""


@dataclass(frozen=True)
class DamagedRun:
    """A run found damaged: its key, why, and where it was moved (None: left in place)."""

    key: str
    reason: str
    moved_to: Path | None = None

    def message(self) -> str:
        if self.moved_to is not None:
            return f"run {self.key} was damaged ({self.reason}); moved to {self.moved_to}, it will be retrained"
        return f"run {self.key} is damaged ({self.reason}); it will be retrained"

    __str__ = message


@dataclass(frozen=True)
class BadValue:
    """A value file that cannot be trusted; it counts as missing and is recomputed."""

    key: str
    measure: str
    version: str
    path: Path
    reason: str
    moved_to: Path | None = None  # where ``gentest doctor --fix`` moved it (None: left in place)

    def message(self) -> str:
        if self.moved_to is not None:
            return (f"the cached value of {self.measure}@{self.version} on run {self.key} was unusable "
                    f"({self.reason}); moved to {self.moved_to}, it will be recomputed")
        return (f"the cached value of {self.measure}@{self.version} on run {self.key} is unusable "
                f"({self.reason}); it will be recomputed")

    __str__ = message


class DamagedRunError(GentestError):
    """A run turned out damaged while being read (e.g. its weights fail their checksum).
    ``damage`` says which and why; the store has already reported and quarantined it."""

    def __init__(self, damage: DamagedRun):
        super().__init__(damage.message())
        self.damage = damage


@dataclass(frozen=True)
class Run:
    """A stored run: what ``run.json`` holds, with weights loaded (and verified) on demand."""

    key: str
    spec: RunSpec
    metrics: dict[str, Any]
    curve: list[dict[str, Any]]
    randomization: dict[str, Any]
    versions: dict[str, str]
    path: Path
    schema: int = STORE_SCHEMA
    weights_size: int | None = None  # None: written before checksums (schema 0), unknown
    weights_sha256: str | None = None
    store: "RunStore | None" = field(default=None, compare=False, repr=False)
    folder_id: tuple[int, int] | None = field(default=None, compare=False, repr=False)  # (st_dev, st_ino)

    def weights(self) -> dict[str, Any]:
        """``{"initial": state_dict, "final": state_dict, "randomization": {name: tensor}}``,
        after checking size and sha256 against ``run.json``; DamagedRunError if they differ or
        the file does not load (the run is then quarantined)."""
        data = self._verified_bytes()
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # weights_only refused a global: not a plain state
            self._damaged(f"weights.pt holds objects that are not tensors and was not unpickled: "
                          f"{_first_line(e)}")
        except Exception as e:  # a truncated or garbled zip archive (runs without checksum)
            self._damaged(f"weights.pt does not load ({type(e).__name__}: {_first_line(e)})")

    def verify(self) -> None:
        """Check ``weights.pt`` fully: its sha256 where recorded, else that it loads."""
        if self.weights_sha256 is not None:
            self._verified_bytes()
        else:
            self.weights()

    def _verified_bytes(self) -> bytes:
        try:
            data = (self.path / "weights.pt").read_bytes()
        except FileNotFoundError:
            self._damaged("weights.pt is missing")
        except OSError as e:
            self._damaged(f"weights.pt cannot be read ({e.strerror or e})")
        if self.weights_size is not None and len(data) != self.weights_size:
            self._damaged(f"weights.pt has {len(data)} bytes, run.json recorded {self.weights_size}")
        if self.weights_sha256 is not None and hashlib.sha256(data).hexdigest() != self.weights_sha256:
            self._damaged("weights.pt fails its sha256 checksum")
        return data

    def _damaged(self, reason: str):
        if self.store is not None:
            damage = self.store._report_damage(self.key, reason, self.folder_id)
        else:
            damage = DamagedRun(self.key, reason)
        raise DamagedRunError(damage)

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
    """A folder of runs and their measure values (layout in the module docstring).

    ``heal``: move damaged runs to ``quarantine/`` (True, the default) or only report them
    (False, for read-only listings); either way a damaged run counts as missing.
    ``lease_s``: how long another host's lock counts as live without a refresh.
    ``on_damage``: called once with each DamagedRun or BadValue as it is found; by default
    :func:`print_damage` names it on stderr, so no damage passes unseen; pass ``ignore_damage``
    where the caller prints :meth:`damaged` and :meth:`bad_values` itself.
    """

    def __init__(
        self,
        root: str | Path = DEFAULT_STORE,
        *,
        heal: bool = True,
        lease_s: float = DEFAULT_LEASE_S,
        debris_age_s: float = DEBRIS_AGE_S,
        on_damage: Callable[[DamagedRun | BadValue], None] | None = None,
    ):
        if on_damage is None:
            on_damage = print_damage
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.tmp_dir = self.root / "tmp"
        self.locks_dir = self.root / "locks"
        self.quarantine_dir = self.root / "quarantine"
        self.heal, self.lease_s, self.debris_age_s, self.on_damage = heal, lease_s, debris_age_s, on_damage
        self._damaged: dict[str, DamagedRun] = {}
        self._bad_values: dict[Path, BadValue] = {}
        self._checked: dict[str, tuple[tuple, Run]] = {}  # key -> (file signature, Run)

    @classmethod
    def existing(cls, root: str | Path, **kwargs: Any) -> "RunStore":
        """The store at ``root``, which must exist: GentestError (one sentence) otherwise."""
        path = Path(root)
        if not path.exists():
            raise GentestError(f"there is no run store at {root} (the folder does not exist; give --store, "
                               "or run gentest evaluate first)")
        if not path.is_dir():
            raise GentestError(f"the run store {root} is not a folder")
        return cls(path, **kwargs)

    def __getstate__(self) -> dict[str, Any]:  # for worker processes: no callback, no caches
        state = dict(self.__dict__)
        state.update(on_damage=print_damage, _checked={}, _damaged={}, _bad_values={})
        return state

    # ---- runs ---------------------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        """Whether a healthy run ``key`` is stored (a damaged one is reported and is not)."""
        return self._healthy(key) is not None

    def save(
        self,
        spec: RunSpec,
        metrics: dict[str, Any],
        curve: list[dict[str, Any]],
        randomization: dict[str, Any],
        weights: dict[str, Any],
    ) -> Run:
        """Write a run atomically; if another process stored the same key first, keep that one
        (a damaged folder in its place is quarantined first)."""
        key = spec.key
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        staging = self.tmp_dir / locks.temp_name(key).removeprefix(".").removesuffix(".tmp")
        staging.mkdir()
        try:
            _write_synced(staging / "weights.pt", lambda f: torch.save(weights, f))
            blob = (staging / "weights.pt").read_bytes()  # what is on disk is what we vouch for
            record = {
                "schema": STORE_SCHEMA,
                "key": key,
                "spec": spec.to_dict(),
                "metrics": metrics,
                "curve": curve,
                "randomization": randomization,
                "versions": library_versions(),
                "weights": {"file": "weights.pt", "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()},
            }
            _write_synced(staging / "run.json", lambda f: f.write(json.dumps(record, indent=1).encode()))
            self._place(staging, key)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.load(key)

    def _place(self, staging: Path, key: str) -> None:
        """Rename the staged run into ``runs/``; a run already there is kept (a lost race), a
        damaged folder there is moved aside first."""
        target = self.runs_dir / key
        for attempt in range(3):
            try:
                os.rename(staging, target)
                return
            except OSError:
                if key in self:  # another process stored it first: keep that one
                    return
                if attempt == 2:
                    raise
                if target.exists():  # damaged, and reported but left in place: move it now
                    moved = self._quarantine(key, force=True)
                    if moved is not None and key in self._damaged:
                        self._damaged[key] = dataclasses.replace(self._damaged[key], moved_to=moved)

    def load(self, key: str, verify: bool = False) -> Run:
        """The stored run ``key``; GentestError if there is none, DamagedRunError if it is
        damaged. ``verify``: also check the weights' sha256 now (else when they are read)."""
        run = self._healthy(key)
        if run is None:
            if key in self._damaged:
                raise DamagedRunError(self._damaged[key])
            raise GentestError(f"no run '{key}' in the store {self.root}")
        if verify:
            run.verify()
        return run

    def keys(self) -> list[str]:
        """The keys of the healthy runs, sorted (damaged ones are reported, and left out)."""
        if not self.runs_dir.is_dir():
            return []
        names = sorted(p.name for p in self.runs_dir.iterdir() if not p.name.startswith(".") and p.is_dir())
        return [k for k in names if self._healthy(k) is not None]

    def runs(self) -> Iterator[Run]:
        for key in self.keys():
            run = self._healthy(key)
            if run is not None:
                yield run

    def damaged(self) -> list[DamagedRun]:
        """The damaged runs this store object found (and quarantined, when healing), in order."""
        return list(self._damaged.values())

    def bad_values(self) -> list[BadValue]:
        """The unusable value files this store object found (counted as missing)."""
        return list(self._bad_values.values())

    def verify(self) -> list[DamagedRun | BadValue]:
        """Check everything: every run's files including the weights' sha256, and every value
        file of every healthy run. Returns every problem found (empty when the store is sound)."""
        for key in self.keys():
            try:
                self.load(key, verify=True)
            except DamagedRunError:
                continue
            measures = self.runs_dir / key / "measures"
            if measures.is_dir():
                for path in sorted(measures.glob("*.json")):
                    self._read_value(key, path, None, None)
        return [*self._damaged.values(), *self._bad_values.values()]

    def quarantine_value(self, bad: BadValue) -> BadValue | None:
        """Move the unusable value file ``bad`` to ``quarantine/values/<key>/<file>.<UTC time>``
        (``gentest doctor --fix``), so that the store checks clean and the value is recomputed.
        The file is checked again first. Returns ``bad`` with ``moved_to`` set when moved; None
        when there is nothing left to move (another process has meanwhile replaced it with a
        sound value, which stays, or removed it); ``bad`` unchanged if it cannot be moved."""
        if self._read_value(bad.key, bad.path, None, None) is not None or not bad.path.exists():
            self._bad_values.pop(bad.path, None)
            return None
        folder = self.quarantine_dir / "values" / bad.key
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(100):
                target = folder / (f"{bad.path.name}.{stamp}" + (f".{n}" if n else ""))
                if target.exists():
                    continue
                os.rename(bad.path, target)
                moved = dataclasses.replace(bad, moved_to=target)
                self._bad_values[bad.path] = moved
                return moved
        except FileNotFoundError:  # removed meanwhile
            self._bad_values.pop(bad.path, None)
            return None
        except OSError:  # e.g. a read-only store: it stays a problem, named as before
            pass
        return bad

    # ---- measure values -----------------------------------------------------------------

    def value_path(self, key: str, measure: str, version: str) -> Path:
        safe = measure.replace("/", "_").replace(os.sep, "_")
        return self.runs_dir / key / "measures" / f"{safe}@{version}.json"

    def get_value(self, key: str, measure: str, version: str) -> MeasureValue | None:
        """The cached value of (run, measure, version); None if it was never computed or the
        file cannot be trusted (then it is listed in :meth:`bad_values` and recomputed)."""
        return self._read_value(key, self.value_path(key, measure, version), measure, version)

    def put_value(self, value: MeasureValue) -> None:
        """Write one measure value atomically (a temp file only this process names, then
        ``os.replace``), with the schema, a checksum and the run's weights' sha256."""
        path = self.value_path(value.run_key, value.measure, value.version)
        run = self._healthy(value.run_key)
        if run is None:
            raise GentestError(f"cannot store a value of {value.measure} for run {value.run_key}: "
                               f"the run is not in the store {self.root}")
        content = {"schema": STORE_SCHEMA, **value.to_json(), "run_weights_sha256": run.weights_sha256}
        content = json.loads(json.dumps(content))  # what a reader will parse, for the checksum
        content["checksum"] = _value_checksum(content)
        path.parent.mkdir(exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        staging = self.tmp_dir / locks.temp_name(path.name)
        try:
            _write_synced(staging, lambda f: f.write(json.dumps(content).encode()))
            os.replace(staging, path)
        finally:
            _unlink_quietly(staging)
        self._bad_values.pop(path, None)

    # ---- locks and debris ---------------------------------------------------------------

    def try_lock(self, key: str) -> RunLock | None:
        """Take run ``key``'s lock now (a context manager), or None if a live holder has it."""
        return locks.try_lock(self.locks_dir, key, self.lease_s)

    def lock(self, key: str, timeout: float | None = None) -> RunLock:
        """Wait for run ``key``'s lock (forever when ``timeout`` is None); LockTimeout after."""
        return locks.lock(self.locks_dir, key, timeout, self.lease_s)

    def lock_holder(self, key: str) -> dict[str, Any] | None:
        """Who holds run ``key``'s lock ``{"host", "pid", "acquired", "refreshed", ...}``, or
        None (a record left by a dead holder is returned too; ``gentest.locks.is_stale`` tells)."""
        return locks.read_holder(self.locks_dir / f"{key}.lock.json")

    def clean_debris(self) -> int:
        """Remove temp files and staging folders that no live process will finish; return how
        many. This host's are debris when their pid is dead; another host's (and names that do
        not say whose) only when older than ``debris_age_s`` (a day), as pids mean nothing there."""
        removed, now, host = 0, time.time(), locks.this_host()
        for folder, only_temp in ((self.tmp_dir, False), (self.locks_dir, True)):
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                if only_temp and not entry.name.endswith(".tmp"):
                    continue
                owner = locks.temp_owner(entry.name)
                if owner is not None and owner[0] == host:
                    debris = not locks.pid_alive(owner[1])
                else:
                    try:
                        debris = now - entry.lstat().st_mtime > self.debris_age_s
                    except FileNotFoundError:
                        continue
                if debris:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        _unlink_quietly(entry)
                    removed += 1
        return removed

    # ---- checks and healing -------------------------------------------------------------

    def _healthy(self, key: str) -> Run | None:
        """The run if its folder is sound (cheap checks: run.json whole, weights' size), None
        if missing or damaged (damage reported; quarantined when healing)."""
        folder = self.runs_dir / key
        try:
            signature = _signature(folder)
        except FileNotFoundError:
            return None
        cached = self._checked.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        run, reason = self._inspect(key, folder)
        if run is None:
            self._checked.pop(key, None)
            if reason is not None:
                self._report_damage(key, reason, signature[0])
            return None
        run = dataclasses.replace(run, folder_id=signature[0])
        self._checked[key] = (signature, run)
        return run

    def _inspect(self, key: str, folder: Path) -> tuple[Run | None, str | None]:
        """(run, None) when sound, (None, reason) when damaged, (None, None) when missing."""
        try:
            raw = (folder / "run.json").read_bytes()
        except FileNotFoundError:
            return (None, "run.json is missing") if folder.is_dir() else (None, None)
        except OSError as e:
            return None, f"run.json cannot be read ({e.strerror or e})"
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return None, "run.json is not UTF-8 text"
        except ValueError as e:
            return None, f"run.json is not valid JSON ({e})" if raw.strip() else "run.json is empty"
        if not isinstance(record, dict):
            return None, "run.json does not hold a JSON object"
        schema = record.get("schema", 0)
        if not isinstance(schema, int) or isinstance(schema, bool) or schema < 0:
            return None, f"run.json has an invalid schema {schema!r}"
        if schema > STORE_SCHEMA:
            raise NewerStoreError(
                f"the store {self.root} was written by a newer gentest (run {key} has schema {schema}; this "
                f"gentest {gentest.__version__} reads schema {STORE_SCHEMA} and older): upgrade gentest or use another --store"
            )
        for name, kind in _RECORD_FIELDS.items():
            if not isinstance(record.get(name), kind):
                return None, f"run.json lacks '{name}'" if name not in record else f"run.json's '{name}' is not a {kind.__name__}"
        if record["key"] != key:
            return None, f"run.json names another run ({record['key']})"
        missing = [m for m in _METRIC_FIELDS if m not in record["metrics"]]
        if missing:
            return None, f"run.json's metrics lack {', '.join(missing)}"
        numbers = [m for m in ("train_acc", "test_acc", "gap", "wall_s") if not _is_number(record["metrics"][m])]
        if numbers:
            return None, f"run.json's metrics {', '.join(numbers)} are not numbers"
        try:
            spec = RunSpec.from_dict(record["spec"])
        except Exception as e:
            return None, f"run.json's spec does not parse ({type(e).__name__}: {_first_line(e)})"
        size = sha = None
        if schema >= 1:
            w = record.get("weights")
            if not (isinstance(w, dict) and isinstance(w.get("size"), int) and isinstance(w.get("sha256"), str)):
                return None, "run.json lacks the size and sha256 of weights.pt"
            size, sha = w["size"], w["sha256"]
        try:
            actual = (folder / "weights.pt").stat().st_size
        except FileNotFoundError:
            return None, "weights.pt is missing"
        if size is not None and actual != size:
            return None, f"weights.pt has {actual} bytes, run.json recorded {size}"
        if size is None and actual == 0:
            return None, "weights.pt is empty"
        run = Run(
            key=key, spec=spec, metrics=record["metrics"], curve=record["curve"],
            randomization=record["randomization"], versions=record["versions"], path=folder,
            schema=schema, weights_size=size, weights_sha256=sha, store=self,
        )
        return run, None

    def _report_damage(self, key: str, reason: str, folder_id: tuple[int, int] | None) -> DamagedRun:
        """Record that run ``key`` is damaged and, when healing, quarantine it."""
        self._checked.pop(key, None)
        moved = self._quarantine(key, folder_id) if self.heal else None
        damage = DamagedRun(key, reason, moved)
        if self._damaged.get(key) != damage:
            self._damaged[key] = damage
            if self.on_damage is not None:
                self.on_damage(damage)
        return damage

    def _quarantine(self, key: str, folder_id: tuple[int, int] | None = None, force: bool = False) -> Path | None:
        """Move ``runs/<key>`` to ``quarantine/<key>.<UTC time>``, holding the run's lock so that
        no process trains or stores it meanwhile. Only the folder that was judged damaged is
        moved (``folder_id``): if another process has meanwhile put a fresh run in its place,
        that one stays. None when nothing was moved (locked elsewhere, or already gone)."""
        if not (self.heal or force):
            return None
        held = None
        if not locks.held_here(self.locks_dir, key):
            held = self.try_lock(key)
            if held is None:
                return None  # its holder is busy with it (retraining, most likely)
        try:
            folder = self.runs_dir / key
            try:
                st = folder.stat()
            except FileNotFoundError:
                return None
            if folder_id is not None and (st.st_dev, st.st_ino) != folder_id:
                return None
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            for n in range(100):
                target = self.quarantine_dir / (f"{key}.{stamp}" + (f".{n}" if n else ""))
                if target.exists():
                    continue
                try:
                    os.rename(folder, target)
                except FileNotFoundError:
                    return None
                except OSError:
                    if target.exists():
                        continue
                    raise
                self._checked.pop(key, None)
                return target
            raise GentestError(f"cannot quarantine run {key}: too many quarantined copies in {self.quarantine_dir}")
        finally:
            if held is not None:
                held.release()

    def _read_value(self, key: str, path: Path, measure: str | None, version: str | None) -> MeasureValue | None:
        """The value in ``path`` if sound; None (and a BadValue) otherwise. ``measure`` and
        ``version`` None: whatever the file holds, as long as it sits where they say."""
        named_measure, _, named_version = path.stem.rpartition("@")
        shown = (measure or named_measure, version or named_version)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            return self._bad_value(key, *shown, path, f"cannot be read ({e.strerror or e})")
        value, reason = _parse_value(raw, key, measure, version, self._healthy(key))
        if reason is None and path != self.value_path(key, value.measure, value.version):
            reason = f"it names {value.measure}@{value.version}, another measure or version than its file"
        if reason is not None:
            return self._bad_value(key, *shown, path, reason)
        self._bad_values.pop(path, None)
        return value

    def _bad_value(self, key: str, measure: str, version: str, path: Path, reason: str) -> None:
        bad = BadValue(key, measure, version, path, reason)
        if self._bad_values.get(path) != bad:
            self._bad_values[path] = bad
            if self.on_damage is not None:
                self.on_damage(bad)
        return None


def _parse_value(raw: bytes, key: str, measure: str | None, version: str | None, run: Run | None) -> tuple[MeasureValue | None, str | None]:
    """(value, None) if ``raw`` is a sound value file of (key, measure, version), else (None, why)."""
    try:
        d = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except ValueError:
        return None, "empty" if not raw.strip() else "not valid JSON"
    if not isinstance(d, dict):
        return None, "not a JSON object"
    schema = d.get("schema", 0)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 0:
        return None, f"invalid schema {schema!r}"
    if schema > STORE_SCHEMA:
        raise NewerStoreError(
            f"a value file of run {key} has schema {schema}, written by a newer gentest (this gentest "
            f"{gentest.__version__} reads schema {STORE_SCHEMA} and older): upgrade gentest or use another --store"
        )
    kinds = {"run_key": (str,), "measure": (str,), "version": (str,), "value": (int, float, type(None)),
             "error": (str, type(None)), "seconds": (int, float)}
    for name, kind in kinds.items():
        if name not in d:
            return None, f"lacks '{name}'"
        if not isinstance(d[name], kind) or isinstance(d[name], bool):
            return None, f"'{name}' has the wrong type"
    if not isinstance(d.get("not_applicable", False), bool) or not isinstance(d.get("extra", {}), dict):
        return None, "'not_applicable' or 'extra' has the wrong type"
    if d["value"] is None and d["error"] is None:
        return None, "holds neither a value nor an error"
    if d["value"] is not None and not math.isfinite(d["value"]):
        return None, "holds a value that is not finite"
    if d["run_key"] != key:
        return None, f"names another run ({d['run_key']})"
    if measure is not None and d["measure"] != measure:
        return None, f"names another measure ({d['measure']})"
    if version is not None and d["version"] != version:
        return None, f"names another version ({d['version']})"
    if schema >= 1:
        if d.get("checksum") != _value_checksum(d):
            return None, "fails its checksum (edited after it was written)"
        expected = run.weights_sha256 if run is not None else None
        if expected is not None and d.get("run_weights_sha256") != expected:
            return None, "was computed on other weights than the run's"
    value = MeasureValue(
        run_key=d["run_key"], measure=d["measure"], version=d["version"],
        value=float(d["value"]) if d["value"] is not None else None, error=d["error"], seconds=float(d["seconds"]),
        not_applicable=d.get("not_applicable", False), extra=d.get("extra", {}),
    )
    return value, None


def print_damage(problem: DamagedRun | BadValue) -> None:
    """The default ``on_damage``: one line on stderr, as the command line words its messages."""
    print(f"gentest: {problem}", file=sys.stderr, flush=True)


def ignore_damage(problem: DamagedRun | BadValue) -> None:
    """An ``on_damage`` for callers that list :meth:`RunStore.damaged` themselves."""


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _value_checksum(content: dict[str, Any]) -> str:
    body = {k: v for k, v in content.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _signature(folder: Path) -> tuple:
    """What identifies the current contents of a run folder cheaply (stat only)."""
    st = folder.stat()
    parts: list[Any] = [(st.st_dev, st.st_ino)]
    for name in ("run.json", "weights.pt"):
        try:
            s = (folder / name).stat()
            parts.append((s.st_ino, s.st_size, s.st_mtime_ns))
        except FileNotFoundError:
            parts.append(None)
    return tuple(parts)


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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _write_synced(path: Path, write) -> None:
    with open(path, "xb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
