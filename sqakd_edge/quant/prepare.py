"""``prepare_qat``: turn a float model into a fake-quant student, and the helpers around it."""

from __future__ import annotations

import copy
from collections.abc import Iterator

from torch import nn

from ..config import QuantConfig
from ..errors import ConfigError
from .modules import QUANT_MODULES, QuantLayer
from .quantizers import Quantizer
from .residual import quantize_residuals


def weighted_layer_names(model: nn.Module) -> list[str]:
    """Names of the layers ``prepare_qat`` can swap, in definition order."""
    return [name for name, m in model.named_modules() if type(m) in QUANT_MODULES]


def layers_to_quantize(model: nn.Module, config: QuantConfig) -> list[str]:
    """The layer policy: every swappable layer except the first and last (by default) and ``keep_float``.

    Raises:
        ConfigError: when ``keep_float`` names a layer that is not a swappable layer of the model.
    """
    names = weighted_layer_names(model)
    unknown = sorted(set(config.keep_float) - set(names))
    if unknown:
        raise ConfigError(f"keep_float names unknown layer(s) {', '.join(unknown)}; layers: {', '.join(names)}")
    keep = set(config.keep_float)
    if config.keep_first_last_float and names:
        keep.update({names[0], names[-1]})
    return [n for n in names if n not in keep]


def prepare_qat(model: nn.Module, config: QuantConfig) -> nn.Module:
    """A fake-quant copy of a float model; the input model is left untouched.

    Args:
        model: a float model (e.g. from ``create_model``), typically holding the teacher's weights.
        config: bits, quantizer family, backward and layer policy.

    Returns:
        A deep copy in which the selected Conv2d/Linear layers are quant layers, and (with
        ``residual_bits``) both inputs of each residual Add after one are quantized.

    Example:
        >>> student = prepare_qat(teacher, QuantConfig(quantizer="lsq", wbits=4, abits=4))
    """
    if any(isinstance(m, QuantLayer) for m in model.modules()):
        raise ConfigError("the model already holds quant layers; pass the float model to prepare_qat")
    student = copy.deepcopy(model)
    for p in student.parameters():  # a frozen teacher must not give a student with frozen layers
        p.requires_grad_(True)
    for name in layers_to_quantize(student, config):
        parent_name, _, attr = name.rpartition(".")
        parent = student.get_submodule(parent_name) if parent_name else student
        layer = getattr(parent, attr)
        setattr(parent, attr, QUANT_MODULES[type(layer)].from_float(layer, config))  # type: ignore[attr-defined]
    if config.residual_bits:
        quantize_residuals(student, config)
    return student


def iter_quant_layers(model: nn.Module) -> Iterator[tuple[str, QuantLayer]]:
    """``(name, layer)`` for every quant layer of ``model``."""
    for name, m in model.named_modules():
        if isinstance(m, QuantLayer):
            yield name, m


def iter_quantizers(model: nn.Module) -> Iterator[tuple[str, Quantizer]]:
    """``(name, quantizer)`` for every quantizer of ``model``."""
    for name, m in model.named_modules():
        if isinstance(m, Quantizer):
            yield name, m


def set_quantization(model: nn.Module, enabled: bool) -> None:
    """Switch every quantizer on or off (off: the student computes in float with its trained weights)."""
    for _, q in iter_quantizers(model):
        q.enabled = enabled


def to_float(model: nn.Module) -> nn.Module:
    """A float copy of a student: quant layers become plain layers with the same float weights.

    Quantizers outside quant layers (on residual Adds) stay in place, switched off: identities.
    """
    float_model = copy.deepcopy(model)
    for name, layer in list(iter_quant_layers(float_model)):
        parent_name, _, attr = name.rpartition(".")
        parent = float_model.get_submodule(parent_name) if parent_name else float_model
        setattr(parent, attr, layer.to_float())  # type: ignore[attr-defined]
    set_quantization(float_model, False)
    return float_model
