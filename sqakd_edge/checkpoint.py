"""Checkpoints: written atomically, loaded safely (``weights_only=True``), rebuilt into models.

A checkpoint is a plain dict of tensors and JSON-like values (see :func:`make_checkpoint`), so it loads
with ``torch.load(..., weights_only=True)``: a file from elsewhere cannot run code on load. The teacher
is never inside a student's checkpoint; its path and hash are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .config import QuantConfig, from_dict
from .errors import CheckpointError, ConfigError, first_line
from .hashing import file_sha256  # noqa: F401 -- re-exported: train and export record teacher hashes
from .safeload import read_torch_file

FORMAT = "sqakd-edge-checkpoint"
VERSION = 1
KINDS = ("fp", "student")


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Save atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(checkpoint, f))


def load_checkpoint(path: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """Load and check a sqakd-edge checkpoint.

    Args:
        path: the ``.pt`` file.
        kind: require ``fp`` or ``student`` (None: either).

    Returns:
        The checkpoint dict (tensors on the CPU).

    Raises:
        CheckpointError: missing, truncated, corrupt, foreign, from a newer version, malformed, or of the wrong
            kind (one line each, never a traceback).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist; pass the .pt file written by 'sqakd-edge train'")
    return check_checkpoint(read_torch_file(p), p, kind=kind)


def is_checkpoint(obj: Any) -> bool:
    """Whether a loaded object is a sqakd-edge checkpoint (by its header)."""
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def check_checkpoint(ckpt: Any, p: Path, *, kind: str | None = None) -> dict[str, Any]:
    """Check the structure of a loaded checkpoint (what every later step reads), or raise one line."""
    if not is_checkpoint(ckpt):
        raise CheckpointError(f"{p} is not a sqakd-edge checkpoint (no '{FORMAT}' header); pass a file written by "
                              "'sqakd-edge train' (a plain state_dict of your own model goes with --model)")
    version = ckpt.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{p} has a malformed header (version {version!r}); re-run training")
    if version > VERSION:
        raise CheckpointError(f"{p} was written by a newer sqakd-edge (format {version}); upgrade sqakd-edge")
    if ckpt.get("kind") not in KINDS:
        raise CheckpointError(f"{p} has an unknown kind {ckpt.get('kind')!r} (expected one of {', '.join(KINDS)}); "
                              "re-run training")
    meta = ckpt.get("model")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or \
            not all(isinstance(meta.get(k), int) and not isinstance(meta.get(k), bool) and meta[k] > 0
                    for k in ("num_classes", "in_channels", "input_size")):
        raise CheckpointError(f"{p} has a malformed 'model' block ({str(meta)[:80]}); re-run training")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p} holds no weights (its state_dict is {type(state).__name__}); re-run training")
    if ckpt["kind"] == "student" and not isinstance(ckpt.get("quant"), dict):
        raise CheckpointError(f"{p} is a student checkpoint without its quantization settings ('quant'); re-run "
                              "training")
    for key, kinds in (("data", (dict, type(None))), ("train", (dict, type(None))), ("best", (dict, type(None))),
                       ("history", (list, type(None)))):
        if not isinstance(ckpt.get(key), kinds):
            raise CheckpointError(f"{p} has a malformed '{key}' block; re-run training")
    if kind is not None and ckpt.get("kind") != kind:
        want = "a float teacher (train --fp)" if kind == "fp" else "a quantized student"
        raise CheckpointError(f"{p} holds a '{ckpt.get('kind')}' model, but {want} is needed here")
    return ckpt


def quant_config_of(ckpt: dict[str, Any]) -> QuantConfig:
    """The student's :class:`QuantConfig` as its checkpoint records it."""
    # Keys a checkpoint written before the option existed lacks: the student it holds had no such thing.
    try:
        return from_dict(QuantConfig, {"residual_bits": 0, "share_residual_stream": False, "learned_stream_step": False,
                                        **ckpt["quant"]})
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint's quantization settings are invalid ({exc}); re-run training") from None


def build_model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The model a checkpoint holds (float, or fake-quant for students), weights loaded, in eval mode.

    Raises:
        CheckpointError: when the weights do not fit the architecture the checkpoint names, or its builder
            cannot be found any more.
    """
    from .models.resolve import rebuild_model
    from .quant import prepare_qat

    meta = ckpt["model"]
    model = rebuild_model(meta)
    if ckpt["kind"] == "student":
        model = prepare_qat(model, quant_config_of(ckpt))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit model {meta['name']!r}: "
                              f"{first_line(exc)}") from None
    return model.eval()


def model_meta(name: str, num_classes: int, in_channels: int, input_size: int) -> dict[str, Any]:
    """The ``model`` block of a checkpoint of a registered model trained on a square input."""
    return {"name": name, "num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
