"""What a grid's runs are doing, read from the store alone (``gentest status``).

A run is *done* when the store holds it, *running* while a process holds its lock, *failed*
when the last attempt left a failure record (``<store>/failed/<key>.json``; cleared when the
run later lands), and *pending* otherwise. Works the same for local pools and Slurm arrays,
also after the submitting process has gone (``--no-wait``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gentest.executors.work import UnitResult
from gentest.locks import describe_holder, is_stale


def _failed_dir(store_root: str | Path) -> Path:
    return Path(store_root) / "failed"


def record_failure(store_root: str | Path, result: UnitResult) -> None:
    folder = _failed_dir(store_root)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{result.key}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"key": result.key, "label": result.label, "message": result.message,
                               "host": result.host}))
    os.replace(tmp, folder / f"{result.key}.json")


def clear_failure(store_root: str | Path, key: str) -> None:
    (_failed_dir(store_root) / f"{key}.json").unlink(missing_ok=True)


def failures(store_root: str | Path) -> dict[str, dict[str, Any]]:
    folder = _failed_dir(store_root)
    out = {}
    if folder.is_dir():
        for f in sorted(folder.glob("*.json")):
            try:
                out[f.stem] = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
    return out


def grid_status(store, specs) -> list[dict[str, Any]]:
    """One row per spec: key, label, state (done / running / failed / pending), message."""
    failed = failures(store.root)
    rows = []
    for spec in specs:
        key = spec.key
        if key in store:
            state, message = "done", ""
        elif (holder := _live_holder(store, key)) is not None:
            state, message = "running", describe_holder(holder)
        elif key in failed:
            state, message = "failed", failed[key].get("message", "")
        else:
            state, message = "pending", ""
        rows.append({"key": key, "label": spec.label(), "state": state, "message": message})
    return rows


def _live_holder(store, key: str) -> dict[str, Any] | None:
    """Who holds the run's lock (host, pid, since when), unless the holder is gone."""
    holder = store.lock_holder(key)
    return holder if holder is not None and not is_stale(holder, store.lease_s) else None
