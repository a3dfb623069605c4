"""Grid fit: does each quant layer's integer grid fit the target's integer types, and how is it written?

TensorRT takes symmetric int8 only (zero-point 0, range [-128, 127]). For ONNX Runtime every activation is
uint8, what its fast x86 kernels want: zero-point 0 holds unsigned (post-ReLU) grids exactly, zero-point
128 signed ones.
A student trained at <= 8 bits on a grid that fits exports with identical values: a low-bit grid such as
[0, 15] is a subset of the 8-bit one, and a Clip keeps its range. A grid that does not fit is refused with
the layer, the reason and the fix, unless ``allow_requantize`` is set: then it is re-quantized to the
nearest int8 grid and the parity check reports what that cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import TARGETS, target_rules
from ..errors import ExportError
from ..quant.grid import NotDeployable
from ..quant.int32_bias import finest_multiplier, weight_limit
from ..quant.quantizers import Quantizer
from .fold import FoldedQuantLayer
from .qdq import INT_RANGES, ActQDQ

FIX = ("retrain with QuantConfig(deployable=True) (sqakd-edge train without --paper-grids), or export with "
       "--allow-requantize to re-quantize to the nearest int8 grid and see the parity cost")


@dataclass
class LayerPlan:
    """How one quant layer is written into the graph.

    Attributes:
        name: the layer's name.
        act: its input Q/DQ.
        weight_int: int8 weights (output channels on axis 0).
        weight_scale: positive float32 per-output-channel scales.
        wbits: the weight quantizer's bits (as trained).
        input_grid: ``(qmin, qmax)`` of the trained input grid, or None when it was affine.
        weight_grid: ``(qmin, qmax)`` of the trained integer weights (before the int8 headroom multiplier).
        requantized: what was re-quantized and why (empty when exact).
    """

    name: str
    act: ActQDQ
    weight_int: torch.Tensor
    weight_scale: torch.Tensor
    wbits: int
    input_grid: tuple[int, int] | None
    weight_grid: tuple[int, int]
    requantized: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        """A JSON-able summary for the manifest."""
        return {
            "name": self.name,
            "weight": {"bits": self.wbits, "grid": list(self.weight_grid),
                       "int8_range": [int(self.weight_int.min()), int(self.weight_int.max())],
                       "granularity": "per_channel", "axis": 0},
            "input": {"grid": list(self.input_grid) if self.input_grid else None, "dtype": self.act.dtype,
                      "zero_point": self.act.zero_point,
                      "scale": self.act.scale, "int_range": [self.act.qmin, self.act.qmax],
                      "clip": ("float" if self.act.float_clip else "int" if self.act.int_clip
                               and self.act.narrower_than_dtype else None)},
            "exact": not self.requantized,
            "requantized": self.requantized,
        }


class GridMiss(Exception):
    """A grid that does not fit the target (the callers turn it into an ExportError with the fix)."""


def _act_range(q: Quantizer) -> tuple[float, float] | None:
    """The float range of an affine activation quantizer (for re-quantization), if it states one."""
    lower, upper = getattr(q, "lower", None), getattr(q, "upper", None)
    if lower is None or upper is None:
        return None
    return float(lower.detach()), float(upper.detach())


def _clip_needed(dtype: str, zero_point: int, qmin: int, qmax: int, nonneg: bool) -> bool:
    lo, hi = INT_RANGES[dtype][0] - zero_point, INT_RANGES[dtype][1] - zero_point
    if qmax < hi:
        return True
    return qmin > lo and not (qmin == 0 and nonneg)


def plan_activation(quantizer: Quantizer, name: str, target: str, *, nonneg: bool, allow_requantize: bool
                    ) -> tuple[ActQDQ, tuple[int, int] | None, list[str]]:
    """The Q/DQ of an activation quantizer (a quant layer's input, or a standalone one) for ``target``.

    Args:
        quantizer: the activation quantizer.
        name: its layer's (or its own) name, for messages.
        target: ``tensorrt`` or ``onnxruntime``.
        nonneg: the input is known to be >= 0 (a ReLU output), so clipping at 0 is not needed.
        allow_requantize: re-quantize a grid that does not fit instead of refusing.

    Returns:
        ``(spec, trained grid range or None, notes on re-quantization)``.

    Raises:
        GridMiss: the grid does not fit and ``allow_requantize`` is False.
    """
    rules = target_rules(target)
    notes: list[str] = []
    float_range: tuple[float, float] | None = None
    try:
        grid = quantizer.grid()
        scale, qmin, qmax = float(grid.scale), grid.qmin, grid.qmax
        trained: tuple[int, int] | None = (qmin, qmax)
    except NotDeployable as exc:
        rng = _act_range(quantizer)
        if not allow_requantize or rng is None:
            raise GridMiss(f"input quantizer: {exc}") from None
        lo, hi = rng
        float_range, trained = rng, None
        if lo >= 0:
            qmin, qmax = 0, rules.unsigned_qmax
            scale = hi / qmax
        else:
            qmin, qmax = -127, 127
            scale = max(abs(lo), abs(hi)) / 127
        notes.append(f"input: affine range [{lo:.4g}, {hi:.4g}] re-quantized to int grid [{qmin}, {qmax}] "
                     f"with scale {scale:.4g}")
    if not (scale > 0 and scale < float("inf")):
        raise ExportError(f"layer {name}: input scale {scale} is not a positive finite number; the "
                          "quantizer's state is broken (retrain or re-initialise it)")
    zero_point = 0
    if rules.signed_only:
        dtype = "int8"
        if qmax > 127 or qmin < -128:
            reason = (f"input grid [{qmin}, {qmax}] (unsigned 8-bit) does not fit TensorRT's signed int8 [-128, 127]"
                      if qmin >= 0 else f"input grid [{qmin}, {qmax}] does not fit int8")
            if not allow_requantize:
                raise GridMiss(reason)
            factor = max(qmax / 127, -qmin / 128)
            scale, qmin, qmax = scale * factor, max(round(qmin / factor), -127), min(round(qmax / factor), 127)
            notes.append(f"input: {reason}; re-quantized to [{qmin}, {qmax}] with scale {scale:.4g}")
    else:  # uint8 always (see ActQDQ): zero-point 0 for an unsigned grid, 128 for a signed one
        dtype, zero_point = "uint8", (0 if qmin >= 0 else 128)
        tmin, tmax = INT_RANGES[dtype]
        if qmin + zero_point < tmin or qmax + zero_point > tmax:  # cannot happen for <= 8-bit grids
            raise GridMiss(f"input grid [{qmin}, {qmax}] does not fit {dtype} with zero-point {zero_point}")
    clip: tuple[float, float] | None = None
    int_clip = False
    if _clip_needed(dtype, zero_point, qmin, qmax, nonneg):
        if rules.clip_in_float:
            clip = (qmin * scale, qmax * scale)
        else:
            int_clip = True
    if float_range is not None:  # a re-quantized affine range keeps its own bounds
        lo, hi = float_range
        clip = (max(lo, clip[0]), min(hi, clip[1])) if clip else (lo, hi)
    return ActQDQ(scale, dtype, qmin, qmax, clip, int_clip, zero_point), trained, notes


def plan_weights(layer: FoldedQuantLayer, *, allow_requantize: bool, act_qmax: int = 127, act_scale: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """int8 weights and per-channel scales of ``layer`` (both targets store weights as int8).

    Low-bit integers are stored multiplied by an integer ``k`` (up to what int8 holds) with the scale
    divided by ``k``: the values ``scale * q`` are the same, but the int32 bias grid of an integer conv
    (``input scale x weight scale``, onto which ONNX Runtime rounds float biases) becomes ``k`` times
    finer. Per channel, ``k`` is the one whose grid lies closest to that channel's bias; for a student
    that trained with that rounding (``QuantConfig.int32_bias``) the largest, the one it used.

    Args:
        layer: the folded layer.
        allow_requantize: re-quantize weights outside int8 instead of refusing.
        act_qmax: the largest input integer; above 127 (uint8 inputs up to 255) ``k`` keeps pairs of
            products inside int16, which x86 u8*s8 kernels without VNNI accumulate in.
        act_scale: the input scale (with the weight scale, it sets the bias grid).

    Raises:
        GridMiss: weights outside int8 and ``allow_requantize`` is False.
    """
    q = layer.weight_int.to(torch.int64)
    scale = layer.weight_scale.clone()
    notes: list[str] = []
    if q.numel() and (int(q.min()) < -128 or int(q.max()) > 127):
        q, scale, notes = _requantize_weights(layer, q, scale, allow_requantize)
    limit = weight_limit(act_qmax)
    peak = q.reshape(q.shape[0], -1).abs().amax(dim=1) if q.numel() else torch.zeros(q.shape[0], dtype=torch.int64)
    if layer.int32_bias and not notes:  # the student rounded its bias onto the finest grid: keep that one
        k = finest_multiplier(peak, limit)
    else:
        k = _headroom(peak, limit, layer.bias.to(torch.float64), scale.to(torch.float64) * act_scale)
    shape = [-1] + [1] * (q.dim() - 1)
    q = q * k.reshape(shape)
    scale = (scale.to(torch.float64) / k.to(torch.float64)).to(torch.float32)
    return q.to(torch.int8), scale, notes


def _headroom(peak: torch.Tensor, limit: int, bias: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Per channel, the multiplier ``k`` in ``[1, limit // peak]`` whose bias grid ``grid / k`` fits ``bias`` best."""
    kmax = torch.where(peak > 0, torch.div(limit, peak.clamp_min(1), rounding_mode="floor"), torch.ones_like(peak))
    kmax = kmax.clamp_min(1)
    top = int(kmax.max()) if kmax.numel() else 1
    ks = torch.arange(1, top + 1, dtype=torch.float64)  # (K,)
    step = grid[:, None] / ks[None, :]  # (C, K)
    err = (bias[:, None] - torch.round(bias[:, None] / step) * step).abs()
    err = torch.where(ks[None, :] <= kmax[:, None].to(torch.float64), err, torch.full_like(err, float("inf")))
    # prefer the largest k among (near-)ties: flip, argmin, flip back
    best = top - 1 - torch.argmin(err.flip(1) / (1 + 1e-9), dim=1)
    return (best + 1).to(torch.int64)


def _requantize_weights(layer: FoldedQuantLayer, q: torch.Tensor, scale: torch.Tensor, allow_requantize: bool
                        ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    flat = q.reshape(q.shape[0], -1)
    peak = flat.abs().amax(dim=1)
    if int(peak.max()) > 128:
        reason = (f"weight grid reaches {int(peak.max())}: a 2^{layer.wbits}-level grid without zero needs "
                  f"{int(peak.max()).bit_length() + 1} bits, int8 holds [-128, 127]")
    else:
        channels = [int(c) for c in torch.nonzero(flat.max(dim=1).values > 127).flatten()[:5]]
        reason = (f"BatchNorm {layer.bn} has a negative gamma on channel(s) {channels}: flipping the integer "
                  "weights' sign turns -128 into +128, outside int8")
    if not allow_requantize:
        raise GridMiss(reason)
    qf = q.to(torch.float64)
    new_q = qf.clone()
    new_scale = scale.to(torch.float64).clone()
    for c in range(q.shape[0]):
        if int(peak[c]) <= 128:
            new_q[c] = qf[c].clamp(-128, 127)
        else:
            factor = float(peak[c]) / 127
            new_q[c] = torch.round(qf[c] / factor).clamp(-127, 127)
            new_scale[c] = new_scale[c] * factor
    return new_q.to(torch.int64), new_scale.to(torch.float32), [f"weights: {reason}; re-quantized to int8"]


def plan_layers(layers: dict[str, FoldedQuantLayer], target: str, *, nonneg_inputs: set[str],
                allow_requantize: bool) -> dict[str, LayerPlan]:
    """Plan every quant layer, or refuse with every layer that does not fit.

    Args:
        layers: name -> folded quant layer.
        target: ``tensorrt`` or ``onnxruntime``.
        nonneg_inputs: names of layers whose input is known to be >= 0.
        allow_requantize: re-quantize grids that do not fit instead of refusing.

    Returns:
        name -> plan.

    Raises:
        ExportError: a grid does not fit the target (names the first layer, the reason, the fix, and how
            many more layers miss).
    """
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    plans: dict[str, LayerPlan] = {}
    misses: list[tuple[str, str]] = []
    for name, layer in layers.items():
        try:
            act, trained, act_notes = plan_activation(layer.act_quantizer, name, target, nonneg=name in nonneg_inputs,
                                                      allow_requantize=allow_requantize)
            weight_int, weight_scale, w_notes = plan_weights(layer, allow_requantize=allow_requantize,
                                                             act_qmax=act.qmax + act.zero_point,
                                                             act_scale=act.scale)
        except GridMiss as miss:
            misses.append((name, str(miss)))
            continue
        wgrid = (int(layer.weight_int.min()), int(layer.weight_int.max())) if layer.weight_int.numel() else (0, 0)
        plans[name] = LayerPlan(name, act, weight_int, weight_scale, layer.wbits, trained, wgrid, act_notes + w_notes)
    if misses:
        name, reason = misses[0]
        more = f" ({len(misses) - 1} more layer(s) too: {', '.join(n for n, _ in misses[1:4])}" \
               f"{', ...' if len(misses) > 4 else ''})" if len(misses) > 1 else ""
        raise ExportError(f"layer {name} cannot be exported exactly for {target}: {reason}{more}; fix: {FIX}")
    return plans
