"""ONNX Runtime's int32 bias grid, simulated in training (``QuantConfig.int32_bias``).

ONNX Runtime runs a QDQ conv on its integer kernels with an int32 bias on the grid ``input scale x weight
scale``: it rounds the float bias (the conv's own, with its BatchNorm folded in) onto that grid. A low-bit
student that never saw that rounding disagrees with its own graph (export's "on" parity refuses it). With
``int32_bias`` the student adds exactly that rounding after each quantized layer (after its BatchNorm: batch
statistics in training, running ones in eval), with a straight-through gradient, and export writes the rounded
bias; so the PyTorch student, ORT's reference run and ORT's integer kernels compute the same numbers.

The grid is as fine as int8 weights allow: export stores a layer's low-bit integer weights multiplied by
``k = limit // peak`` (the largest factor that keeps them inside int8), which divides the grid by ``k``;
training and export compute ``k`` here, the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .grid import IntegerGrid


def weight_limit(input_qmax: int) -> int:
    """The largest int8 weight export may store for a layer whose largest uint8/int8 input is ``input_qmax``.

    127, or above 127 (uint8 inputs up to 255) what keeps pairs of products inside int16, which x86 u8*s8
    kernels without VNNI accumulate in.
    """
    return 127 if input_qmax <= 127 else 32767 // (2 * input_qmax)


def ort_input_qmax(grid: IntegerGrid) -> int:
    """The largest uint8 value of a layer's input in the ONNX Runtime graph (a signed grid sits at zero point 128)."""
    return grid.qmax + (128 if grid.signed else 0)


def finest_multiplier(peak: torch.Tensor, limit: int) -> torch.Tensor:
    """Per channel, the largest ``k`` with ``k * peak <= limit`` (1 for an all-zero channel)."""
    peak = peak.to(torch.int64)
    k = torch.div(torch.full_like(peak, limit), peak.clamp_min(1), rounding_mode="floor")
    return torch.where(peak > 0, k, torch.ones_like(k)).clamp_min(1)


def bias_step(layer: Any, factor: torch.Tensor) -> torch.Tensor:
    """The int32 bias grid of quant ``layer``, per channel (float64).

    ``input scale x weight scale x |factor| / k``, where ``factor`` scales the layer's output (its BatchNorm's
    ``gamma / sqrt(var + eps)``, or ones).
    """
    with torch.no_grad():
        wgrid = layer.weight_grid()
        wq = layer.quantized_weight().detach()
        ints = wgrid.integers(wq.to(torch.float64))
        peak = ints.reshape(ints.shape[0], -1).abs().amax(dim=1) if ints.numel() else torch.zeros(ints.shape[0])
        k = finest_multiplier(peak.round(), weight_limit(ort_input_qmax(layer.input_grid())))
        w_scale = wgrid.scale.detach().to(torch.float64).reshape(-1)
        in_scale = layer.input_grid().scale.detach().to(torch.float64).reshape(-1)
        return in_scale * w_scale * factor.detach().to(torch.float64).abs() / k.to(torch.float64)


def round_to_step(bias: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """``bias`` rounded onto ``step`` (a channel whose step is 0, a dead BatchNorm channel, keeps its bias)."""
    live = step > 0
    rounded = torch.round(bias / torch.where(live, step, torch.ones_like(step))) * step
    return torch.where(live, rounded, bias)


class Int32BiasHook:
    """A forward hook on the module that ends a quant layer (its BatchNorm, or the layer itself).

    It adds the difference between the layer's int32-rounded bias and its float bias to the output, with no
    gradient (straight through). Off while the layer's quantizers are off.
    """

    def __init__(self, layer: nn.Module, bn: nn.BatchNorm2d | None) -> None:
        self.layer = layer
        self.bn = bn

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        if not (layer.act_quantizer.enabled and layer.weight_quantizer.enabled):  # type: ignore[union-attr]
            return output
        with torch.no_grad():
            bias = _layer_bias(layer, output.shape[1])
            if self.bn is None:
                factor = torch.ones_like(bias)
            else:
                factor, bias = _batchnorm_fold(self.bn, inputs[0], bias)
            correction = round_to_step(bias, bias_step(layer, factor)) - bias
        shape = [1, -1] + [1] * (output.dim() - 2)
        return output + correction.to(output.dtype).reshape(shape)


def _layer_bias(layer: Any, channels: int) -> torch.Tensor:
    b = getattr(layer, "bias", None)
    return b.detach().to(torch.float64) if b is not None else torch.zeros(channels, dtype=torch.float64)


def _batchnorm_fold(bn: nn.BatchNorm2d, x: torch.Tensor, conv_bias: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gamma / sqrt(var + eps), beta + (conv_bias - mean) * factor)`` with the statistics ``bn`` used for ``x``."""
    if bn.training or bn.running_mean is None:  # batch statistics, as BatchNorm normalised this batch
        xd = x.detach().to(torch.float64)
        mean = xd.mean(dim=(0, 2, 3))
        var = xd.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean = bn.running_mean.detach().to(torch.float64)
        var = bn.running_var.detach().to(torch.float64)  # type: ignore[union-attr]
    gamma = bn.weight.detach().to(torch.float64) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.detach().to(torch.float64) if bn.bias is not None else torch.zeros_like(var)
    factor = gamma / torch.sqrt(var + bn.eps)
    # as export folds it (fold_layer): the folded conv computes factor * (w * x) + this bias
    return factor, beta + (conv_bias - mean) * factor


def attach_int32_bias(student: nn.Module, ends: dict[str, str | None]) -> int:
    """Hook every quant layer named in ``ends`` (layer -> the BatchNorm that follows it, or None); returns how many."""
    count = 0
    for name, bn_name in ends.items():
        layer = student.get_submodule(name)
        bn = student.get_submodule(bn_name) if bn_name else None
        if bn is None and getattr(layer, "bias", None) is None:
            continue  # no bias, no grid to round onto
        (bn if bn is not None else layer).register_forward_hook(Int32BiasHook(layer, bn))  # type: ignore[arg-type]
        count += 1
    return count


def detach_int32_bias(model: nn.Module) -> None:
    """Remove the hooks (a float copy of a student computes float biases)."""
    for m in model.modules():
        for key, hook in list(m._forward_hooks.items()):
            if isinstance(hook, Int32BiasHook):
                del m._forward_hooks[key]
