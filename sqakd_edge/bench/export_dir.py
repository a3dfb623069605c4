"""Reading an export directory (``model.fp32.onnx``, ``model.int8.onnx``, ``manifest.json``).

The layout and the manifest are what ``sqakd-edge export`` writes (README, "Export: QDQ ONNX ...").
Everything the bench needs from them is checked here, once, with one-line errors that say how to fix the
directory.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ExportError
from ..hashing import file_sha256

MANIFEST = "manifest.json"
MANIFEST_SCHEMA = "sqakd-edge.export-manifest"
EXPORT_HINT = "create one with 'sqakd-edge export CHECKPOINT --int8 --out DIR'"


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
        manifest: the parsed manifest.
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
    manifest_sha256: str
    graphs: dict[str, GraphFile]
    input_name: str
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    checkpoint: Path | None
    checkpoint_sha256: str | None = None


def _field(manifest: dict[str, Any], *keys: str, path: Path) -> Any:
    value: Any = manifest
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise ExportError(f"{path} lacks the field {'.'.join(keys)}; re-export the model ({EXPORT_HINT})")
        value = value[key]
    return value


def _numbers(value: Any, name: str, path: Path, positive: bool = False) -> tuple[float, ...]:
    """A manifest's per-channel list (None or missing: empty), each a finite number (positive for std)."""
    if value is None:
        return ()
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                         and (v > 0 or not positive) for v in value)
    if not ok:
        raise ExportError(f"{path}: {name} must be a list of {'positive ' if positive else ''}numbers, got {value!r}; "
                          "re-export the model")
    return tuple(float(v) for v in value)


def _count(value: Any, name: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ExportError(f"{path}: {name} must be a positive integer, got {value!r}; re-export the model")
    return value


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
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise ExportError(f"{manifest_path} is not an sqakd-edge export manifest (schema {MANIFEST_SCHEMA!r} expected)")
    if manifest.get("schema_version") != 1:
        raise ExportError(f"{manifest_path} has schema_version {manifest.get('schema_version')!r}; this sqakd-edge "
                          "reads version 1: upgrade sqakd-edge or re-export")

    entries = _field(manifest, "graphs", path=manifest_path)
    if not isinstance(entries, dict) or "fp32" not in entries:
        raise ExportError(f"{manifest_path} names no FP32 graph (graphs.fp32); re-export the model")
    graphs: dict[str, GraphFile] = {}
    for key in ("fp32", "int8", "fp16"):
        if key not in entries:
            continue
        entry = entries[key]
        if not isinstance(entry, dict):
            raise ExportError(f"{manifest_path}: graphs.{key} must be an object with file and sha256; re-export")
        name = str(_field(manifest, "graphs", key, "file", path=manifest_path))
        path = root / name
        # a file name from the manifest stays inside the export directory: no absolute paths, no "..", no links out
        if Path(name).is_absolute() or ".." in Path(name).parts or root not in path.resolve().parents:
            raise ExportError(f"{manifest_path}: graphs.{key}.file {name!r} points outside the export directory; "
                              "re-export the model")
        if not path.is_file():
            raise ExportError(f"{path} is named in {MANIFEST} but missing; re-export the model ({EXPORT_HINT})")
        if not isinstance(entry.get("sha256"), str):
            raise ExportError(f"{manifest_path}: graphs.{key} has no sha256, so {name} cannot be checked; re-export "
                              "the model")
        digest = file_sha256(path)
        if entry["sha256"] != digest:
            raise ExportError(f"{path.name} does not match the hash in {MANIFEST} (changed after export?); "
                              "re-export the model")
        graphs[key] = GraphFile(key, path, digest, path.stat().st_size, key)

    shape = _field(manifest, "input", "shape", path=manifest_path)
    if not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise ExportError(f"{manifest_path}: input.shape must be [batch, C, H, W], got {shape!r}")
    # The eager baseline is the float model the FP32 graph came from: the teacher if it was exported.
    float_source = (manifest.get("graphs", {}).get("fp32") or {}).get("source")
    checkpoint = (manifest.get("teacher") if float_source == "teacher" else None) or manifest.get("checkpoint") or {}
    ckpt_path = Path(checkpoint["file"]) if isinstance(checkpoint, dict) and checkpoint.get("file") else None
    ckpt_sha = checkpoint.get("sha256") if isinstance(checkpoint, dict) else None
    return ExportBundle(
        directory=root,
        manifest=manifest,
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
        graphs=graphs,
        input_name=str(_field(manifest, "input", "name", path=manifest_path)),
        input_shape=(int(shape[1]), int(shape[2]), int(shape[3])),
        mean=_numbers(manifest["input"].get("mean"), "input.mean", manifest_path),
        std=_numbers(manifest["input"].get("std"), "input.std", manifest_path, positive=True),
        num_classes=_count(_field(manifest, "model", "num_classes", path=manifest_path), "model.num_classes",
                           manifest_path),
        checkpoint=ckpt_path,
        checkpoint_sha256=ckpt_sha if isinstance(ckpt_sha, str) else None,
    )
