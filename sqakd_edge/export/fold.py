"""Exact BatchNorm folding: BN goes into the per-channel weight scale and the bias, never into rounded weights.

A quant conv computes ``conv(xq, s * q)`` with integer weights ``q`` and a weight scale ``s`` (per output
channel or per tensor). A following BatchNorm (eval mode) multiplies output channel ``c`` by
``f_c = gamma_c / sqrt(var_c + eps)`` and adds ``beta_c - mean_c * f_c``. Because ``f_c`` is per output
channel it commutes with the convolution, so ``BN(conv(xq, s*q)) = conv(xq, (s*|f|) * (sign(f)*q)) + b'``:
the integers stay integers (a negative ``gamma`` flips their sign), only the scale and the bias change.
Per-tensor weight scales become per-channel scales here.

Conv->BN pairs are found on a ``torch.fx`` trace of the model (quant layers and quantizers are leaves),
which covers our registry models and torchvision's; a model fx cannot trace is refused with the reason.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from .. import graph
from ..errors import ExportError
from ..graph import foldable_batchnorms, set_submodule
from ..quant.int32_bias import bias_step, round_to_step
from ..quant.modules import QuantConv2d, QuantLayer, QuantLinear
from ..quant.quantizers import Quantizer


def trace(model: nn.Module) -> fx.GraphModule:
    """A ``torch.fx`` GraphModule of ``model`` (quant layers, quantizers and folded layers as single calls).

    Raises:
        ExportError: when fx cannot trace the model's forward (e.g. data-dependent control flow).
    """
    try:
        return graph.trace(model)
    except graph.TraceFailure as exc:
        raise ExportError(str(exc)) from None


class FoldedQuantLayer(nn.Module):
    """A quant layer with its BatchNorm folded in: integer weights, per-channel scales, a float bias.

    ``forward`` runs the original input quantizer, so it computes what the student computed (up to float
    rounding of the folded scale and bias). Export reads ``weight_int``, ``weight_scale``, ``bias`` and the
    quantizer's grid.

    Attributes:
        source: the quant layer's name in the student.
        bn: the folded BatchNorm's name, or None.
        wbits: the weight quantizer's bits.
        act_quantizer: the student's input quantizer (shared, not copied).
        int32_bias: the student simulated ONNX Runtime's int32 bias grid (``QuantConfig.int32_bias``): the bias
            is already on it, and export must keep the grid the student used (the finest one).
    """

    fx_leaf = True
    holds_integer_weights = True
    weight_int: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight_int: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor,
                 act_quantizer: Quantizer, *, source: str, bn: str | None, wbits: int, dead_channels: int,
                 int32_bias: bool = False) -> None:
        super().__init__()
        self.register_buffer("weight_int", weight_int.to(torch.int32))
        self.register_buffer("weight_scale", weight_scale)  # float32 (float64 to check folding: fold_batchnorm)
        self.register_buffer("bias", bias)
        self.act_quantizer = act_quantizer
        self.source = source
        self.bn = bn
        self.wbits = wbits
        self.dead_channels = dead_channels
        self.int32_bias = int32_bias

    def dequantized_weight(self) -> torch.Tensor:
        """``weight_scale * weight_int``, the scale broadcast over the output-channel axis 0."""
        shape = [-1] + [1] * (self.weight_int.dim() - 1)
        return self.weight_int.to(self.weight_scale.dtype) * self.weight_scale.reshape(shape)


class ConvGeometry:
    """A Conv2d's stride, padding, dilation, groups and padding mode, and the convolution they define."""

    def __init__(self, conv: nn.Conv2d) -> None:
        self.stride = conv.stride
        self.padding = conv.padding
        self.dilation = conv.dilation
        self.groups = conv.groups
        self.padding_mode = conv.padding_mode
        self.reversed_padding = conv._reversed_padding_repeated_twice

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The convolution with this geometry (``x`` already quantized)."""
        if self.padding_mode != "zeros":
            x = F.pad(x, self.reversed_padding, mode=self.padding_mode)
            return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class FoldedQuantConv2d(FoldedQuantLayer):
    """A :class:`FoldedQuantLayer` computing a 2-D convolution."""

    def __init__(self, conv: nn.Conv2d, weight_int: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor,
                 act_quantizer: Quantizer, *, source: str, bn: str | None, wbits: int, dead_channels: int,
                 int32_bias: bool = False) -> None:
        super().__init__(weight_int, weight_scale, bias, act_quantizer, source=source, bn=bn, wbits=wbits,
                         dead_channels=dead_channels, int32_bias=int32_bias)
        self.geometry = ConvGeometry(conv)

    def conv(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The convolution with this layer's geometry (``x`` already quantized)."""
        return self.geometry.conv(x, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act_quantizer(x), self.dequantized_weight(), self.bias)


