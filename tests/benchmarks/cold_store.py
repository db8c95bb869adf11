"""A cold copy of a benchmark's store: the runs without their measured values."""

from __future__ import annotations

import shutil
from pathlib import Path

from gentest.store import RunStore


def cold_copy(folder: Path, store: RunStore) -> RunStore:
    """``store`` copied to ``folder/cold`` (replacing any earlier copy) with every cached value
    dropped, so that an evaluation there measures from scratch."""
    target = folder / "cold"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(store.root, target)
    for values in (target / "runs").glob("*/measures"):
        shutil.rmtree(values)
    return RunStore(target)
