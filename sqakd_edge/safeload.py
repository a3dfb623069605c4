"""Loading ``.pt`` files safely: ``torch.load(weights_only=True)``, every failure one line.

A file from elsewhere (a teacher's weights, a checkpoint to resume) could hold pickled code; the safe
loader refuses anything but tensors and plain containers, and this module turns its refusals and every
other failure (text files, truncated zips, random bytes) into a :class:`~sqakd_edge.errors.CheckpointError`
that says what the file holds and never suggests ``weights_only=False``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from . import errors
from .errors import CheckpointError

SAVE_HINT = ("save the weights as a state_dict in your own code: torch.save(model.state_dict(), 'weights.pt'), "
             "then pass that file")


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_error_text(exc: BaseException) -> str:
    """``Type: first line`` of an exception, without terminal escapes or torch's advice to load unsafely."""
    text = errors.first_line(exc, limit=400).split("Re-running `torch.")[0].strip()[:160]
    return f"{type(exc).__name__}: {text}" if text and text != type(exc).__name__ else type(exc).__name__


def read_torch_file(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, or one line naming what is wrong.

    Raises:
        CheckpointError: missing, a TorchScript file, pickled objects a safe load refuses, corrupt or not a
            PyTorch file.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; pass a .pt file (a checkpoint of 'sqakd-edge train' or a "
                              "state_dict)")
    if is_torchscript(p):
        raise CheckpointError(f"{p} is a TorchScript file (torch.jit.save); sqakd-edge needs the float model's "
                              f"weights to build a student from: {SAVE_HINT}")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise CheckpointError(
                f"{p} is not a safe PyTorch file: it holds an object of class {found.group(1)}, which a safe load "
                f"(weights_only=True) refuses because unpickling it would run code; do not load it with "
                f"weights_only=False: {SAVE_HINT}") from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(exc))
        reason = detail.group(1).strip()[:120] if detail else _load_error_text(exc)
        raise CheckpointError(f"{p} is corrupt, truncated or not a PyTorch file ({reason}); pass a .pt file "
                              "written by torch.save") from None
    except Exception as exc:  # truncated zips, text files, random bytes: torch raises many types
        raise CheckpointError(f"{p} is corrupt, truncated or not a PyTorch file ({_load_error_text(exc)}); pass a "
                              ".pt file written by torch.save") from None
