"""Leftovers of our own runs that were killed: temp files, half-committed exports, runs set aside by --force.

Every write of ours goes through a temp name and a rename, so a ``kill -9`` leaves at most a hidden temp
file or folder, never a damaged output. The next run in the same place tidies them: temp files old enough
that no live run is still writing them are removed, and anything that still holds the user's data (an old
export moved aside, a run set aside by ``train --force``) is put back first when nothing replaced it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path

# a live run rewrites its temp files within seconds; one untouched for this long belongs to a dead run
STALE_AFTER_S = 3600.0


def _old(path: Path, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def remove_stale(folder: Path, patterns: Iterable[str]) -> list[str]:
    """Remove files and folders in ``folder`` matching ``patterns`` that no live run can still be writing.

    Links are removed as links (never followed). Returns the names removed.
    """
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for pattern in patterns:
        for path in folder.glob(pattern):
            if not _old(path, now):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def restore_set_aside(folder: Path, pattern: str, marker: str, inner: str | None = None) -> list[str]:
    """Put back what a killed run set aside in ``folder`` (``pattern``) if nothing replaced it.

    ``marker``: the file or folder whose presence means the new output exists (then the set-aside copy is
    dropped). ``inner``: the name inside the set-aside folder that holds the data (None: its files).
    Returns the names restored.
    """
    restored: list[str] = []
    for aside in sorted(folder.glob(pattern)) if folder.is_dir() else []:
        if not aside.is_dir() or aside.is_symlink():
            continue
        target = folder / marker
        if not target.exists():
            if inner is not None:
                if (aside / inner).exists():
                    (aside / inner).rename(target)
                    restored.append(marker)
            else:
                for path in aside.iterdir():
                    if not (folder / path.name).exists():
                        path.rename(folder / path.name)
                        restored.append(path.name)
        shutil.rmtree(aside, ignore_errors=True)
    return restored
