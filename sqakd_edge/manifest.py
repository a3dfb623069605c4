"""The export manifest: the contract between ``export`` (its writer) and ``bench``/``build`` (its readers).

One typed record with its schema version, ``to_dict`` (the JSON ``manifest.json`` holds) and ``from_dict``
(validation, with one-line errors naming the field and the fix). Standard library only: a machine that
only benchmarks reads it without torch. Fields may be added without a version bump; none is removed or
changes meaning without one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .errors import ExportError

SCHEMA = "sqakd-edge.export-manifest"
SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
FP32_FILE, INT8_FILE, FP16_FILE = "model.fp32.onnx", "model.int8.onnx", "model.fp16.onnx"
GRAPH_FILES = {"fp32": FP32_FILE, "int8": INT8_FILE, "fp16": FP16_FILE}  # the manifest's order
GRAPHS = tuple(GRAPH_FILES)
EXPORT_HINT = "create one with 'sqakd-edge export CHECKPOINT --int8 --out DIR'"
_GRAPH_HEAD = ("file", "sha256", "bytes", "source", "wbits", "abits")  # first in each graph entry


@dataclass(frozen=True)
class InputSpec:
    """The graphs' one input: its name, ``(C, H, W)`` of one image, and the normalisation it expects."""

    name: str
    shape: tuple[int, int, int]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``input`` block."""
        return {"name": self.name, "shape": ["batch", *self.shape], "dtype": "float32",
                "mean": list(self.mean) if self.mean else None, "std": list(self.std) if self.std else None,
                "layout": "NCHW"}


@dataclass(frozen=True)
class Manifest:
    """What an export directory holds and how it was made.

    Args:
        created: UTC time of the export (ISO 8601, ``Z``).
        model: ``{name, num_classes, in_channels, input_size, ...}`` of the exported model.
        input: the graphs' input.
        target: ``tensorrt`` or ``onnxruntime``: the runtime the INT8 graph's Q/DQ were written for.
        opset: the graphs' ONNX opset.
        graphs: per graph key (``fp32``, ``int8``, ``fp16``) its entry: ``file``, ``sha256``, ``bytes`` and
            what export recorded about it (source, bits, lint, layers...).
        quant: the student's quantization config (None for a float export).
        data: the data parity ran on (``spec``, ``name``).
        parity: the parity check's results.
        accuracy: top-1 of each model on the parity inputs, when they had labels.
        versions: library versions of the export.
        timings_s: seconds per export stage.
        checkpoint: the exported checkpoint (``file``, ``sha256``).
        teacher: the teacher behind the FP32 graph, when one was given (``file``, ``sha256``).
    """

    created: str
    model: dict[str, Any]
    input: InputSpec
    target: str
    opset: int
    graphs: dict[str, dict[str, Any]]
    quant: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    checkpoint: dict[str, Any] | None = None
    teacher: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        """Size of the logits."""
        return int(self.model["num_classes"])

    def float_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint of the float model behind the FP32 graph; the bench rebuilds its eager baseline from it.

        The teacher when it was exported, else the student's (run with its quantizers off).
        """
        source = self.graphs.get("fp32", {}).get("source")
        return (self.teacher if source == "teacher" else None) or self.checkpoint

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``manifest.json``."""
        provenance = {k: v for k, v in (("checkpoint", self.checkpoint), ("teacher", self.teacher)) if v}
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "created": self.created, "model": self.model,
            "input": self.input.to_dict(), "output": {"name": "logits", "shape": ["batch", self.num_classes]},
            "target": self.target, "opset": self.opset,
            "graphs": {k: _graph_entry(self.graphs[k]) for k in GRAPHS if k in self.graphs},
            "quant": self.quant, **provenance, "data": self.data, "parity": self.parity,
            "accuracy": self.accuracy, "versions": self.versions, "timings_s": self.timings_s,
        }

    @classmethod
    def from_dict(cls, doc: Any, where: str = MANIFEST_FILE) -> Manifest:
        """Check a parsed ``manifest.json`` and return its record.

        Raises:
            ExportError: another schema or version, or a field the readers need that is missing or malformed
                (graph file names must stay inside the export directory; every graph needs its sha256).
        """
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise ExportError(f"{where} is not an sqakd-edge export manifest (schema {SCHEMA!r} expected)")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise ExportError(f"{where} has schema_version {doc.get('schema_version')!r}; this sqakd-edge reads "
                              f"version {SCHEMA_VERSION}: upgrade sqakd-edge or re-export")
        graphs = _required(doc, "graphs", where)
        if not isinstance(graphs, dict) or "fp32" not in graphs:
            raise ExportError(f"{where} names no FP32 graph (graphs.fp32); re-export the model")
        checked = {key: _graph(graphs[key], key, where) for key in GRAPHS if key in graphs}
        inputs = _required(doc, "input", where)
        shape = _required(doc, "input.shape", where)
        if not isinstance(shape, list) or len(shape) != 4 or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape[1:]):
            raise ExportError(f"{where}: input.shape must be [batch, C, H, W], got {shape!r}")
        spec = InputSpec(str(_required(doc, "input.name", where)), (shape[1], shape[2], shape[3]),
                         _numbers(inputs.get("mean"), "input.mean", where) or None,
                         _numbers(inputs.get("std"), "input.std", where, positive=True) or None)
        model = _required(doc, "model", where)
        classes = _required(doc, "model.num_classes", where)
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
            raise ExportError(f"{where}: model.num_classes must be a positive integer, got {classes!r}; re-export "
                              "the model")
        def block(key: str) -> dict[str, Any] | None:  # an optional object: anything else reads as absent
            value = doc.get(key)
            return value if isinstance(value, dict) else None

        opset = doc.get("opset")
        return cls(created=str(doc.get("created", "")), model=dict(model), input=spec,
                   target=str(doc.get("target") or ""), opset=opset if isinstance(opset, int) else 0, graphs=checked,
                   quant=block("quant"), data=block("data") or {}, parity=block("parity") or {},
                   accuracy=block("accuracy"), versions=block("versions") or {}, timings_s=block("timings_s") or {},
                   checkpoint=block("checkpoint"), teacher=block("teacher"))


def _graph_entry(entry: dict[str, Any]) -> dict[str, Any]:
    head = {k: entry[k] for k in _GRAPH_HEAD if k in entry}
    return {**head, **{k: v for k, v in entry.items() if k not in head}}


def _required(doc: dict[str, Any], dotted: str, where: str) -> Any:
    value: Any = doc
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ExportError(f"{where} lacks the field {dotted}; re-export the model ({EXPORT_HINT})")
        value = value[key]
    return value


def _graph(entry: Any, key: str, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
        raise ExportError(f"{where}: graphs.{key} must be an object with file and sha256; re-export the model")
    name = PurePosixPath(entry["file"])
    # a file name from the manifest stays inside the export directory: no absolute paths, no ".."
    if name.is_absolute() or ".." in name.parts or "\\" in entry["file"]:
        raise ExportError(f"{where}: graphs.{key}.file {entry['file']!r} points outside the export directory; "
                          "re-export the model")
    if not isinstance(entry.get("sha256"), str):
        raise ExportError(f"{where}: graphs.{key} has no sha256, so {entry['file']} cannot be checked; re-export "
                          "the model")
    return dict(entry)


def _numbers(value: Any, name: str, where: str, positive: bool = False) -> tuple[float, ...]:
    """A per-channel list (None or missing: empty), each a finite number (positive for std)."""
    if value is None:
        return ()
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                         and (v > 0 or not positive) for v in value)
    if not ok:
        raise ExportError(f"{where}: {name} must be a list of {'positive ' if positive else ''}numbers, got "
                          f"{value!r}; re-export the model")
    return tuple(float(v) for v in value)
