"""Lowering: the folded student becomes a module whose ONNX export is the QDQ graph for a target.

Every quant layer computes ``conv(DQ(Q(x)), DQ(w_int8, per-channel scale)) + bias``; nothing else is
quantized, except (TensorRT) the skip branch of a residual Add whose other input is a quant layer's
output: TensorRT then fuses the Add into that conv (its recommended placement). The skip branch is float
in the student, so that Q/DQ is the one place the graph is not bit-for-bit the student: it gets its own
int8 scale covering the values seen on the calibration inputs (with headroom), and parity measures it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..config import target_rules
from ..errors import ExportError
from ..graph import is_nonnegative, residual_skips, set_submodule
from ..quant.quantizers import Quantizer
from .fold import FoldedModel, FoldedQuantConv2d, FoldedQuantLayer, FoldedQuantLinear
from .plan import FIX, GridMiss, LayerPlan, plan_activation, plan_layers
from .qdq import QDQ, ActQDQ, dequantize_weight

# The skip-branch scale covers max|x| on the calibration inputs times this, so inputs a little beyond
# what calibration saw are not clipped.
SKIP_HEADROOM = 1.25


class LoweredLayer(nn.Module):
    """A quant layer as the exported graph computes it."""

    weight_q: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor

    def __init__(self, plan: LayerPlan, bias: torch.Tensor, *, input_on_grid: bool = False) -> None:
        super().__init__()
        self.act = plan.act
        self.input_on_grid = input_on_grid  # the input comes out of a Q/DQ on the same grid: no second one
        self.register_buffer("weight_q", plan.weight_int.to(torch.int8))
        self.register_buffer("weight_scale", plan.weight_scale.to(torch.float32))
        self.register_buffer("bias", bias.to(torch.float32))

    def quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` through the input Q/DQ, or as it is when it already comes out of the same Q/DQ."""
        return x if self.input_on_grid else self.act.apply(x)


class LoweredConv2d(LoweredLayer):
    """Conv2d with an input Q/DQ and int8 weights."""

    def __init__(self, plan: LayerPlan, folded: FoldedQuantConv2d, *, input_on_grid: bool = False) -> None:
        super().__init__(plan, folded.bias, input_on_grid=input_on_grid)
        self.geometry = folded.geometry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.geometry.conv(self.quantized_input(x), dequantize_weight(self.weight_q, self.weight_scale),
                                  self.bias)


