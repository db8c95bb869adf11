"""Checks of command-line input that must fail before any work starts.

A path that cannot be written or a malformed ``--measures`` list is found at the start of a
command, in one sentence (:class:`GentestError`, exit 2), not after a run has trained or a
whole evaluation has finished.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

from gentest.errors import GentestError


def check_writable_dir(path: str | Path, what: str) -> None:
    """Raise unless ``path`` is a folder gentest can write into, or can be created as one.

    Nothing is left behind: an existing folder gets a probe file, removed at once; for a folder
    that does not exist yet, its nearest existing parent must be a folder that accepts a new
    folder (probed the same way). ``what`` names the option in the message ("--store").
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise GentestError(f"{what} {path} is a file, not a folder")
    existing = path.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise GentestError(f"{what} {path} cannot be created: {existing} is a file, not a folder")
    try:
        if existing == path.absolute():
            fd, probe = tempfile.mkstemp(prefix=".gentest-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
        else:
            os.rmdir(tempfile.mkdtemp(prefix=".gentest-probe-", dir=existing))
    except OSError as e:
        where = "" if existing == path.absolute() else f" (it would be created in {existing})"
        raise GentestError(f"{what} {path} is not writable{where}: {e.strerror or e}") from None


def check_existing_store(path: str | Path) -> None:
    """Raise unless ``path`` is an existing store folder (for commands that only read one)."""
    path = Path(path)
    if not path.exists():
        raise GentestError(f"no store at {path}: the folder does not exist (give --store, or run gentest evaluate first)")
    if not path.is_dir():
        raise GentestError(f"--store {path} is a file, not a store folder")


def parse_measure_names(text: str | None) -> list[str] | None:
    """``--measures a,b``: the names in order; None when the option was not given.

    An empty list (``--measures ,``), an empty name (``a,,b``) or a name given twice is an error:
    each would otherwise silently mean something else (everything, or a duplicate column).
    """
    if text is None:
        return None
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise GentestError(f"--measures {text!r} names no measure; give comma-separated names (see gentest measures)")
    if not all(names):
        raise GentestError(f"--measures {text!r} has an empty name between commas")
    twice = [n for i, n in enumerate(names) if n in names[:i]]
    if twice:
        raise GentestError(f"--measures lists '{twice[0]}' twice")
    return names


def needs_data_root(dataset_names: Iterable[str]) -> bool:
    """Whether any of these datasets reads files from the data root (every dataset except the
    ones gentest generates itself, e.g. mnist1d and synthetic)."""
    from gentest.datasets import dataset_info

    return any(dataset_info(name).loader.__module__ != "gentest.datasets" for name in dataset_names)
