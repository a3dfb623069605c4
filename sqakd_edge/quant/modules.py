"""Quant layers: float Conv2d/Linear plus a weight quantizer and an input-activation quantizer.

Registered in :data:`QUANT_MODULES` (float type -> quant type); ``prepare_qat`` swaps by that table,
so adding a layer type means adding a class with ``from_float``/``to_float`` and one table entry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import QuantConfig
from .grid import IntegerGrid
from .quantizers import FAMILIES, Quantizer


def make_act_quantizer(config: QuantConfig, bits: int, sign: str, family: str | None = None) -> Quantizer:
    """An activation quantizer of ``family`` (default: the config's) at ``bits``, with the config's backward."""
    family = family or config.quantizer
    return FAMILIES[family][1](bits, config.backward, config.ewgs_delta_init, sign=sign, deployable=config.deployable)


def make_quantizers(layer: nn.Module, config: QuantConfig) -> tuple[Quantizer, Quantizer]:
    """The (weight, input-activation) quantizer pair that ``config`` asks for, sized for ``layer``."""
    weight_cls = FAMILIES[config.quantizer][0]
    weight: torch.Tensor = layer.weight  # type: ignore[assignment]  # Conv2d/Linear: a Parameter
    channels = int(weight.shape[0]) if config.weight_granularity == "per_channel" else None
    weight_q = weight_cls(config.wbits, channels=channels, deployable=config.deployable,
                          backward=config.backward, delta_init=config.ewgs_delta_init)
    return weight_q, make_act_quantizer(config, config.abits, config.act_sign)


class QuantLayer:
    """Mixin: what every quant layer offers export and training."""

    fx_leaf = True  # one call in fx graphs: the quantizers' first-batch branches are not traceable
    holds_integer_weights = True
    weight: torch.Tensor
    weight_quantizer: Quantizer
    act_quantizer: Quantizer

    def quantized_weight(self) -> torch.Tensor:
        """The fake-quantized weight the forward pass uses."""
        return self.weight_quantizer(self.weight)

    def weight_grid(self) -> IntegerGrid:
        """The integer grid of the quantized weight."""
        return self.weight_quantizer.grid(self.weight.detach())

    def input_grid(self) -> IntegerGrid:
        """The integer grid of the quantized input activation."""
        return self.act_quantizer.grid()


class QuantConv2d(nn.Conv2d, QuantLayer):
    """``nn.Conv2d`` whose weight and input pass through fake quantizers."""

    @classmethod
    def from_float(cls, conv: nn.Conv2d, config: QuantConfig) -> QuantConv2d:
        """A quant copy of ``conv`` (same weights)."""
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,  # type: ignore[arg-type]
                conv.padding, conv.dilation, conv.groups, conv.bias is not None,  # type: ignore[arg-type]
                conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
        q.load_state_dict(conv.state_dict())
        q.weight_quantizer, q.act_quantizer = make_quantizers(conv, config)
        return q

    def to_float(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the float (not quantized) weights."""
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,  # type: ignore[arg-type]
                         self.padding, self.dilation, self.groups, self.bias is not None,  # type: ignore[arg-type]
                         self.padding_mode)
        conv.weight.data.copy_(self.weight.data)
        if self.bias is not None:
            conv.bias.data.copy_(self.bias.data)  # type: ignore[union-attr]
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.act_quantizer(x), self.quantized_weight(), self.bias)


class QuantLinear(nn.Linear, QuantLayer):
    """``nn.Linear`` whose weight and input pass through fake quantizers."""

    @classmethod
    def from_float(cls, linear: nn.Linear, config: QuantConfig) -> QuantLinear:
        """A quant copy of ``linear`` (same weights)."""
        q = cls(linear.in_features, linear.out_features, linear.bias is not None,
                device=linear.weight.device, dtype=linear.weight.dtype)
        q.load_state_dict(linear.state_dict())
        q.weight_quantizer, q.act_quantizer = make_quantizers(linear, config)
        return q

    def to_float(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the float (not quantized) weights."""
        linear = nn.Linear(self.in_features, self.out_features, self.bias is not None)
        linear.load_state_dict({k: v for k, v in self.state_dict().items() if "quantizer" not in k})
        return linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.act_quantizer(x), self.quantized_weight(), self.bias)


# float layer type -> quant layer type (exact types: a quant layer is never wrapped twice)
QUANT_MODULES: dict[type[nn.Module], type[nn.Module]] = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}
