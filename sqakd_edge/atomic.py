"""Atomic output files: a reader sees the old file or the new one, never half of either.

Each file is written to a fresh temporary sibling (``mkstemp``: never a fixed name a link could be planted
at), flushed to disk, given the mode ``open()`` would give it under the umask, and moved over the target
with :func:`os.replace`, which is atomic on one file system and replaces a link rather than writing through
it. An interrupted write (Ctrl-C, a crash, a full disk) leaves no temporary file behind. The one writer of
the package: checkpoints, metrics, exports' summaries, bench results.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temp file beside ``path``, then rename it over ``path``.

    Args:
        path: the target file; its folder must exist.
        write: writes the complete contents to the binary file object it is given.

    Returns:
        ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files, as open() makes them
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def make_writable_dir(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (and its parents) and write a probe file into it now, before long work would fail there.

    Raises:
        OSError: a read-only mount, a file in the path, a missing permission (callers say it in one line).
    """
    Path(path).mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=path)
    os.close(fd)
    os.unlink(probe)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], document: Any) -> Path:
    """Write ``document`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(document, indent=2, sort_keys=False) + "\n")


def prepare_output_dir(path: Path, holds: str) -> None:
    """Make ``--out`` ``path`` and prove it writable now, not after the first epoch or timed round.

    A file in its place, a read-only mount, a file in the path or a missing permission is one line naming
    the folder and ``holds`` (what goes there: "the run", "the results").
    """
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; pass a folder for {holds}")
    try:
        make_writable_dir(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {holds} to --out {path} ({exc.strerror or exc}); choose a writable "
                          "folder") from None