class FoldedQuantLinear(FoldedQuantLayer):
    """A :class:`FoldedQuantLayer` computing a linear layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quantizer(x), self.dequantized_weight(), self.bias)


@dataclass
class FoldedModel:
    """The result of :func:`fold_batchnorm`.

    Attributes:
        module: an fx GraphModule computing the student with BN folded (quant layers become
            :class:`FoldedQuantLayer`, float Conv+BN become one float Conv).
        quant_layers: name in ``module`` -> folded quant layer, in graph order.
        folded_bn: names of the BatchNorms that were folded.
    """

    module: fx.GraphModule
    quant_layers: dict[str, FoldedQuantLayer]
    folded_bn: list[str]


def _integer_weights(layer: QuantLayer, name: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The layer's integer weights and per-channel scale, checked against its fake-quant weights."""
    grid = layer.weight_grid()
    with torch.no_grad():
        wq = layer.quantized_weight().detach().to(torch.float64)
    q = grid.integers(wq).to(torch.float64)
    scale = grid.scale.detach().to(torch.float64)
    out_channels = wq.shape[0]
    scale = scale.reshape(-1) if scale.dim() else scale.reshape(1)
    if scale.numel() == 1:
        scale = scale.expand(out_channels).clone()
    shape = [-1] + [1] * (wq.dim() - 1)
    err = (q * scale.reshape(shape) - wq).abs().max().item() if wq.numel() else 0.0
    tol = 1e-4 * float(scale.max()) + 1e-12
    if err > tol:  # the quantizer broke its own contract: a bug, not a user error, but say where
        raise ExportError(f"layer {name}: the weight quantizer's values are not on the integer grid it states "
                          f"(off by {err:.3g}); this is a bug in its grid(), please report it")
    return q, scale, int(layer.weight_quantizer.bits)


