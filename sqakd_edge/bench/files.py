"""Atomic output files: a reader sees the old file or the new one, never half of either.

Each file is written to a temporary sibling and moved over the target with :func:`os.replace`,
which is atomic on one file system. An interrupted write (Ctrl-C, a crash) leaves only the
temporary file, which is removed on the way out.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: the target file; its folder must exist.
        data: the complete contents.

    Returns:
        ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, document: Any) -> Path:
    """Write ``document`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(document, indent=2, sort_keys=False) + "\n")
