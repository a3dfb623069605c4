"""``prepare_qat``: turn a float model into a fake-quant student, and the helpers around it."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..config import QuantConfig
from ..errors import ConfigError
from ..graph import TraceFailure, called_modules, foldable_batchnorms, set_submodule, trace
from .int32_bias import attach_int32_bias, detach_int32_bias
from .modules import QUANT_MODULES, QuantLayer
from .quantizers import Quantizer
from .residual import quantize_residuals


def weighted_layer_names(model: nn.Module) -> list[str]:
    """Names of the layers ``prepare_qat`` can swap (exact Conv2d/Linear types), in definition order."""
    return [name for name, m in model.named_modules() if type(m) in QUANT_MODULES]


@dataclass(frozen=True)
class QuantPlan:
    """Which weighted layers a student quantizes, and why the others stay float.

    Attributes:
        quantized: layer names, in the forward's call order.
        kept_float: layer name -> reason (first/last layer, ``keep_float``, or not called as a module).
        weighted: every swappable layer, in call order (then the uncalled ones in definition order).
        ends: the first and the last weighted layer the forward calls.
    """

    quantized: tuple[str, ...]
    kept_float: dict[str, str]
    weighted: tuple[str, ...]
    ends: tuple[str, ...] = ()

    def describe(self) -> dict[str, object]:
        """A JSON-able summary (for a run's summary.json)."""
        return {"quantized": len(self.quantized), "weighted": len(self.weighted),
                "kept_float": dict(self.kept_float)}


def plan_quantization(model: nn.Module, config: QuantConfig) -> QuantPlan:
    """The layer policy: every Conv2d/Linear the forward calls, but the first and last (by default) and ``keep_float``.

    First and last are by the forward's call order, not by name or definition order.
    A layer whose weights its parent reads directly instead of calling it (e.g. the projections inside
    torchvision's Swin attention, which call ``F.linear(x, self.qkv.weight)``) would ignore a quant layer put
    in its place, so it stays float and is listed with that reason.

    Raises:
        ConfigError: a model fx cannot trace (naming where tracing stopped), or ``keep_float`` naming a layer
            that is not a swappable layer of the model.
    """
    names = weighted_layer_names(model)
    unknown = sorted(set(config.keep_float) - set(names))
    if unknown:
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ConfigError(f"keep_float names unknown layer(s) {', '.join(unknown)}; layers: {shown}")
    try:
        gm = trace(model)
    except TraceFailure as exc:
        raise ConfigError(str(exc)) from None
    called = [n for n in called_modules(gm, tuple(QUANT_MODULES)) if type(model.get_submodule(n)) in QUANT_MODULES]
    kept: dict[str, str] = {n: "not called by the forward as a module (its parent reads its weights directly)"
                            for n in names if n not in called}
    if config.keep_first_last_float and called:
        kept[called[-1]] = "last weighted layer (kept float, as in the paper)"
        kept[called[0]] = "first weighted layer (kept float, as in the paper)"
    for n in config.keep_float:
        kept.setdefault(n, "keep_float")
    quantized = tuple(n for n in called if n not in kept)
    ends = (called[0], called[-1]) if called else ()
    return QuantPlan(quantized, kept, tuple(called) + tuple(n for n in names if n not in called), ends)


def layers_to_quantize(model: nn.Module, config: QuantConfig) -> list[str]:
    """The names :func:`plan_quantization` quantizes, in call order."""
    return list(plan_quantization(model, config).quantized)


def prepare_qat(model: nn.Module, config: QuantConfig) -> nn.Module:
    """A fake-quant copy of a float model; the input model is left untouched.

    Args:
        model: a float model (e.g. from ``create_model``, torchvision, or your own), typically holding the
            teacher's weights; its forward must be fx-traceable.
        config: bits, quantizer family, backward and layer policy (:func:`plan_quantization`).

    Returns:
        A deep copy in which the selected Conv2d/Linear layers are quant layers, and (with
        ``residual_bits``) both inputs of each residual Add after one are quantized.

    Raises:
        ConfigError: a model that already holds quant layers, that fx cannot trace, or that has no layer to
            quantize.

    Example:
        >>> student = prepare_qat(teacher, QuantConfig(quantizer="lsq", wbits=4, abits=4))
    """
    if any(isinstance(m, QuantLayer) for m in model.modules()):
        raise ConfigError("the model already holds quant layers; pass the float model to prepare_qat")
    plan = plan_quantization(model, config)
    if not plan.weighted:
        raise ConfigError(f"{type(model).__name__} has no Conv2d or Linear layer to quantize; sqakd-edge quantizes "
                          "the weights and inputs of those layers")
    student = copy.deepcopy(model)
    for p in student.parameters():  # a frozen teacher must not give a student with frozen layers
        p.requires_grad_(True)
    # the first and last layer at their own bits (an all-integer graph at 8 bits)
    ends = set(plan.ends) if config.first_last_bits else set()
    ends_config = dataclasses.replace(config, wbits=config.first_last_bits, abits=config.first_last_bits) \
        if ends else config
    for name in plan.quantized:
        layer = student.get_submodule(name)
        layer_config = ends_config if name in ends else config
        set_submodule(student, name, QUANT_MODULES[type(layer)].from_float(layer, layer_config))  # type: ignore[attr-defined]
    if config.residual_bits:
        quantize_residuals(student, config)
    if config.int32_bias:
        _attach_int32_bias(student)
    # what export records in its manifest (not a tensor: not in state_dict)
    student.sqakd_quant_config = config  # type: ignore[assignment]
    return student


def _attach_int32_bias(student: nn.Module) -> None:
    """Hook ONNX Runtime's int32 bias rounding onto each quant layer's end (its folded BatchNorm, or itself)."""
    gm = trace(student)
    after = {str(conv.target): str(bn.target) for bn, conv in foldable_batchnorms(gm).items()}
    ends: dict[str, str | None] = {}
    for name, layer in iter_quant_layers(student):
        layer.int32_bias = True  # type: ignore[attr-defined]  # export keeps the grid (export/fold.py)
        ends[name] = after.get(name)
    attach_int32_bias(student, ends)


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


@torch.no_grad()
def initialize_quantizers(student: nn.Module, batch: torch.Tensor) -> list[str]:
    """Set every quantizer's data-dependent range (PACT's clip, LSQ's step...) from one batch of real inputs.

    Runs the student once in eval mode, so BatchNorm normalises by its running statistics (the teacher's,
    for a student made from it) and the ranges match what the layers will see; the student's mode is
    restored. torchao's ``initialize_fake_quantizers`` plays the same part. Training does it on its first
    global batch before the optimiser and DDP exist; export refuses a student where it was never done.

    Returns:
        The names of the quantizers this call initialised.
    """
    cold = uninitialized_quantizers(student)
    was_training = student.training
    student.eval()
    try:
        student(batch)
    finally:
        student.train(was_training)
    still = set(uninitialized_quantizers(student))
    return [name for name in cold if name not in still]


def uninitialized_quantizers(student: nn.Module, among: set[str] | None = None) -> list[str]:
    """Names of the enabled quantizers whose ranges were never set from data.

    ``among`` limits the answer to these names (e.g. the quantizers a forward pass reaches).
    """
    return [name for name, q in iter_quantizers(student)
            if q.enabled and not bool(q.initialized) and (among is None or name in among)]


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
        set_submodule(float_model, name, layer.to_float())  # type: ignore[attr-defined]
    set_quantization(float_model, False)
    detach_int32_bias(float_model)
    return float_model