def _bn_factor(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gamma/sqrt(var+eps), beta - mean*gamma/sqrt(var+eps))`` in float64."""
    var = bn.running_var.detach().to(torch.float64)  # type: ignore[union-attr]
    mean = bn.running_mean.detach().to(torch.float64)  # type: ignore[union-attr]
    gamma = bn.weight.detach().to(torch.float64) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().to(torch.float64) if bn.bias is not None else torch.zeros_like(var)
    factor = gamma / torch.sqrt(var + bn.eps)
    return factor, beta - mean * factor


def fold_layer(layer: QuantLayer, bn: nn.BatchNorm2d | None, *, name: str, bn_name: str | None = None,
               dtype: torch.dtype = torch.float32) -> FoldedQuantLayer:
    """Fold ``bn`` (or nothing) into a quant Conv2d/Linear.

    Args:
        layer: a ``QuantConv2d`` or ``QuantLinear`` whose quantizers are initialised.
        bn: the BatchNorm2d applied to its output (eval statistics), or None.
        name: the layer's name, for messages.
        bn_name: the BatchNorm's name, recorded in the result.
        dtype: of the folded scale and bias (computed in float64, stored in this type).

    Returns:
        The folded layer: integers ``sign(f)*q``, scale ``s*|f|``, bias ``beta - mean*f + bias*f``.
        A channel whose folded scale is 0 (``gamma = 0``: a dead channel) gets integers 0 and the
        smallest live scale, because TensorRT rejects zero scales.
    """
    q, scale, bits = _integer_weights(layer, name)
    out_channels = q.shape[0]
    conv_bias = layer.bias.detach().to(torch.float64) if layer.bias is not None else torch.zeros(out_channels,  # type: ignore[attr-defined]
                                                                                                  dtype=torch.float64)
    if bn is None:
        factor = torch.ones(out_channels, dtype=torch.float64)
        shift = torch.zeros(out_channels, dtype=torch.float64)
    else:
        factor, shift = _bn_factor(bn)
    shape = [-1] + [1] * (q.dim() - 1)
    q = q * torch.sign(factor).reshape(shape)
    new_scale = scale * factor.abs()
    bias = shift + conv_bias * factor
    dead = (new_scale == 0) | ~torch.isfinite(new_scale)
    if bool(dead.any()):
        live = new_scale[~dead]
        safe = float(live.min()) if live.numel() else 1.0
        q[dead] = 0
        new_scale = torch.where(dead, torch.full_like(new_scale, safe), new_scale)
        bias = torch.where(torch.isfinite(bias), bias, torch.zeros_like(bias))
    int32_bias = bool(getattr(layer, "int32_bias", False))
    if int32_bias:  # the bias the student computed with (quant/int32_bias.py)
        bias = round_to_step(bias, bias_step(layer, factor))
    act_q = layer.act_quantizer
    tensors = (q.round().to(torch.int32), new_scale.to(dtype), bias.to(dtype), act_q)
    dead_count = int(dead.sum())
    if isinstance(layer, QuantConv2d):
        return FoldedQuantConv2d(layer, *tensors, source=name, bn=bn_name, wbits=bits, dead_channels=dead_count,
                                 int32_bias=int32_bias)
    if isinstance(layer, QuantLinear):
        return FoldedQuantLinear(*tensors, source=name, bn=bn_name, wbits=bits, dead_channels=dead_count,
                                 int32_bias=int32_bias)
    raise ExportError(f"layer {name}: export supports QuantConv2d and QuantLinear, not {type(layer).__name__}")


def fold_batchnorm(model: nn.Module, *, dtype: torch.dtype = torch.float32) -> FoldedModel:
    """Trace ``model`` and fold every BatchNorm2d that directly follows a Conv2d (quant or float).

    The model is not modified (it is deep-copied; the folded layers share nothing with it).

    Args:
        model: the fake-quant student (quantizers initialised), or any float model.
        dtype: of the folded scales and biases: float32 (what the graph holds), or float64 with a
            float64 model, to check that folding is exact apart from float32 rounding.

    Returns:
        The folded model (eval mode).

    Raises:
        ExportError: a model fx cannot trace.
    """
    model = copy.deepcopy(model).eval()
    gm = trace(model)
    modules = dict(gm.named_modules())
    folded_bn: list[str] = []
    bn_of: dict[str, str] = {}
    for node, prev in foldable_batchnorms(gm).items():
        bn_of[str(prev.target)] = str(node.target)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    quant_layers: dict[str, FoldedQuantLayer] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        target = str(node.target)
        layer = modules[target]
        bn_name = bn_of.get(target)
        bn = modules[bn_name] if bn_name else None
        if isinstance(layer, QuantLayer):
            folded = fold_layer(layer, bn, name=target, bn_name=bn_name, dtype=dtype)  # type: ignore[arg-type]
            set_submodule(gm, target, folded)
            quant_layers[target] = folded
        elif bn is not None:
            set_submodule(gm, target, torch.nn.utils.fusion.fuse_conv_bn_eval(layer, bn))  # type: ignore[arg-type]
        if bn_name:
            folded_bn.append(bn_name)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return FoldedModel(gm.eval(), quant_layers, folded_bn)
