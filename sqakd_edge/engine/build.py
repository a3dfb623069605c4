"""``sqakd-edge build``: a TensorRT engine from an exported ONNX graph, on the machine that will run it.

Engines do not carry across GPUs or TensorRT versions, so this runs where TensorRT is installed (a Jetson,
or a desktop with TensorRT). It uses the device program's own builder (``sqakd_edge._device.trt_engine``),
so an engine built here is built exactly as ``sqakd-edge bench --device ...`` builds it on a device.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import PRECISIONS
from ..errors import ConfigError, EngineError, first_line, require

TENSORRT_HINT = ("pip install tensorrt on an x86 machine with an NVIDIA GPU (from NVIDIA's package index); "
                 "on a Jetson, TensorRT's Python bindings come with JetPack")


@dataclass(frozen=True)
class BuiltEngine:
    """What :func:`build_engine` wrote.

    Args:
        path: the engine file.
        bytes: its size.
        info: the builder's record (TensorRT version, API branches taken, input shape, timing cache).
    """

    path: Path
    bytes: int
    info: dict[str, Any]


def build_engine(model: str | Path, precision: str, out: str | Path | None = None, *, batch: int = 1,
                 workspace_mib: int = 256, timing_cache: str | Path | None = None) -> BuiltEngine:
    """Build a TensorRT engine from an ONNX graph.

    Args:
        model: the ONNX file (``model.fp32.onnx`` for fp32/fp16, ``model.int8.onnx`` for int8).
        precision: ``fp32``, ``fp16`` or ``int8`` (INT8 needs a QDQ graph and a GPU with fast INT8).
        out: the engine file; default ``MODEL`` with the suffix ``.<precision>.engine``.
        batch: the batch size the engine is optimised for (a dynamic batch accepts 1..batch).
        workspace_mib: the builder's workspace limit.
        timing_cache: a timing-cache file to reuse and update (speeds up rebuilds).

    Returns:
        The :class:`BuiltEngine`.

    Raises:
        ConfigError: a bad precision, batch or path.
        MissingDependencyError: TensorRT is not installed here.
        EngineError: TensorRT refused the graph (its reason is in the message).

    Example:
        >>> build_engine("export/model.fp32.onnx", "fp16")  # doctest: +SKIP
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if batch < 1 or workspace_mib < 1:
        raise ConfigError("--batch and --workspace-mib must be positive")
    model = Path(model)
    if not model.is_file():
        raise ConfigError(f"ONNX file {model} does not exist; export one with 'sqakd-edge export'")
    target = Path(out) if out is not None else model.with_suffix(f".{precision}.engine")
    if target.is_dir():
        raise ConfigError(f"--out {target} is a folder; give the engine file's path")
    trt = require("tensorrt", "sqakd-edge build", TENSORRT_HINT)
    from ..bench.devices import device_module

    engine_code = device_module("trt_engine")
    prep = device_module("onnx_prep")
    logger = engine_code.make_logger(trt)
    if precision == "int8" and not engine_code.platform_flags(trt, logger)["fast_int8"]:
        raise EngineError("this GPU has no fast INT8 (TensorRT's platform_has_fast_int8 is False, e.g. a Jetson "
                          "Nano), so an INT8 engine would not run in INT8; build --precision fp16 instead")
    with tempfile.TemporaryDirectory(prefix="sqakd-edge-build-") as tmp:
        prepared = Path(tmp) / "model.onnx"
        try:
            done = prep.prepare_file(str(model), str(prepared))  # fold Identity nodes TensorRT 8.x rejects
        except Exception as exc:  # onnx's checker and parser raise several types
            raise EngineError(f"{model} is not a valid ONNX model: {first_line(exc)}") from None
        try:
            data, info = engine_code.build_engine_bytes(trt, prepared.read_bytes(), precision, batch, workspace_mib,
                                                        str(timing_cache) if timing_cache else None, logger)
        except engine_code.EngineBuildError as exc:
            raise EngineError(f"{model.name}: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    engine_code.write_atomic(str(target), data)
    info["identity_folded"] = done["identity_folded"]
    return BuiltEngine(target, len(data), info)
