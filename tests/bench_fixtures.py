"""Tiny exported models for the bench tests, in the export directory layout of INTERFACES.md.

Until ``sqakd-edge export`` lands, this builds what it will write: ``model.fp32.onnx`` (a float
graph exported by ``torch.onnx.export``), ``model.int8.onnx`` (a QDQ graph from ONNX Runtime's
``quantize_static``) and ``manifest.json``. Replace :func:`make_export_dir` by a real export later;
the tests only rely on the directory layout and the manifest.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

NUM_CLASSES = 10
CHANNELS = 1
SIZE = 8
MEAN = (0.5,)
STD = (0.25,)


class TinyNet(nn.Module):
    """Conv-BN-ReLU, Conv-ReLU, global average pool, Linear: the layer kinds of the real models."""

    def __init__(self, in_channels: int = CHANNELS, num_classes: int = NUM_CLASSES, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


def tiny_model(seed: int = 0, in_channels: int = CHANNELS) -> nn.Module:
    torch.manual_seed(seed)
    model = TinyNet(in_channels=in_channels)
    with torch.no_grad():  # non-trivial BN statistics so folding matters
        model.bn1.running_mean.uniform_(-0.2, 0.2)
        model.bn1.running_var.uniform_(0.5, 1.5)
    return model.eval()


def export_fp32(model: nn.Module, path: Path, size: int = SIZE, channels: int = CHANNELS, dynamic: bool = True) -> Path:
    """Export like the exporter does: opset 13, TorchScript exporter, dynamic batch."""
    example = torch.zeros(1, channels, size, size)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice; it is what the exporter uses
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=13,
            input_names=["input"], output_names=["logits"], dynamic_axes=axes,
        )
    return path


def quantize_qdq(fp32_path: Path, int8_path: Path, activation: str = "QUInt8", per_channel: bool = True,
                 samples: int = 8, seed: int = 0) -> Path:
    """An INT8 QDQ graph from ONNX Runtime's quantize_static, calibrated on random normal inputs."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    shape = [d if isinstance(d, int) else 1 for d in ort.InferenceSession(
        str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape]
    rng = np.random.default_rng(seed)
    batches = [{"input": rng.standard_normal(shape).astype(np.float32)} for _ in range(samples)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self):  # noqa: ANN201
            return next(self._it, None)

    quantize_static(
        str(fp32_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=getattr(QuantType, activation), weight_type=QuantType.QInt8,
    )
    return int8_path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(directory: Path, *, size: int = SIZE, channels: int = CHANNELS, checkpoint: Path | None = None,
                   int8: bool = True) -> Path:
    graphs: dict = {}
    fp32 = directory / "model.fp32.onnx"
    graphs["fp32"] = {"file": fp32.name, "sha256": _sha256(fp32), "bytes": fp32.stat().st_size, "source": "teacher"}
    if int8:
        q = directory / "model.int8.onnx"
        graphs["int8"] = {"file": q.name, "sha256": _sha256(q), "bytes": q.stat().st_size, "wbits": 8, "abits": 8}
    manifest = {
        "schema": "sqakd-edge.export-manifest", "schema_version": 1, "created": "2026-11-26T12:00:00Z",
        "model": {"name": "tinynet", "num_classes": NUM_CLASSES, "in_channels": channels, "input_size": size},
        "input": {"name": "input", "shape": ["batch", channels, size, size], "dtype": "float32",
                  "mean": list(MEAN), "std": list(STD), "layout": "NCHW"},
        "output": {"name": "logits", "shape": ["batch", NUM_CLASSES]},
        "target": "onnxruntime", "opset": 13, "graphs": graphs, "quant": None,
        "checkpoint": {"file": str(checkpoint), "sha256": _sha256(checkpoint)} if checkpoint else None,
        "data": {"spec": "embedded", "name": "fashion-mnist-embedded"},
        "versions": {"sqakd_edge": "0.1.0"},
    }
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


def make_export_dir(directory: Path, *, dynamic: bool = True, int8: bool = True, seed: int = 0) -> Path:
    """A complete export directory with a tiny model: FP32 graph, INT8 QDQ graph, manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    export_fp32(tiny_model(seed), directory / "model.fp32.onnx", dynamic=dynamic)
    if int8:
        quantize_qdq(directory / "model.fp32.onnx", directory / "model.int8.onnx")
    write_manifest(directory, int8=int8)
    return directory


_CACHE: dict[str, Path] = {}


def cached_export(tmp_path_factory, variant: str = "dynamic") -> Path:  # noqa: ANN001
    """A session-wide export directory per variant (built once; tests must not modify it).

    Variants: ``dynamic`` (batch dimension dynamic), ``fixed`` (batch fixed to 1), ``fp32only``.
    """
    if variant not in _CACHE:
        root = tmp_path_factory.mktemp(f"export-{variant}")
        if variant == "dynamic":
            make_export_dir(root)
        elif variant == "fixed":
            make_export_dir(root, dynamic=False)
        elif variant == "fp32only":
            make_export_dir(root, int8=False)
        else:
            raise ValueError(variant)
        _CACHE[variant] = root
    return _CACHE[variant]


def copy_export(source: Path, target: Path) -> Path:
    """A private, modifiable copy of an export directory."""
    import shutil

    shutil.copytree(source, target)
    return target


def rehash(directory: Path) -> None:
    """Update the manifest's hashes and sizes after a test replaced a graph file."""
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["graphs"].values():
        graph = directory / entry["file"]
        entry["sha256"], entry["bytes"] = _sha256(graph), graph.stat().st_size
    path.write_text(json.dumps(manifest, indent=2))
