"""Reading an export directory (``model.fp32.onnx``, ``model.int8.onnx``, ``manifest.json``).

The manifest's fields are checked by :class:`~sqakd_edge.manifest.Manifest`, the record export writes;
the files are checked here (present, inside the directory, their sha256 as recorded), with one-line errors
that say how to fix the directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..hashing import file_sha256
from ..manifest import EXPORT_HINT, MANIFEST_FILE, Manifest

MANIFEST = MANIFEST_FILE


@dataclass(frozen=True)
class GraphFile:
    """One ONNX graph of an export directory.

    Args:
        key: ``fp32``, ``int8`` or ``fp16`` (the manifest's key).
        path: absolute path of the ``.onnx`` file.
        sha256: its hash (checked against the manifest).
        bytes: its size on disk.
        precision: the precision it was exported for (``fp32``, ``int8`` or ``fp16``).
    """

    key: str
    path: Path
    sha256: str
    bytes: int
    precision: str


@dataclass(frozen=True)
class ExportBundle:
    """A checked export directory.

    Args:
        directory: the export directory (absolute).
        manifest: the parsed manifest, as the file has it.
        record: the manifest, checked (:class:`~sqakd_edge.manifest.Manifest`).
        manifest_sha256: hash of ``manifest.json`` as read.
        graphs: the graphs by key, FP32 first.
        input_name: the graph input's name.
        input_shape: ``(C, H, W)`` of one image.
        mean: per-channel normalisation mean the graph expects.
        std: per-channel normalisation std.
        num_classes: size of the logits.
        checkpoint: the checkpoint of the float model behind ``model.fp32.onnx`` (the teacher when
            the manifest names one, else the student's, run with its quantizers off), as the manifest
            names it; it may be missing on this machine (callers check).
        checkpoint_sha256: its hash as the manifest records it (the eager baseline is rebuilt only from
            a file that still has it).
    """

    directory: Path
    manifest: dict[str, Any]
    record: Manifest
    manifest_sha256: str
    graphs: dict[str, GraphFile]
    input_name: str
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    checkpoint: Path | None
    checkpoint_sha256: str | None = None


def load_export_dir(directory: str | Path) -> ExportBundle:
    """Read and check an export directory.

    Args:
        directory: the folder ``sqakd-edge export`` wrote.

    Returns:
        The :class:`ExportBundle`.

    Raises:
        ExportError: when the folder, the manifest or a graph it names is missing, unreadable,
            of another schema, or does not match its recorded hash.
    """
    root = Path(directory).expanduser().resolve()
    if not root.is_dir():
        raise ExportError(f"export directory {root} does not exist; {EXPORT_HINT}")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise ExportError(f"{root} has no {MANIFEST}, so it is not an export directory; {EXPORT_HINT}")
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{manifest_path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); "
                          "re-export the model") from None
    record = Manifest.from_dict(manifest, str(manifest_path))
    graphs: dict[str, GraphFile] = {}
    for key, entry in record.graphs.items():
        name = entry["file"]
        path = root / name
        if root not in path.resolve().parents:  # a link out of the export directory
            raise ExportError(f"{manifest_path}: graphs.{key}.file {name!r} points outside the export directory; "
                              "re-export the model")
        if not path.is_file():
            raise ExportError(f"{path} is named in {MANIFEST} but missing; re-export the model ({EXPORT_HINT})")
        digest = file_sha256(path)
        if entry["sha256"] != digest:
            raise ExportError(f"{path.name} does not match the hash in {MANIFEST} (changed after export?); "
                              "re-export the model")
        graphs[key] = GraphFile(key, path, digest, path.stat().st_size, key)
    checkpoint = record.float_checkpoint() or {}
    ckpt_path = Path(checkpoint["file"]) if isinstance(checkpoint.get("file"), str) and checkpoint["file"] else None
    ckpt_sha = checkpoint.get("sha256")
    return ExportBundle(
        directory=root,
        manifest=manifest,
        record=record,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        graphs=graphs,
        input_name=record.input.name,
        input_shape=record.input.shape,
        mean=record.input.mean or (),
        std=record.input.std or (),
        num_classes=record.num_classes,
        checkpoint=ckpt_path,
        checkpoint_sha256=ckpt_sha if isinstance(ckpt_sha, str) else None,
    )
