"""Checkpoints: written atomically, loaded safely (``weights_only=True``), rebuilt into models.

A checkpoint is a plain dict of tensors and JSON-like values (see :func:`make_checkpoint`), so it loads
with ``torch.load(..., weights_only=True)``: a file from elsewhere cannot run code on load. The teacher
is never inside a student's checkpoint; its path and hash are.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import QuantConfig, from_dict
from ..errors import CheckpointError
from ..hashing import file_sha256  # noqa: F401 -- re-exported: train and export record teacher hashes

FORMAT = "sqakd-edge-checkpoint"
VERSION = 1
KINDS = ("fp", "student")


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a run's files are ordinary files (as open() makes)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Save atomically: a crash mid-write leaves the previous file intact."""
    atomic_write_bytes(Path(path), lambda f: torch.save(checkpoint, f))


def load_checkpoint(path: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """Load and check a sqakd-edge checkpoint.

    Args:
        path: the ``.pt`` file.
        kind: require ``fp`` or ``student`` (None: either).

    Returns:
        The checkpoint dict (tensors on the CPU).

    Raises:
        CheckpointError: missing, truncated, corrupt, foreign, from a newer version, or of the wrong kind.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; pass the .pt file written by 'sqakd-edge train'")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, KeyError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {p} is corrupt, truncated or not a safe PyTorch file ({first[:160]}); "
            "re-run training or pass another file"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a sqakd-edge checkpoint (no '{FORMAT}' header); pass a file written by "
                              "'sqakd-edge train'")
    if int(ckpt.get("version", 0)) > VERSION:
        raise CheckpointError(f"{p} was written by a newer sqakd-edge (format {ckpt['version']}); upgrade sqakd-edge")
    if kind is not None and ckpt.get("kind") != kind:
        want = "a float teacher (train --fp)" if kind == "fp" else "a quantized student"
        raise CheckpointError(f"{p} holds a '{ckpt.get('kind')}' model, but {want} is needed here")
    return ckpt


def quant_config_of(ckpt: dict[str, Any]) -> QuantConfig:
    """The student's :class:`QuantConfig` as its checkpoint records it."""
    # Keys a checkpoint written before the option existed lacks: the student it holds had no such thing.
    return from_dict(QuantConfig, {"residual_bits": 0, "share_residual_stream": False, **ckpt["quant"]})


def build_model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The model a checkpoint holds (float, or fake-quant for students), weights loaded, in eval mode.

    Raises:
        CheckpointError: when the weights do not fit the architecture the checkpoint names.
    """
    from ..models import create_model
    from ..quant import prepare_qat

    meta = ckpt["model"]
    model = create_model(meta["name"], num_classes=meta["num_classes"], in_channels=meta["in_channels"])
    if ckpt["kind"] == "student":
        model = prepare_qat(model, quant_config_of(ckpt))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit model {meta['name']!r}: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    return model.eval()


def model_meta(name: str, num_classes: int, in_channels: int, input_size: int) -> dict[str, Any]:
    """The ``model`` block of a checkpoint."""
    return {"name": name, "num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
