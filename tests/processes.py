"""Helpers for tests that kill processes: find a command's pool workers and wait for a
process that is not our child to be gone (events, not sleeps, where the kernel offers them)."""

from __future__ import annotations

import os
import select
import time
from pathlib import Path


def workers_of(pid: int) -> list[int]:
    """The pool's worker processes: children of ``pid`` started by multiprocessing's spawn."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            out.append(int(stat.parent.name))
    return out


def _exited(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (it runs no more code either way)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` (any process, not only a child) has exited; False if it still
    runs after ``timeout`` seconds (a hang guard, not a measure of speed)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):  # no pidfd here: look every 10 ms
        deadline = time.monotonic() + timeout
        while not _exited(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])  # readable once the process has exited
    finally:
        os.close(fd)
