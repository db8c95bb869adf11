"""Per-run locks that many processes on many hosts can share on one file system.

A run must be trained once however many processes ask for it (DESIGN.md: the unit of parallel
work is one run). A lock for run ``KEY`` of a store is two things under ``<store>/locks/``:

``KEY.lock``
    an OS lock (the ``filelock`` package, i.e. ``flock``). On one host it is exact and the
    kernel drops it when its holder dies, however it dies. Across hosts it is exact where the
    shared file system forwards locks (NFSv4, Lustre or BeeGFS mounted with ``flock``, GPFS).
``KEY.lock.json``
    the holder's record, ``{"host", "pid", "acquired", "refreshed", "token"}``, created
    exclusively with ``os.link`` (atomic on NFS too), so that a file system that does not
    forward locks still lets only one process claim a run, and so that anyone can see who
    holds it. A record is broken (taken over) only when

    - its host is this host and its pid is no longer alive (the holder died), or
    - its host is another one and it has not been refreshed for a whole lease (default
      6 hours); pids mean nothing across hosts, so time is the only evidence there.

    A holder refreshes its record from a daemon thread every ``lease / 6``, so a run that
    trains for longer than a lease on a cluster keeps its claim. A holder that is frozen or
    cut off from the file system for a whole lease loses it; the worst outcome is then one
    run trained twice, which the store absorbs (the first copy stored is kept).

Clocks of different hosts are compared only against the lease; skews of minutes do not matter.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from gentest.errors import GentestError

DEFAULT_LEASE_S = 6 * 3600.0

# Record files this process holds (absolute paths): a process that holds a run's lock may
# repair that run (quarantine it) without taking the lock a second time.
_HELD_HERE: set[str] = set()
os.register_at_fork(after_in_child=_HELD_HERE.clear)  # a forked child holds none of them


class LockTimeout(GentestError, TimeoutError):
    """``RunStore.lock(key, timeout=...)`` waited ``timeout`` seconds and the run stayed locked."""


def this_host() -> str:
    """The host name as it appears in lock records and staging names: letters, digits and
    ``-`` only (dots and anything else become ``_``), so names split unambiguously on dots."""
    return re.sub(r"[^A-Za-z0-9-]", "_", socket.gethostname()) or "unknown-host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie counts as alive until reaped)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def temp_name(base: str) -> str:
    """A name no other process or host can pick: ``.<base>.<host>.<pid>.<random>.tmp``.
    ``gentest.store`` parses the host and pid back to tell debris from work in progress."""
    return f".{base}.{this_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def temp_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a name made by :func:`temp_name` (or a staging folder name
    ``<key>.<host>.<pid>.<random>``); None when the name does not say."""
    parts = name.removeprefix(".").removesuffix(".tmp").rsplit(".", 3)
    if len(parts) == 4 and parts[2].isdigit() and parts[1]:
        return parts[1], int(parts[2])
    return None


class RunLock:
    """A held per-run lock: a context manager; :meth:`release` is idempotent.

    ``lost`` turns true if a refresh found the record taken over by another process (this
    holder was cut off for longer than the lease); the run's work is then possibly duplicated,
    never corrupted.
    """

    def __init__(self, key: str, os_lock: FileLock, record: Path, info: dict[str, Any], lease_s: float):
        self.key = key
        self.record = record
        self.info = info
        self.lease_s = lease_s
        self.lost = False
        self._os_lock = os_lock
        self._stop = threading.Event()
        self._released = False
        _HELD_HERE.add(str(record))
        self._heartbeat = threading.Thread(target=self._beat, name=f"gentest-lock-{key}", daemon=True)
        self._heartbeat.start()

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({self.key!r}, held={not self._released})"

    @property
    def held(self) -> bool:
        return not self._released

    def refresh(self) -> None:
        """Renew the lease: rewrite the record's ``refreshed`` time (atomically)."""
        if self._released:
            return
        current = read_holder(self.record)
        if current is None or current.get("token") != self.info["token"]:
            self.lost = True
            return
        self.info = {**self.info, "refreshed": time.time()}
        tmp = self.record.parent / temp_name(self.record.name)
        try:
            _write_new(tmp, self.info)
            os.replace(tmp, self.record)
        finally:
            _unlink_quietly(tmp)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.info["pid"] != os.getpid():
            # A forked child inherited this object: the lock (its open file, its record) is the
            # parent's to release; unlocking here would release it under the parent's feet.
            return
        self._stop.set()
        if self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)
        _HELD_HERE.discard(str(self.record))
        try:
            current = read_holder(self.record)
            if current is not None and current.get("token") == self.info["token"]:  # ours, not a taker's
                _unlink_quietly(self.record)
        finally:
            self._os_lock.release()

    def _beat(self) -> None:
        interval = max(self.lease_s / 6, 0.05)
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except OSError:  # a file-system hiccup: the next beat tries again
                pass


