"""Writing a module to ONNX with the TorchScript exporter, and tidying what it wrote.

``torch.onnx.export(..., dynamo=False)`` honours the opset asked for (the dynamo exporter silently writes
18 when 13 is asked); we check the opset of what was written anyway. Afterwards: Constant nodes become
initializers (scales and zero-points are then plain constant initializers), Identity nodes that pass an
initializer on are folded (TensorRT 8.x rejects them in front of Q/DQ), unused initializers go.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ExportError, first_line, require

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def to_onnx(module: nn.Module, example: torch.Tensor, opset: int) -> Any:
    """Export ``module`` (one image batch in, one logits tensor out) and tidy the graph.

    Args:
        module: the model, in eval mode.
        example: an input batch of the deployed shape (the batch dim becomes dynamic, named ``batch``).
        opset: the default-domain opset to write.

    Returns:
        The ``onnx.ModelProto``.

    Raises:
        ExportError: the exporter fails, or writes another opset.
    """
    onnx = require("onnx", "sqakd-edge export")
    buf = io.BytesIO()
    try:
        _register_opset13_attention()
        with warnings.catch_warnings(), torch.no_grad(), _mha_fastpath(False), _adaptive_pool_as_matmul():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=opset,  # type: ignore[arg-type]
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
    except Exception as exc:  # the exporter raises many types; report the first line
        first = first_line(exc)
        raise ExportError(f"torch.onnx.export failed for {type(module).__name__}: {first}") from None
    model = onnx.load_from_string(buf.getvalue())
    written = opset_of(model)
    if written != opset:
        raise ExportError(f"asked for opset {opset} but the exporter wrote opset {written}")
    if len(model.graph.output) != 1:
        raise ExportError(f"the model returns {len(model.graph.output)} outputs; export needs one logits tensor")
    constants_to_initializers(model)
    fold_identity_initializers(model)
    drop_unused_initializers(model)
    model.producer_name = "sqakd-edge"
    return model


@contextlib.contextmanager
def _mha_fastpath(enabled: bool) -> Iterator[None]:
    """Switch nn.MultiheadAttention's fused inference path on or off for the block.

    The fused path (``aten::_native_multi_head_attention``) has no ONNX form; the exporter needs the composed
    one, which computes the same.
    """
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def _register_opset13_attention() -> None:
    """Let the TorchScript exporter write ``scaled_dot_product_attention`` at opset 13 (ViT's, Swin's attention).

    Its opset-14 form is MatMul, Softmax (one axis, as opset 13 defines it), Mul and Transpose, all in opset 13;
    only a causal mask needs opset 14 (Trilu), which classifiers do not use.
    """
    from torch.onnx._internal.torchscript_exporter import symbolic_opset14

    torch.onnx.register_custom_op_symbolic("aten::scaled_dot_product_attention",
                                           symbolic_opset14.scaled_dot_product_attention, 13)


def _pool_matrix(size: int, out: int) -> torch.Tensor:
    """``(out, size)``: row i averages the input cells adaptive pooling gives output cell i."""
    m = torch.zeros(out, size)
    for i in range(out):
        lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


@contextlib.contextmanager
def _adaptive_pool_as_matmul() -> Iterator[None]:
    """Export adaptive average pooling to a size that does not divide the input as two constant MatMuls.

    The TorchScript exporter refuses that case ("output size that are not factor of input size"), which is
    every torchvision VGG or AlexNet below 224 px (a 2x2 map pooled to 7x7). The input size is fixed in the
    graph, so the pooling is a constant linear map per axis: ``P_h @ x @ P_w^T`` computes the same averages.
    Only while exporting; the parity check compares the graph with the real operator.
    """
    original = F.adaptive_avg_pool2d

    def pool(x: torch.Tensor, output_size: Any) -> torch.Tensor:
        out = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh, ow = (h if out[0] is None else out[0]), (w if out[1] is None else out[1])
        if h % oh == 0 and w % ow == 0:
            return original(x, output_size)
        rows = _pool_matrix(h, oh).to(x.dtype)
        cols = _pool_matrix(w, ow).to(x.dtype).t().contiguous()
        return torch.matmul(torch.matmul(rows, x), cols)

    F.adaptive_avg_pool2d = pool  # type: ignore[assignment]  # restored below
    try:
        yield
    finally:
        F.adaptive_avg_pool2d = original


def opset_of(model: Any) -> int:
    """The default-domain (``ai.onnx``) opset of a model (0 when absent)."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def constants_to_initializers(model: Any) -> None:
    """Replace every ``Constant`` node holding a tensor by an initializer of the same name."""
    graph = model.graph
    keep = []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def fold_identity_initializers(model: Any) -> None:
    """Remove ``Identity`` nodes whose input is an initializer: consumers read the initializer directly."""
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(keep)


def drop_unused_initializers(model: Any) -> None:
    """Remove initializers no node reads."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def check_model(model: Any, what: str) -> None:
    """Run ``onnx.checker`` (with shape inference).

    Raises:
        ExportError: the checker rejects the model.
    """
    onnx = require("onnx", "sqakd-edge export")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        first = first_line(exc)
        raise ExportError(f"onnx.checker rejects the {what} graph: {first}") from None