class LoweredLinear(LoweredLayer):
    """Linear with an input Q/DQ and int8 weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantized_input(x), dequantize_weight(self.weight_q, self.weight_scale), self.bias)


@dataclass
class Lowered:
    """The lowered model and what it is made of.

    Attributes:
        module: the module to export (fx GraphModule).
        plans: layer name -> plan.
        skips: residual Add name -> skip-branch Q/DQ (TensorRT).
        output_step: per-class logit step when the last layer is quantized (input scale x weight scale),
            else None.
    """

    module: fx.GraphModule
    plans: dict[str, LayerPlan]
    skips: dict[str, ActQDQ] = field(default_factory=dict)
    output_step: torch.Tensor | None = None
    standalone_notes: list[str] = field(default_factory=list)

    @property
    def requantized(self) -> list[str]:
        """``layer: note`` for every re-quantized grid."""
        return [f"{name}: {note}" for name, p in self.plans.items() for note in p.requantized] + self.standalone_notes


def lower_standalone_quantizers(gm: fx.GraphModule, target: str, *, allow_requantize: bool) -> list[str]:
    """Replace activation quantizers called on their own (e.g. a student's residual-skip quantizer) by Q/DQ.

    Returns:
        Notes on re-quantized grids.

    Raises:
        ExportError: a grid that does not fit (with the quantizer's name and the fix).
    """
    notes: list[str] = []
    modules = dict(gm.named_modules())
    # A quantizer shared by a block and the quant layers reading it (``share_residual_stream``) may be
    # traced under a layer's path (``...conv1.act_quantizer``); its Q/DQ goes under the block's name.
    paths: dict[int, list[str]] = {}
    for path, module in gm.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), []).append(path)

    def outside_layers(path: str) -> bool:
        return not isinstance(modules.get(path.rpartition(".")[0]), FoldedQuantLayer)

    for node in gm.graph.nodes:
        q = modules.get(str(node.target)) if node.op == "call_module" else None
        if not isinstance(q, Quantizer) or q.is_weight or not q.enabled:
            continue
        # (fx keeps only the paths the graph calls: without one outside, ``layer.act_quantizer`` becomes
        # ``layer_act_quantizer`` beside the layer)
        node.target = next((p for p in paths[id(q)] if outside_layers(p)),
                           "_".join(str(node.target).rsplit(".", 1)))
        nonneg = isinstance(node.args[0], fx.Node) and is_nonnegative(node.args[0], modules)
        try:
            spec, _, extra = plan_activation(q, str(node.target), target, nonneg=nonneg,
                                             allow_requantize=allow_requantize)
        except GridMiss as miss:
            raise ExportError(f"quantizer {node.target} cannot be exported exactly for {target}: {miss}; "
                              f"fix: {FIX}") from None
        set_submodule(gm, str(node.target), QDQ(spec))
        notes.extend(f"{node.target}: {n}" for n in extra)
    return notes


def _is_cat(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in (torch.cat, torch.concat)
            and isinstance(node.args[0], (list, tuple)))


def _is_maxpool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], nn.MaxPool2d)
    return node.op == "call_function" and node.target is F.max_pool2d


def share_qdq_upstream(gm: fx.GraphModule, plans: dict[str, LayerPlan]) -> int:
    """Copy a quant layer's input Q/DQ above the Concat / MaxPool that feed it, onto each of their inputs.

    Quantization is monotone and elementwise, so it commutes with concatenation and max-pooling: the
    layer's own Q/DQ then sees values already on its grid and changes nothing (exact). What it buys: every
    Concat input carries the same scale (TensorRT keeps the Concat in int8) and the convs in front of a
    Concat end in a Q (ONNX Runtime fuses them into QLinearConv; SqueezeNet's fire modules otherwise
    never do). Only single-consumer chains are rewritten, so no other reader sees quantized values.

    Returns:
        How many Q/DQs were inserted.
    """
    modules = dict(gm.named_modules())
    inserted = 0

    def qdq_before(consumer: fx.Node, value: fx.Node, spec: ActQDQ) -> fx.Node:
        nonlocal inserted
        name = f"shared_qdq_{inserted}"
        inserted += 1
        gm.add_submodule(name, QDQ(spec))
        with gm.graph.inserting_before(consumer):
            return gm.graph.call_module(name, (value,))

    def push(node: fx.Node, spec: ActQDQ) -> None:
        def rewrite(value: Any) -> Any:
            if not isinstance(value, fx.Node):
                return value
            if len(value.users) == 1 and (_is_cat(value) or _is_maxpool(value, modules)):
                push(value, spec)
                return value
            return qdq_before(node, value, spec)

        if _is_cat(node):
            items: Any = node.args[0]
            node.args = ([rewrite(v) for v in items], *node.args[1:])
        else:
            node.args = (rewrite(node.args[0]), *node.args[1:])

    for node in list(gm.graph.nodes):
        if node.op != "call_module" or str(node.target) not in plans:
            continue
        src = node.args[0]
        if isinstance(src, fx.Node) and len(src.users) == 1 and (_is_cat(src) or _is_maxpool(src, modules)):
            push(src, plans[str(node.target)].act)
    gm.graph.lint()
    gm.recompile()
    return inserted


def _clip_range(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[float, float] | None:
    """``(lo, hi)`` when ``node`` is a ReLU6 / Hardtanh (a clip of its input), else None."""
    if node.op == "call_module":
        m = modules[str(node.target)]
        if isinstance(m, nn.Hardtanh):  # nn.ReLU6 is a Hardtanh(0, 6)
            return float(m.min_val), float(m.max_val)
    if node.op == "call_function" and node.target is F.relu6:
        return 0.0, 6.0
    return None


def drop_redundant_clips(gm: fx.GraphModule, plans: dict[str, LayerPlan]) -> None:
    """Remove a ReLU6/Hardtanh whose only readers are uint8 Q/DQs that clip at least as tightly.

    ``clip(x, lo, hi)`` then ``q = clamp(round(x / s), 0, qmax)`` equals the clamp alone when ``lo <= 0``
    and ``hi / s`` rounds to at least ``qmax``; without the float Clip between a conv and its output Q,
    ONNX Runtime fuses the conv into QLinearConv (MobileNet-V2's ReLU6 otherwise blocks every fusion).
    """
    modules = dict(gm.named_modules())

    def redundant(rng: tuple[float, float], act: ActQDQ) -> bool:
        lo, hi = rng
        return (act.dtype == "uint8" and act.zero_point == 0 and act.float_clip is None and lo <= 0
                and hi / act.scale >= act.qmax - 0.49)

    for node in list(gm.graph.nodes):
        rng = _clip_range(node, modules)
        if rng is None or not node.users or not isinstance(node.args[0], fx.Node):
            continue
        readers = list(node.users)
        if all(u.op == "call_module" and str(u.target) in plans and u.args[0] is node
               and redundant(rng, plans[str(u.target)].act) for u in readers):
            for u in readers:
                u.args = (node.args[0], *u.args[1:])
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()


def inputs_on_grid(gm: fx.GraphModule, plans: dict[str, LayerPlan]) -> set[str]:
    """Quant layers whose input comes straight out of a Q/DQ their own input Q/DQ would leave unchanged.

    That is a residual-stream quantizer the layer shares (``QuantConfig.share_residual_stream``): the
    exported graph then quantizes the tensor once, and the layer reads its DequantizeLinear, as does the
    skip (a second Q/DQ on the same grid is exact but costs ONNX Runtime a dequantize-quantize pass).
    """
    modules = dict(gm.named_modules())
    found = set()
    for node in gm.graph.nodes:
        src = node.args[0] if node.op == "call_module" and str(node.target) in plans and node.args else None
        if isinstance(src, fx.Node) and src.op == "call_module":
            qdq = modules[str(src.target)]
            if isinstance(qdq, QDQ) and qdq.spec is not None and plans[str(node.target)].act.keeps(qdq.spec):
                found.add(str(node.target))
    return found


def insert_skip_observers(gm: fx.GraphModule) -> dict[str, QDQ]:
    """Put an observing :class:`QDQ` on the skip input of every residual Add whose other input is quantized.

    Works on a traced student (quant layers) or a folded one; returns Add name -> observer. ``gm`` is
    modified in place.
    """
    observers: dict[str, QDQ] = {}
    for add, idx in list(residual_skips(gm, quantized_only=True)):
        name = f"skip_qdq_{len(observers)}"
        obs = QDQ()
        gm.add_submodule(name, obs)
        with gm.graph.inserting_before(add):
            node = gm.graph.call_module(name, (add.args[idx],))
        args = list(add.args)
        args[idx] = node
        add.args = tuple(args)
        observers[add.name] = obs
    gm.graph.lint()
    gm.recompile()
    return observers


def skip_spec(amax: float) -> ActQDQ:
    """The int8 Q/DQ of a skip branch whose values reached ``amax`` on the calibration inputs."""
    scale = amax * SKIP_HEADROOM / 127 if amax > 0 else 1.0
    return ActQDQ(scale, "int8", -128, 127)


def lower(folded: FoldedModel, target: str, *, allow_requantize: bool = False,
          skip_amax: dict[str, float] | None = None) -> Lowered:
    """Build the module whose ONNX export is the QDQ graph.

    Args:
        folded: the BN-folded student.
        target: ``tensorrt`` or ``onnxruntime``.
        allow_requantize: re-quantize grids that do not fit (else refuse).
        skip_amax: residual Add name -> max|skip input| on calibration data. With it (TensorRT), skip
            branches get a Q/DQ; None leaves them float.

    Returns:
        The lowered model.

    Raises:
        ExportError: a grid that does not fit the target (see :func:`plan_layers`).
    """
    gm = fx.GraphModule(copy.deepcopy(folded.module), copy.deepcopy(folded.module.graph))
    modules = dict(gm.named_modules())
    nonneg: set[str] = set()
    last_quant: str | None = None
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(modules[str(node.target)], FoldedQuantLayer):
            arg = node.args[0]
            if isinstance(arg, fx.Node) and is_nonnegative(arg, modules):
                nonneg.add(str(node.target))
        if node.op == "output":
            out = node.args[0]
            if isinstance(out, fx.Node) and out.op == "call_module" and str(out.target) in folded.quant_layers:
                last_quant = str(out.target)
    layers = {name: modules[name] for name in folded.quant_layers}
    plans = plan_layers(layers, target, nonneg_inputs=nonneg, allow_requantize=allow_requantize)  # type: ignore[arg-type]
    extra = lower_standalone_quantizers(gm, target, allow_requantize=allow_requantize)
    share_qdq_upstream(gm, plans)
    rules = target_rules(target)
    if rules.drop_redundant_clips:
        drop_redundant_clips(gm, plans)
    skips: dict[str, ActQDQ] = {}
    if skip_amax is not None and rules.residual_qdq:
        for add_name, obs in insert_skip_observers(gm).items():
            obs.spec = skips[add_name] = skip_spec(skip_amax.get(add_name, 0.0))
    on_grid = inputs_on_grid(gm, plans)
    for name, plan in plans.items():
        layer = modules[name]
        if isinstance(layer, FoldedQuantConv2d):
            set_submodule(gm, name, LoweredConv2d(plan, layer, input_on_grid=name in on_grid))
        else:
            assert isinstance(layer, FoldedQuantLinear)
            set_submodule(gm, name, LoweredLinear(plan, layer.bias, input_on_grid=name in on_grid))
    gm.delete_all_unused_submodules()
    gm.recompile()
    step = None
    if last_quant is not None:  # the trained grid's step (before the int8 headroom multiplier)
        step = folded.quant_layers[last_quant].weight_scale.to(torch.float64) * plans[last_quant].act.scale
    return Lowered(gm.eval(), plans, skips, step, extra)
