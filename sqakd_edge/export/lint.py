"""A linter for QDQ ONNX graphs against TensorRT's explicit-quantization rules (and a lighter ORT profile).

Works on any ONNX file, ours or not. Every finding names the node, the rule, what is wrong and the fix.
Errors are what makes TensorRT refuse the graph or compute something else; warnings are placements that
build but run slower (unfused Q/DQ), per TensorRT's Q/DQ placement recommendations.

Rules (id: severity under ``tensorrt`` / under ``onnxruntime``):

- ``malformed-node`` / ``malformed-initializer``: a Q/DQ node or a constant no exporter writes (no inputs, a
  text axis or scale, undecodable data): error / error.
- ``graph-cycle``: a node on a cycle (not an ONNX graph; nothing else is checked): error / error.
- ``opset``: Q/DQ below opset 13 (no per-channel axis): error / error; above 13: warning (TensorRT 8.2,
  the last on Jetson Nano, reads up to 13) / -.
- ``opset-device``: above the device's highest opset (``max_opset``; 13 for TensorRT 8.2): error / -.
- ``zero-point``: a non-zero zero-point: error / -.
- ``zero-point-missing``: no zero-point input (ONNX then means uint8; TensorRT 8.2's parser needs an
  explicit int8 one): error / -.
- ``uint8``: uint8 Q/DQ (TensorRT is signed int8 only): error / -.
- ``scale-dtype``: a scale that is not float32 (TensorRT 8.2's parser checks it): error / -; a scale that
  is not numbers at all (text): error / error.
- ``zero-point-dtype``: a zero-point that is not integers (text, float): error / error.
- ``zero-point-shape``: a zero-point whose size differs from the scale's (the ONNX spec and TensorRT's
  parser both require equal shapes): error / error.
- ``scale-constant``: a scale or zero-point that is not a constant: error / error.
- ``scale-positive``: a zero, negative or non-finite scale: error / error.
- ``weight-axis``: per-channel weight scales not on the output-channel axis (0 for Conv and Gemm with
  transB, 1 for ConvTranspose), or not one scale per channel: error / error. A weight is an integer
  initializer -> DQ, or a float initializer -> Q -> DQ; both nodes of the second form are checked.
- ``activation-per-channel``: a per-channel Q/DQ on an activation: error / warning.
- ``qdq-on-output``: a network output produced by Q or DQ: error / warning.
- ``q-dq-pair``: a QuantizeLinear not followed directly by DequantizeLinear: error / -.
- ``identity-initializer``: an Identity passing a constant on to Q/DQ (TensorRT 8.x: "invalid weights
  type of Int8"): error / -.
- ``qdq-weighted-output``: Q/DQ on a weighted layer's output that quantizes no weighted layer's input or
  residual skip (it stops TensorRT fusing that layer): warning / -.
- ``residual-add-skip``: a residual Add whose skip branch carries no Q/DQ, so TensorRT cannot fuse the
  Add into the quantized conv: warning / -.
- ``concat-scales``: Concat inputs dequantized with different scales: warning / -.
- ``partial-qdq``: a Conv/Gemm with a quantized input but a float weight, or the reverse: warning / -.

Size: the module is the catalogue of rules: each rule's check sits next to the graph walk it needs, and the
rule table above is its index. Splitting rules across files would scatter one vocabulary of findings.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TARGETS, target_rules
from ..errors import ExportError, first_line, require

WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# ops a weighted layer's output passes through before its activation Q (TensorRT fuses them)
_FUSED_AFTER_WEIGHTED = ("BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish",
                         "Tanh", "Elu", "Selu", "PRelu")
# a Q/DQ repeated on the way (with its Clip or ReLU) hands the same values on to the layer it quantizes
_REQUANTIZE = ("QuantizeLinear", "DequantizeLinear", "Clip", "Relu")
# ops a dequantized tensor may pass through on its way to the layer it quantizes
_PASS_THROUGH = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose",
                 "Squeeze", "Unsqueeze", "Pad", "Slice", "Concat", "Split", "Resize", "Identity")


@dataclass(frozen=True)
class Finding:
    """One lint finding.

    Attributes:
        rule: the rule id (see the module docstring).
        severity: ``error`` or ``warning``.
        node: the node's name (``OpType#index`` when it has none), or the tensor for graph-level rules.
        message: what is wrong.
        fix: what to do.
    """

    rule: str
    severity: str
    node: str
    message: str
    fix: str

    def line(self) -> str:
        """``severity rule node: message; fix: ...``."""
        return f"{self.severity:<7} {self.rule:<22} {self.node}: {self.message}; fix: {self.fix}"

    def as_dict(self) -> dict[str, str]:
        """JSON-able."""
        return {"rule": self.rule, "severity": self.severity, "node": self.node, "message": self.message,
                "fix": self.fix}


_ATTRIBUTE_INT = 2  # onnx.AttributeProto.INT


class _Graph:
    """Producers, consumers and constant values of an ONNX graph."""

    def __init__(self, model: Any) -> None:
        numpy_helper = require("onnx", "sqakd-edge check").numpy_helper
        self.model = model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.names = {id(n): n.name or f"{n.op_type}#{i}" for i, n in enumerate(self.nodes)}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for n in self.nodes:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.initializers = {i.name: i for i in self.graph.initializer}
        self.constants: dict[str, np.ndarray] = {}
        self.unreadable: dict[str, str] = {}  # initializers whose data cannot be decoded, and why
        for name, init in self.initializers.items():
            try:
                self.constants[name] = numpy_helper.to_array(init)
            except Exception as exc:  # noqa: BLE001 (bad raw_data, unknown type: reported as a finding)
                self.unreadable[name] = first_line(exc)
        for n in self.nodes:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.constants[n.output[0]] = numpy_helper.to_array(a.t)
        self.outputs = {o.name for o in self.graph.output}

    def name(self, node: Any) -> str:
        return self.names[id(node)]

    def constant(self, tensor: str, *, through_identity: bool = True) -> np.ndarray | None:
        """The value of a constant tensor (an initializer or Constant output; optionally through Identity)."""
        seen: set[str] = set()
        while tensor not in self.constants:
            node = self.producer.get(tensor)
            if not (through_identity and node is not None and node.op_type == "Identity" and node.input) \
                    or tensor in seen:
                return None
            seen.add(tensor)
            tensor = node.input[0]
        return self.constants[tensor]

    def cycle_node(self) -> Any:
        """A node on a cycle, else None (ONNX graphs are acyclic; a cycle would make walks loop)."""
        indegree = {id(n): sum(1 for i in n.input if i in self.producer) for n in self.nodes}
        ready = [n for n in self.nodes if indegree[id(n)] == 0]
        done = 0
        while ready:
            n = ready.pop()
            done += 1
            for o in n.output:
                for c in self.consumers.get(o, []):
                    indegree[id(c)] -= sum(1 for i in c.input if i == o)
                    if indegree[id(c)] == 0:
                        ready.append(c)
        return None if done == len(self.nodes) else next(n for n in self.nodes if indegree[id(n)] > 0)

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        for a in node.attribute:
            if a.name == name:
                onnx = require("onnx", "sqakd-edge check")
                return onnx.helper.get_attribute_value(a)
        return default

    def origin_through(self, tensor: str, ops: tuple[str, ...]) -> Any:
        """The first producer of ``tensor`` that is not one of ``ops`` (walking back through input 0)."""
        node = self.producer.get(tensor)
        seen: set[int] = set()
        while node is not None and node.op_type in ops and node.input and id(node) not in seen:
            seen.add(id(node))
            node = self.producer.get(node.input[0])
        return node

    def reaches(self, tensor: str) -> list[tuple[Any, str]]:
        """``(consumer, tensor it reads)`` past pass-through ops, starting from ``tensor``."""
        out: list[tuple[Any, str]] = []
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            for c in self.consumers.get(t, []):
                if c.op_type in _PASS_THROUGH or c.op_type in _REQUANTIZE:
                    stack.extend(c.output)
                else:
                    out.append((c, t))
        return out


def _is_quantized_weighted(g: _Graph, node: Any) -> bool:
    """A Conv/Gemm/MatMul whose data input comes from a DequantizeLinear."""
    if node is None or node.op_type not in WEIGHTED or not node.input:
        return False
    src = g.producer.get(node.input[0])
    return src is not None and src.op_type == "DequantizeLinear"


def _weight_axis(g: _Graph, consumer: Any, input_index: int, weight_shape: tuple[int, ...]) -> int | None:
    """The output-channel axis of a weight read by ``consumer`` at ``input_index`` (None: not a weight)."""
    if consumer.op_type == "Conv" and input_index == 1:
        return 0
    if consumer.op_type == "ConvTranspose" and input_index == 1:
        return 1
    if consumer.op_type == "Gemm" and input_index == 1:
        return 0 if g.attr(consumer, "transB", 0) else 1
    if consumer.op_type == "MatMul" and input_index == 1 and len(weight_shape) >= 2:
        return len(weight_shape) - 1
    return None


def lint_model(model: Any, target: str = "tensorrt", max_opset: int | None = None) -> list[Finding]:
    """Lint an ONNX ``ModelProto``.

    Args:
        model: the model.
        target: ``tensorrt`` (all rules) or ``onnxruntime`` (what matters to ONNX Runtime).
        max_opset: the highest opset the device's TensorRT parses (a device profile's ``max_onnx_opset``);
            above it is an error, not the general warning.

    Returns:
        The findings, errors first.

    Raises:
        ExportError: an unknown target.
    """
    if target not in TARGETS:
        raise ExportError(f"unknown lint target {target!r}; choose one of: {', '.join(TARGETS)}")
    trt = target_rules(target).lint_all_rules
    g = _Graph(model)
    findings: list[Finding] = []

    def add(rule: str, severity: str, node: str, message: str, fix: str) -> None:
        findings.append(Finding(rule, severity, node, message, fix))

    cyclic = g.cycle_node()
    if cyclic is not None:  # every rule below walks the graph; a cycle is not an ONNX graph
        return [Finding("graph-cycle", "error", g.name(cyclic), f"the graph has a cycle through {cyclic.op_type} "
                        f"'{g.name(cyclic)}' (ONNX graphs are acyclic)", "re-export the model; the file is corrupt")]
    for name, why in g.unreadable.items():
        add("malformed-initializer", "error", name, f"initializer '{name}' cannot be decoded ({why})",
            "re-export the model; the file is corrupt")
    qdq = [n for n in g.nodes if n.op_type in QDQ_OPS]
    opset = next((int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    if qdq and opset < 13:
        add("opset", "error", "graph", f"opset {opset} has no per-channel Q/DQ (axis needs opset 13)",
            "export with opset 13")
    elif trt and max_opset is not None and opset > max_opset:
        add("opset-device", "error", "graph", f"opset {opset} is above {max_opset}, the highest this device's "
            "TensorRT parses", f"export with --opset {max_opset}")
    elif trt and opset > 13:
        add("opset", "warning", "graph", f"opset {opset}: TensorRT 8.2 (JetPack 4.6, Jetson Nano) reads up to opset 13",
            "export with --opset 13 to deploy on JetPack 4.6")

    fix = "re-export the model; QuantizeLinear/DequantizeLinear take (x, scale[, zero_point]), an int axis"
    wellformed = []
    for n in qdq:
        if len(n.input) < 2 or not n.input[0] or len(n.output) != 1:
            add("malformed-node", "error", g.name(n), f"{n.op_type} has {len(n.input)} input(s) and "
                f"{len(n.output)} output(s)", fix)
            continue
        if any(a.name == "axis" and a.type != _ATTRIBUTE_INT for a in n.attribute):
            add("malformed-node", "error", g.name(n), f"{n.op_type} has a non-integer axis", fix)
            continue
        try:
            _lint_qdq_node(g, n, trt, add)
        except (IndexError, ValueError, TypeError, KeyError) as exc:  # a node no exporter writes
            add("malformed-node", "error", g.name(n), f"{n.op_type} is malformed ({type(exc).__name__}: {exc})", fix)
            continue
        wellformed.append(n)
    qdq = wellformed
    if trt:
        _lint_placement(g, qdq, add)
    order = {"error": 0, "warning": 1}
    return sorted(findings, key=lambda f: order[f.severity])


def _lint_qdq_node(g: _Graph, n: Any, trt: bool, add: Any) -> None:
    name = g.name(n)
    scale_name = n.input[1] if len(n.input) > 1 else ""
    zp_name = n.input[2] if len(n.input) > 2 else ""
    scale = g.constant(scale_name) if scale_name else None
    if scale is None:
        add("scale-constant", "error", name, f"{n.op_type} scale '{scale_name}' is not a constant",
            "make scales constant initializers (fold them before export)")
    elif scale.dtype.kind not in "fiu":  # text, bool or complex: nothing ONNX Q/DQ accepts
        kind = "text" if scale.dtype.kind in "OSU" else str(scale.dtype)
        add("scale-dtype", "error", name, f"{n.op_type} scale '{scale_name}' holds {kind}, not numbers",
            "re-export the model; scales are float32 tensors")
        return
    elif not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        bad = scale.reshape(-1)[(~np.isfinite(scale.reshape(-1))) | (scale.reshape(-1) <= 0)][:3]
        add("scale-positive", "error", name, f"{n.op_type} has zero, negative or non-finite scale(s) {bad.tolist()}",
            "replace dead-channel scales by a small positive scale (their weights are 0 anyway)")
    zp = g.constant(zp_name) if zp_name else None
    if zp_name and zp is None:
        add("scale-constant", "error", name, f"{n.op_type} zero-point '{zp_name}' is not a constant",
            "make zero-points constant initializers")
    if zp is not None and zp.dtype.kind not in "iu":
        add("zero-point-dtype", "error", name, f"{n.op_type} zero-point '{zp_name}' holds "
            f"{'text' if zp.dtype.kind in 'OSU' else zp.dtype}, not integers", "re-export the model; zero-points are "
            "int8 (or uint8) tensors")
        return
    if scale is not None and zp is not None and zp.size != scale.size:
        add("zero-point-shape", "error", name, f"{n.op_type} has {zp.size} zero-point(s) for {scale.size} scale(s)",
            "give the zero-point the scale's shape")
    if trt:
        if scale is not None and scale.dtype != np.float32:
            add("scale-dtype", "error", name, f"{n.op_type} scale is {scale.dtype} (TensorRT reads float32 scales)",
                "store scales as float32")
        if not zp_name:
            add("zero-point-missing", "error", name, f"{n.op_type} has no zero-point (ONNX then means uint8, and "
                "TensorRT 8.2's parser needs an explicit one)", "add an int8 zero-point of 0 (export --target "
                "tensorrt does)")
        elif zp is not None and zp.dtype == np.uint8:
            add("uint8", "error", name, f"{n.op_type} is uint8 (TensorRT takes signed int8 Q/DQ only)",
                "use int8 zero-points (symmetric int8; export with --target tensorrt)")
        if zp is not None and np.any(zp != 0):
            add("zero-point", "error", name, f"{n.op_type} has non-zero zero-point(s) "
                f"{np.unique(zp).tolist()[:3]} (TensorRT is symmetric only)", "quantize symmetrically (zero-point 0)")
    if scale is None or scale.size <= 1:
        return
    axis = int(g.attr(n, "axis", 1))
    data, readers = _weight_and_readers(g, n)
    if data is None:
        add("activation-per-channel", "error" if trt else "warning", name,
            f"{n.op_type} quantizes an activation per channel ({scale.size} scales)",
            "quantize activations per tensor (one scale)")
        return
    axis = axis % data.ndim if data.ndim else 0
    for consumer, tensor in readers:
        index = list(consumer.input).index(tensor)
        want = _weight_axis(g, consumer, index, data.shape)
        if want is None:
            continue
        if axis != want:
            add("weight-axis", "error", name, f"per-channel weight scales on axis {axis}, but {consumer.op_type} "
                f"'{g.name(consumer)}' has its output channels on axis {want}", f"quantize the weight with axis={want}")
        elif data.shape[want] != scale.size:
            add("weight-axis", "error", name, f"{scale.size} scales for {data.shape[want]} output channels",
                "give one scale per output channel")


def _weight_and_readers(g: _Graph, n: Any) -> tuple[np.ndarray | None, list[tuple[Any, str]]]:
    """The constant weight a Q/DQ node quantizes (None: an activation) and the nodes that read it dequantized.

    Two forms carry a weight: an integer initializer -> DequantizeLinear, and a float initializer ->
    QuantizeLinear -> DequantizeLinear (what PyTorch's exporter writes). In the second form the DQ's input is
    the Q's output, not a constant, and the Q's readers are its DQs' readers: both nodes are checked against
    the layer that uses the weight.
    """
    source = g.producer.get(n.input[0])
    if n.op_type == "DequantizeLinear":
        data = g.constant(n.input[0])
        if data is None and source is not None and source.op_type == "QuantizeLinear" and source.input:
            data = g.constant(source.input[0])
        return data, [(c, n.output[0]) for c in g.consumers.get(n.output[0], [])]
    readers = [(c, dq.output[0]) for dq in g.consumers.get(n.output[0], []) if dq.op_type == "DequantizeLinear"
               and dq.output for c in g.consumers.get(dq.output[0], [])]
    return g.constant(n.input[0]), readers


def _lint_placement(g: _Graph, qdq: list[Any], add: Any) -> None:
    for out in g.outputs:
        node = g.producer.get(out)
        if node is not None and node.op_type in QDQ_OPS:
            add("qdq-on-output", "error", g.name(node), f"network output '{out}' comes from {node.op_type}",
                "remove the Q/DQ on the network output (keep logits in float)")
    for n in qdq:
        if n.op_type == "QuantizeLinear":
            bad = [c for c in g.consumers.get(n.output[0], []) if c.op_type != "DequantizeLinear"]
            if bad:
                add("q-dq-pair", "error", g.name(n), f"QuantizeLinear feeds {bad[0].op_type} '{g.name(bad[0])}', "
                    "not DequantizeLinear", "put DequantizeLinear directly after every QuantizeLinear (move "
                    "integer Clips before Q as float Clips)")
        for tensor in n.input[:3]:
            src = g.producer.get(tensor)
            if src is not None and src.op_type == "Identity" and g.constant(src.input[0], through_identity=False) \
                    is not None:
                add("identity-initializer", "error", g.name(src), f"Identity passes constant '{src.input[0]}' to "
                    f"{n.op_type} '{g.name(n)}' (TensorRT 8.x: invalid weights type)",
                    "fold the Identity: read the initializer directly")
    if not qdq:
        return
    for n in qdq:
        if n.op_type != "QuantizeLinear" or g.constant(n.input[0]) is not None:
            continue
        origin = g.origin_through(n.input[0], _FUSED_AFTER_WEIGHTED)
        if origin is None or origin.op_type not in WEIGHTED:
            continue
        reached: list[tuple[Any, str]] = []
        for dq in g.consumers.get(n.output[0], []):
            if dq.op_type == "DequantizeLinear":
                reached.extend(g.reaches(dq.output[0]))
        useful = any((c.op_type in WEIGHTED and list(c.input).index(t) == 0) or
                     (c.op_type == "Add" and _add_other_is_weighted(g, c, t)) for c, t in reached)
        if not useful:
            add("qdq-weighted-output", "warning", g.name(n), f"Q/DQ on the output of {origin.op_type} "
                f"'{g.name(origin)}' quantizes no weighted layer's input; TensorRT cannot fuse it into the layer",
                "quantize the inputs of weighted layers, not their outputs (a student's trained residual "
                "quantizers put one here on purpose: exact, and what ONNX Runtime needs; for TensorRT's Add fusion "
                "train with --residual-bits 0 and export with --residual-qdq)")
    for n in g.nodes:
        if n.op_type == "Add" and len(n.input) == 2 and all(g.constant(i) is None for i in n.input):
            _lint_residual(g, n, add)
        elif n.op_type == "Concat":
            scales = set()
            for i in n.input:
                src = g.producer.get(i)
                if src is not None and src.op_type == "DequantizeLinear":
                    s = g.constant(src.input[1])
                    if s is not None:
                        scales.add(tuple(np.asarray(s, dtype=np.float64).reshape(-1).tolist()))
            if len(scales) > 1:
                add("concat-scales", "warning", g.name(n), f"Concat inputs are dequantized with {len(scales)} "
                    "different scales", "give every Concat input the same Q/DQ scale")
        elif n.op_type in WEIGHTED and len(n.input) > 1:
            data_q = _is_quantized_weighted(g, n)
            wsrc = g.producer.get(n.input[1])
            weight_q = wsrc is not None and wsrc.op_type == "DequantizeLinear"
            if data_q != weight_q and (g.constant(n.input[1]) is not None or weight_q):
                which = "input" if data_q else "weight"
                add("partial-qdq", "warning", g.name(n), f"{n.op_type} has a quantized {which} only; TensorRT "
                    "runs it in float", "quantize both the data input and the weight (or neither)")


def _add_other_is_weighted(g: _Graph, add_node: Any, tensor: str) -> bool:
    other = [i for i in add_node.input if i != tensor]
    if not other:
        return False
    origin = g.origin_through(other[0], ("BatchNormalization",))
    return origin is not None and origin.op_type in WEIGHTED


def _lint_residual(g: _Graph, n: Any, add: Any) -> None:
    sources = [g.origin_through(i, ("BatchNormalization",)) for i in n.input]
    if any(s is not None and s.op_type == "DequantizeLinear" for s in sources):
        return
    if any(_is_quantized_weighted(g, s) for s in sources):
        add("residual-add-skip", "warning", g.name(n), "residual Add with a quantized conv input but no Q/DQ on the "
            "skip branch: TensorRT cannot fuse the Add into the conv's int8 output", "put a Q/DQ on the skip branch "
            "(sqakd-edge export --residual-qdq, at a parity cost unless the student quantized it in training)")


def load_onnx(path: str | Path) -> Any:
    """Load an ONNX model for checking.

    Raises:
        ExportError: the file is missing or is not an ONNX model.
    """
    onnx = require("onnx", "sqakd-edge check")
    p = Path(path)
    if not p.is_file():
        raise ExportError(f"{p} does not exist or is not a file; pass an .onnx model")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # DecodeError, OSError, external-data errors
        first = first_line(exc)
        raise ExportError(f"{p} is not an ONNX model ({first}); pass an .onnx file") from None
    if not model.graph.node and not model.graph.input:
        raise ExportError(f"{p} is not an ONNX model (no graph); pass an .onnx file")
    return model


def lint_file(path: str | Path, target: str = "tensorrt", max_opset: int | None = None) -> list[Finding]:
    """Lint an ONNX file (see :func:`lint_model`).

    Raises:
        ExportError: a missing or non-ONNX file, or an unknown target.
    """
    return lint_model(load_onnx(path), target, max_opset)


def summarize(findings: list[Finding]) -> dict[str, Any]:
    """``{"errors": n, "warnings": n, "findings": [...]}`` for the manifest."""
    return {"errors": sum(f.severity == "error" for f in findings),
            "warnings": sum(f.severity == "warning" for f in findings),
            "findings": [f.as_dict() for f in findings]}
