"""A run's output folder: what may be replaced, what is set aside, and how its files are written.

``train --force`` never deletes the old run before the new one exists: it is moved into a hidden folder
of the run and comes back if the new run fails before writing its first checkpoint. Leftovers of a
killed run (its set-aside run, half-written temp files) are dealt with on the next start. Every file is
written atomically (``sqakd_edge.atomic``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..atomic import atomic_write, atomic_write_text, prepare_output_dir
from ..errors import ConfigError
from ..stale import remove_stale, restore_set_aside
from .distributed import DistInfo

RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "summary.json")


def prepare_run_dir(out_dir: Path, *, resume: bool, force: bool, info: DistInfo) -> Path | None:
    """Refuse to overwrite another run; return the checkpoint to resume from, if any."""
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if resume:
        last = out_dir / "last.pt"
        if not last.exists():
            raise ConfigError(f"--resume: {out_dir} holds no last.pt to resume from; drop --resume to start a new run")
        return last
    if existing and not force:
        raise ConfigError(f"{out_dir} already holds a run ({', '.join(existing)}); pass --resume to continue it, "
                          "--force to replace it, or choose another --out")
    if info.is_main:
        prepare_output_dir(out_dir, "the run")
    return None


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy through a fresh temp file (never a fixed name a link could be planted at) and a rename."""
    with open(src, "rb") as inp:
        atomic_write(dst, lambda out: shutil.copyfileobj(inp, out))


def _set_aside(out_dir: Path, force: bool, resume: bool, info: DistInfo) -> Path | None:
    """``--force``: move the old run into a hidden folder of ``out_dir`` (not deleted before its replacement exists)."""
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    if not (force and existing and not resume and info.is_main):
        return None
    aside = Path(tempfile.mkdtemp(prefix=".replaced-run.", dir=out_dir))
    for name in existing:
        os.replace(out_dir / name, aside / name)
    return aside


@contextlib.contextmanager
def replacing_run(out: Path, *, force: bool, resume: bool, info: DistInfo,
                  log: Callable[[str], None]) -> Iterator[None]:
    """Around a run in ``out``: leftovers cleaned, an old run set aside under ``force`` and put back on failure.

    The old run comes back if the new one fails before writing its first checkpoint (a data error must not
    leave the user with nothing); a run that failed before writing anything leaves no empty folder.
    """
    existed = out.exists()
    if info.is_main and existed:  # leftovers of a killed run here: its set-aside run back, its temp files gone
        restored = restore_set_aside(out, ".replaced-run.*", "last.pt")
        if restored:
            log(f"note: restored {', '.join(restored)} that a killed 'train --force' had set aside")
        remove_stale(out, [f".{name}.*.tmp" for name in RUN_FILES])
    aside = _set_aside(out, force, resume, info)
    try:
        yield
    except BaseException:
        if aside is not None:  # the old run comes back unless the new one already wrote its first checkpoint
            restore_set_aside(out, aside.name, "last.pt")
        if not existed and info.is_main:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    if aside is not None:  # the new run has its checkpoints: the old one goes
        restore_set_aside(out, aside.name, "last.pt")


def write_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one JSON row per epoch."""
    text = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write_text(out_dir / "metrics.jsonl", text)


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    """``summary.json``: the run at a glance (best and last epoch, settings, layers)."""
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
