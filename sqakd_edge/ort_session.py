"""ONNX Runtime on the CPU, the one way the package opens a session, and the operator vocabulary.

Export's parity check and the bench's runner both open sessions and both read ONNX Runtime's optimised
graph to tell whether a QDQ graph really runs its weighted layers on integer kernels; they share the
session settings and the lists of operator types here. ``onnxruntime`` is imported when a session is made.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .errors import EngineError, first_line, require

# ONNX Runtime's graph optimisation levels by our names: "off" is the reference (each op as written),
# "on" is what a deployment runs (fusions, layout changes, bias rounding onto the int32 grid).
LEVELS = {"off": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "on": "ORT_ENABLE_ALL"}

# Operator types of ONNX Runtime's optimised graph that run a weighted layer (conv, matmul) on integers,
# and those that run one in float (contrib and layout-specific kernels included: NHWC and NCHWc).
INTEGER_LAYER_OPS = frozenset({
    "QLinearConv", "NhwcQLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention", "QLinearConvTranspose",
})
FLOAT_LAYER_OPS = frozenset({"Conv", "FusedConv", "NchwcConv", "NhwcFusedConv", "ConvTranspose", "Gemm", "FusedGemm",
                             "MatMul", "FusedMatMul"})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def cpu_session(model: bytes | str | os.PathLike[str], *, level: str = "on", threads: int = 0,
                sequential: bool = False, optimized_path: str | None = None,
                disabled_optimizers: Sequence[str] = (), what: str = "the graph") -> Any:
    """An ONNX Runtime session on the CPU execution provider.

    Args:
        model: the serialised model or its path.
        level: ``off``, ``basic`` or ``on`` (:data:`LEVELS`).
        threads: intra-op threads (0: ONNX Runtime's default).
        sequential: one inter-op thread, sequential execution (what a latency measurement wants).
        optimized_path: where ONNX Runtime writes the optimised graph, if anywhere.
        disabled_optimizers: graph transformers to leave out.
        what: the graph's name in the error message.

    Raises:
        EngineError: ONNX Runtime cannot load the graph (one line, with its reason).
    """
    ort = require("onnxruntime", "running ONNX graphs", "pip install onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    options.log_severity_level = 3  # errors only: notices about hardware-specific optimised dumps are expected
    if threads:
        options.intra_op_num_threads = threads
    if sequential:
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    source = model if isinstance(model, bytes) else os.fspath(model)
    kwargs = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"], **kwargs)
    except Exception as exc:  # onnxruntime raises its own pybind types (Fail, InvalidGraph...): the message matters
        raise EngineError(f"ONNX Runtime cannot load {what}: {first_line(exc, 300)}; re-export the model (is the "
                          "file complete and an ONNX graph?)") from None


def count_layer_ops(op_types: Sequence[str]) -> dict[str, Any]:
    """Weighted layers of an optimised graph by kind: ``{"integer": {op: n}, "float": {op: n}}``."""
    counts: dict[str, int] = {}
    for op in op_types:
        counts[op] = counts.get(op, 0) + 1
    return {"integer": {op: n for op, n in sorted(counts.items()) if op in INTEGER_LAYER_OPS},
            "float": {op: n for op, n in sorted(counts.items()) if op in FLOAT_LAYER_OPS}}
