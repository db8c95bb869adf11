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


RACING = Path(__file__).parent / "racing"


def racer_env(race_dir: Path, racer: str, n: int) -> dict[str, str]:
    """The environment of one of ``n`` racing gentest commands (see tests/racing/sitecustomize.py)."""
    path = os.pathsep.join(filter(None, [str(RACING), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "GENTEST_RACE_DIR": str(race_dir), "GENTEST_RACER": racer,
            "GENTEST_RACE_N": str(n)}


def race_log(race_dir: Path) -> list[tuple[str, int, str, str, float]]:
    """(racer, pid, "start" | "end", run key, time) per line of the racers' log."""
    rows = []
    for line in (race_dir / "log").read_text().splitlines():
        racer, pid, event, key, when = line.split()
        rows.append((racer, int(pid), event, key, float(when)))
    return rows


def assert_racers_overlapped_and_each_trained(race_dir: Path, racers: list[str]) -> dict[str, list[str]]:
    """Each racer's first training overlapped every other's (all were inside training at once)
    and each racer trained at least one run; returns the keys each trained."""
    rows = race_log(race_dir)
    first = {}
    for racer in racers:
        starts = [r for r in rows if r[0] == racer and r[2] == "start"]
        assert starts, f"{racer} trained nothing"
        _, pid, _, key, began = starts[0]
        ended = next(r[4] for r in rows if r[1] == pid and r[2] == "end" and r[3] == key)
        first[racer] = (began, ended)
    assert max(b for b, _ in first.values()) < min(e for _, e in first.values()), f"no overlap: {first}"
    return {racer: [r[3] for r in rows if r[0] == racer and r[2] == "end"] for racer in racers}