def try_lock(locks_dir: Path, key: str, lease_s: float = DEFAULT_LEASE_S) -> RunLock | None:
    """Take the lock of run ``key`` now, or return None if a live holder has it."""
    locks_dir.mkdir(parents=True, exist_ok=True)
    os_lock = FileLock(str(locks_dir / f"{key}.lock"))
    try:
        os_lock.acquire(timeout=0)
    except Timeout:
        return None
    try:
        record = locks_dir / f"{key}.lock.json"
        now = time.time()
        info = {"key": key, "host": this_host(), "pid": os.getpid(), "acquired": now, "refreshed": now,
                "token": secrets.token_hex(8)}
        if not _claim(record, info, lease_s):
            os_lock.release()
            return None
        return RunLock(key, os_lock, record, info, lease_s)
    except BaseException:
        os_lock.release()
        raise


def lock(locks_dir: Path, key: str, timeout: float | None = None, lease_s: float = DEFAULT_LEASE_S) -> RunLock:
    """Wait for the lock of run ``key`` (forever when ``timeout`` is None); LockTimeout after."""
    start, pause = time.monotonic(), 0.05
    while True:
        held = try_lock(locks_dir, key, lease_s)
        if held is not None:
            return held
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            holder = describe_holder(read_holder(locks_dir / f"{key}.lock.json"))
            raise LockTimeout(f"run {key} stayed locked{holder} for {timeout:g} s")
        time.sleep(min(pause, timeout - waited) if timeout is not None else pause)
        pause = min(pause * 2, 1.0)


def held_here(locks_dir: Path, key: str) -> bool:
    """Whether this process holds the lock of run ``key``."""
    return str(locks_dir / f"{key}.lock.json") in _HELD_HERE


def read_holder(record: Path) -> dict[str, Any] | None:
    """The holder record, None if there is none, ``{"unreadable": True, ...}`` if it does not parse."""
    try:
        raw = record.read_bytes()
        mtime = record.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        info = json.loads(raw.decode("utf-8"))
        if not isinstance(info, dict):
            raise ValueError
        return info
    except ValueError:  # includes UnicodeDecodeError and JSONDecodeError
        return {"unreadable": True, "refreshed": mtime}


def describe_holder(info: dict[str, Any] | None) -> str:
    if not info or info.get("unreadable"):
        return ""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("acquired", 0))))
    return f" by {info.get('host')} pid {info.get('pid')} since {since}"


def is_stale(info: dict[str, Any], lease_s: float, now: float | None = None) -> bool:
    """Whether a holder record may be broken: a dead pid on this host, else an expired lease."""
    now = time.time() if now is None else now
    host, pid = info.get("host"), info.get("pid")
    if host == this_host() and isinstance(pid, int) and not pid_alive(pid):
        return True
    try:
        refreshed = float(info.get("refreshed", info.get("acquired")))
    except (TypeError, ValueError):
        return True  # a record that says nothing usable cannot hold a run forever
    return now - refreshed > lease_s


def _claim(record: Path, info: dict[str, Any], lease_s: float) -> bool:
    for _ in range(3):
        if _link_exclusive(record, info):
            return True
        holder = read_holder(record)
        if holder is None:
            continue  # released between our two looks
        if not is_stale(holder, lease_s):
            return False
        if not _break(record, holder):
            return False
    return False


def _link_exclusive(record: Path, info: dict[str, Any]) -> bool:
    """Create ``record`` with ``info`` in it, whole, unless it exists (write a temp, hard-link)."""
    tmp = record.parent / temp_name(record.name)
    try:
        _write_new(tmp, info)
        try:
            os.link(tmp, record)
        except FileExistsError:
            return False
        except OSError:
            # NFS may report an error for a link that succeeded; the link count tells.
            if os.stat(tmp).st_nlink != 2:
                raise
        return True
    finally:
        _unlink_quietly(tmp)


def _break(record: Path, stale: dict[str, Any]) -> bool:
    """Remove the stale record ``stale``; False if what we moved turned out to be a fresh one
    (another breaker won the race and claimed it meanwhile), which is then put back."""
    aside = record.parent / temp_name(record.name + ".broken")
    try:
        os.rename(record, aside)
    except FileNotFoundError:
        return True  # someone else removed it; claim again
    moved = read_holder(aside)
    if moved is not None and moved.get("token") == stale.get("token"):
        _unlink_quietly(aside)
        return True
    try:
        os.link(aside, record)  # put the live holder's record back
    except OSError:
        pass
    _unlink_quietly(aside)
    return False


def _write_new(path: Path, info: dict[str, Any]) -> None:
    with open(path, "xb") as f:
        f.write(json.dumps(info).encode())
        f.flush()
        os.fsync(f.fileno())


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
