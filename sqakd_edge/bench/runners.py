"""Runners: one graph or model, loaded once, that runs ``infer(batch)`` (Polygraphy's shape).

A runner is a context manager: entering it loads the model (the slow part, never timed), leaving
it frees it. ``infer`` takes a float32 NCHW batch and returns the logits. Each runner says what
precision it was asked for and what it actually ran, so a fallback is never labelled INT8.

This module imports neither onnxruntime nor torch at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError, first_line, require
from ..ort_session import QDQ_OPS, count_layer_ops, cpu_session


class Runner:
    """Base class: a context manager with ``infer``.

    Attributes:
        name: the key of what it runs (``fp32``, ``int8``, ``eager``, or any label).
        runtime: ``onnxruntime`` or ``pytorch``.
        precision_requested: the precision the caller asked for.
        precision_ran: the precision it really ran, known after loading.
        threads: intra-op threads.
    """

    runtime = "none"

    def __init__(self, name: str, precision_requested: str, threads: int) -> None:
        self.name = name
        self.precision_requested = precision_requested
        self.precision_ran = precision_requested
        self.threads = threads
        self.is_active = False

    def activate(self) -> None:
        """Load the model. Subclasses implement :meth:`_activate`."""
        self._activate()
        self.is_active = True

    def deactivate(self) -> None:
        """Free the model. Subclasses implement :meth:`_deactivate`."""
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def _activate(self) -> None:
        raise NotImplementedError

    def _deactivate(self) -> None:
        raise NotImplementedError

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (float32, NCHW) and return the logits (float32, ``[batch, classes]``)."""
        raise NotImplementedError

    def input_shape(self) -> list[int | str | None]:
        """The model's input shape as the model states it (a string or None for a dynamic dim)."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What the results record about this runner (runtime, provider, layer placement, notes)."""
        return {"runtime": self.runtime, "threads": self.threads}


class OrtRunner(Runner):
    """An ONNX graph in ONNX Runtime on the CPU.

    Threads are pinned for a fair, repeatable comparison: ``intra_op_num_threads=threads``,
    ``inter_op_num_threads=1`` and sequential execution (graph-level parallelism would make the
    thread count a lie). All graph optimisations are on, as a user would run it. While loading,
    the optimised graph is saved to a temporary file and its operators counted, which is how we
    know whether the Q/DQ pairs fused into integer kernels.

    Args:
        path: the ``.onnx`` file.
        name: the key of the graph (``fp32``, ``int8``).
        precision_requested: ``fp32`` or ``int8``.
        threads: intra-op threads.
        inspect: count the operators of the optimised graph (needs the ``onnx`` package).
    """

    runtime = "onnxruntime"

    def __init__(self, path: Path, *, name: str, precision_requested: str, threads: int, inspect: bool = True) -> None:
        super().__init__(name, precision_requested, threads)
        self.path = Path(path)
        self.inspect = inspect
        self.session: Any = None
        self.placement: dict[str, Any] | None = None
        self._input_name = ""
        self._output_name = ""

    def _activate(self) -> None:
        with tempfile.TemporaryDirectory(prefix="sqakd-edge-ort-") as tmp:
            optimized = os.path.join(tmp, "optimized.onnx")
            self.session = cpu_session(self.path, level="on", threads=self.threads, sequential=True,
                                       optimized_path=optimized if self.inspect else None, what=self.path.name)
            if self.inspect and os.path.exists(optimized):
                self.placement = _count_layers(optimized)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise EngineError(f"{self.path.name} has {len(inputs)} inputs; sqakd-edge graphs take exactly one "
                              "image input")
        self._input_name, self._output_name = inputs[0].name, outputs[0].name
        if self.precision_requested == "int8" and self.placement is not None and self.placement["int8_layers"] == 0:
            # Every Q/DQ pair stayed unfused: the graph computes in float with fake quantization.
            self.precision_ran = "fp32"

    def _deactivate(self) -> None:
        self.session = None

    @property
    def input_name(self) -> str:
        """The graph's input name."""
        return self._input_name

    def input_shape(self) -> list[int | str | None]:
        return list(self.session.get_inputs()[0].shape)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self._output_name], {self._input_name: batch})[0]
        except Exception as exc:  # e.g. a batch size a fixed-shape graph does not accept
            first = first_line(exc)
            raise EngineError(f"ONNX Runtime failed to run {self.path.name} on a batch of shape "
                              f"{list(batch.shape)}: {first[:300]}") from None

    def info(self) -> dict[str, Any]:
        ort = require("onnxruntime", "benchmarking ONNX graphs")
        return {
            "runtime": self.runtime,
            "runtime_version": ort.__version__,
            "provider": "CPUExecutionProvider",
            "threads": self.threads,
            "inter_op_threads": 1,
            "execution_mode": "sequential",
            "graph_optimization": "ORT_ENABLE_ALL",
            "placement": self.placement,
        }


def _count_layers(optimized_path: str) -> dict[str, Any] | None:
    """Count integer vs float weighted layers and leftover Q/DQ nodes in ORT's optimised graph."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(optimized_path, load_external_data=False)
    ops = Counter(node.op_type for node in model.graph.node)
    layers = count_layer_ops(list(ops.elements()))
    return {
        "int8_layers": sum(layers["integer"].values()),
        "float_layers": sum(layers["float"].values()),
        "unfused_qdq": sum(n for op, n in ops.items() if op in QDQ_OPS),
        "op_counts": dict(sorted(ops.items())),
    }


class TorchRunner(Runner):
    """A PyTorch model in eager mode on the CPU (the baseline a paper's user runs).

    Args:
        load_model: returns the model (called on entering, so loading is never timed); or the
            ``nn.Module`` itself.
        name: the key (``eager``).
        threads: ``torch.set_num_threads`` while active (restored on leaving).
        note: one line for the report, e.g. what the model is.
    """

    runtime = "pytorch"

    def __init__(self, load_model: Callable[[], Any] | Any, *, name: str = "eager", threads: int,
                 note: str | None = None) -> None:
        super().__init__(name, "fp32", threads)
        self._load_model = load_model
        self.note = note
        self.model: Any = None
        self._torch: Any = None
        self._previous_threads = 0

    def _activate(self) -> None:
        torch = require("torch", "the PyTorch eager baseline", "pip install torch")
        self._torch = torch
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        model = self._load_model() if not isinstance(self._load_model, torch.nn.Module) else self._load_model
        self.model = model.eval()

    def _deactivate(self) -> None:
        self._torch.set_num_threads(self._previous_threads)
        self.model = None

    def input_shape(self) -> list[int | str | None]:
        return ["batch", None, None, None]  # eager models take any batch and (for CNNs with pooling) any size

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).numpy()

    def info(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "runtime_version": str(self._torch.__version__) if self._torch is not None else None,
            "threads": self.threads,
            "mode": "eager, inference_mode",
            "note": self.note,
        }


def checkpoint_loader(path: Path) -> Callable[[], Any]:
    """A loader for :class:`TorchRunner` that rebuilds the float model of an sqakd-edge checkpoint.

    A student checkpoint gives its float counterpart (same weights, plain layers): the eager baseline is
    the FP32 model a paper user runs, not the slower fake-quant simulation.

    Args:
        path: the checkpoint file.

    Returns:
        A function that loads it with ``sqakd_edge.checkpoint`` (imported only when called).
    """

    def load() -> Any:
        from ..checkpoint import build_model_from_checkpoint, load_checkpoint
        from ..quant import to_float

        return to_float(build_model_from_checkpoint(load_checkpoint(path))).eval()

    return load
