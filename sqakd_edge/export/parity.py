"""Parity: an exported graph in ONNX Runtime against the PyTorch model it came from, on real inputs.

Each graph runs twice: with graph optimisations off (``ORT_DISABLE_ALL``: the reference Q/DQ semantics,
node by node) and on (``ORT_ENABLE_ALL``: what a deployment runs, integer kernels included). Reported:
top-1 agreement, max and mean |delta logit|, max |delta logit| in units of the output's quantization step
(when the last layer is quantized, its step is ``input scale x weight scale`` per class), the reference's
top-2 margins on the disagreeing inputs (small margins: near-ties that any float noise flips), and for the
optimised run which kernels the convolutions became (read from ORT's optimised-model dump).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import check_fraction
from ..errors import require
from ..ort_session import LEVELS as ORT_LEVELS
from ..ort_session import count_layer_ops, cpu_session

LEVELS = {level: ORT_LEVELS[level] for level in ("off", "on")}  # the two runs of a parity check
# ORT's optimiser rounds a float conv bias onto the int32 grid (input scale x weight scale) so it can fuse
# QLinearConv; TensorRT keeps biases in float. For TensorRT graphs the "on" run leaves that one pass out
# (config.TARGET_RULES: parity_disabled_passes), so it stands in for TensorRT instead of ORT's own rounding.


@dataclass(frozen=True)
class ParityThresholds:
    """Minimum top-1 agreement with optimisations off and on.

    Args:
        min_top1_off: with ``ORT_DISABLE_ALL`` (default 0.999).
        min_top1_on: with ``ORT_ENABLE_ALL`` (default 0.99).
    """

    min_top1_off: float = 0.999
    min_top1_on: float = 0.99

    def __post_init__(self) -> None:
        for name in ("min_top1_off", "min_top1_on"):
            check_fraction(name, getattr(self, name))

    def for_level(self, level: str) -> float:
        """The threshold of ``off`` or ``on``."""
        return self.min_top1_off if level == "off" else self.min_top1_on


def session(model_bytes: bytes, level: str, *, optimized_path: str | None = None, threads: int = 0,
            disabled_optimizers: tuple[str, ...] = ()) -> Any:
    """An ONNX Runtime CPU session with optimisations ``off`` or ``on`` (see :func:`ort_session.cpu_session`).

    Raises:
        EngineError: ONNX Runtime cannot load the graph.
    """
    return cpu_session(model_bytes, level=level, threads=threads, optimized_path=optimized_path,
                       disabled_optimizers=disabled_optimizers, what="the exported graph")


def run(sess: Any, inputs: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits of ``inputs`` (N, C, H, W float32), run in batches."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: inputs[i:i + batch]})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(outs).astype(np.float32)


def compare(reference: np.ndarray, logits: np.ndarray, step: np.ndarray | None = None) -> dict[str, Any]:
    """Agreement of ``logits`` with ``reference`` (both N x classes).

    Args:
        reference: the PyTorch model's logits.
        logits: the graph's logits.
        step: per-class logit step (the output's quantization step), or None.

    Returns:
        ``top1_agreement``, ``disagreements``, ``disagreement_margins`` (the reference's top-2 margins on
        up to 10 disagreeing inputs, smallest first), ``max_abs_dlogit``, ``mean_abs_dlogit``,
        ``max_dlogit_steps`` (None without a step), ``samples``.
    """
    diff = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    ref_top = reference.argmax(axis=1)
    agree = ref_top == logits.argmax(axis=1)
    top2 = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else np.zeros((len(reference), 2))
    margin = top2[:, 1] - top2[:, 0]
    margins = sorted(round(float(m), 6) for m in margin[~agree])[:10]
    return {
        "samples": int(len(reference)),
        "top1_agreement": float(agree.mean()) if len(agree) else 1.0,
        "disagreements": int((~agree).sum()),
        "disagreement_margins": margins,
        "max_abs_dlogit": float(diff.max()) if diff.size else 0.0,
        "mean_abs_dlogit": float(diff.mean()) if diff.size else 0.0,
        "max_dlogit_steps": float((diff / step[None, :]).max()) if step is not None and diff.size else None,
    }


def kernel_counts(optimized_model_path: str) -> dict[str, Any]:
    """What the convolutions / matmuls of an optimised ORT model became."""
    onnx = require("onnx", "the parity check")
    return count_layer_ops([n.op_type for n in onnx.load(optimized_model_path).graph.node])


def graph_parity(model_bytes: bytes, inputs: np.ndarray, reference: np.ndarray, thresholds: ParityThresholds, *,
                 step: np.ndarray | None = None, inspect_kernels: bool = False,
                 disabled_optimizers: tuple[str, ...] = (), threads: int = 0,
                 labels: np.ndarray | None = None) -> dict[str, Any]:
    """Parity of one graph with optimisations off and on.

    Args:
        model_bytes: the serialised ONNX model.
        inputs: N x C x H x W float32 inputs.
        reference: the PyTorch model's logits on ``inputs``.
        thresholds: minimum top-1 agreement per level.
        step: per-class output step, if the output is quantized.
        inspect_kernels: dump the optimised model and count integer vs float conv kernels.
        disabled_optimizers: ORT transformers left out of the ``on`` run (recorded in the result).
        threads: ORT intra-op threads (0: its default).
        labels: true labels of ``inputs``: adds the graph's ``top1_accuracy`` per level.

    Returns:
        ``{"off": {...}, "on": {...}, "passed": bool}``; each level carries its threshold and ``passed``.
    """
    result: dict[str, Any] = {}
    for level in LEVELS:
        dump = None
        if inspect_kernels and level == "on":
            fd, dump = tempfile.mkstemp(suffix=".onnx")
            os.close(fd)
        try:
            off = disabled_optimizers if level == "on" else ()
            sess = session(model_bytes, level, optimized_path=dump, disabled_optimizers=off, threads=threads)
            logits = run(sess, inputs)
            stats = compare(reference, logits, step)
            if labels is not None:
                stats["top1_accuracy"] = float((logits.argmax(axis=1) == labels).mean())
            if dump:
                stats["kernels"] = kernel_counts(dump)
        finally:
            if dump:
                os.unlink(dump)
        stats["ort_level"] = LEVELS[level]
        if level == "on" and disabled_optimizers:
            stats["ort_disabled_optimizers"] = list(disabled_optimizers)
        stats["min_top1"] = thresholds.for_level(level)
        stats["passed"] = stats["top1_agreement"] >= stats["min_top1"]
        result[level] = stats
    result["passed"] = all(result[level]["passed"] for level in LEVELS)
    return result


def summary_line(name: str, parity: dict[str, Any]) -> str:
    """One line, e.g. ``int8: top-1 100.00% (off) / 99.61% (on), max |dlogit| 0.021 / 0.047 — ok``."""
    off, on = parity["off"], parity["on"]
    verdict = "ok" if parity["passed"] else "MISS"
    steps = f", {off['max_dlogit_steps']:.2f} output steps" if off.get("max_dlogit_steps") is not None else ""
    return (f"{name}: top-1 agreement {off['top1_agreement'] * 100:.2f}% (ORT opt off) / "
            f"{on['top1_agreement'] * 100:.2f}% (on) on {off['samples']} inputs, max |dlogit| "
            f"{off['max_abs_dlogit']:.3g} / {on['max_abs_dlogit']:.3g}{steps} - {verdict}")
