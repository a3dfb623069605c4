"""Quantization: quantizer forwards (PACT, LSQ, DoReFa, interval), backwards (STE, EWGS), quant layers.

``prepare_qat(model, QuantConfig)`` is the entry point; every quantizer states its integer grid
(:class:`IntegerGrid`) or raises :class:`NotDeployable`.
"""

from .grid import IntegerGrid, NotDeployable
from .modules import QUANT_MODULES, QuantConv2d, QuantLayer, QuantLinear
from .prepare import (
    QuantPlan,
    initialize_quantizers,
    iter_quant_layers,
    iter_quantizers,
    layers_to_quantize,
    plan_quantization,
    prepare_qat,
    set_quantization,
    to_float,
    uninitialized_quantizers,
    weighted_layer_names,
)
from .quantizers import FAMILIES, Quantizer

__all__ = [
    "FAMILIES", "QUANT_MODULES", "IntegerGrid", "NotDeployable", "QuantConv2d", "QuantLayer", "QuantLinear",
    "QuantPlan", "Quantizer", "initialize_quantizers", "iter_quant_layers", "iter_quantizers", "layers_to_quantize",
    "plan_quantization", "prepare_qat", "set_quantization", "to_float", "uninitialized_quantizers",
    "weighted_layer_names",
]
