"""Quantize/dequantize as PyTorch ops that the TorchScript ONNX exporter writes as exactly the nodes we want.

Each op is an ``autograd.Function`` with a ``symbolic``: its ``forward`` computes in PyTorch what the ONNX
nodes compute (so the lowered module can be run and compared), and ``symbolic`` emits the nodes with
constant scales and zero-points of the right integer type — no Cast nodes, no pattern matching on
``fake_quantize`` ops.

An activation Q/DQ is ``[Clip(float)] -> QuantizeLinear -> [Clip(integer)] -> DequantizeLinear``:

- the float Clip (before Q) holds a range the integer type does not (TensorRT: a 4-bit grid [0, 15] inside
  int8, or a requantized affine range) — TensorRT accepts only Q directly followed by DQ;
- the integer Clip (between Q and DQ) does the same for ONNX Runtime, whose optimiser still fuses
  ``DQ -> Conv -> Q`` into ``QLinearConv`` around it (a float Clip after a Conv would stop that fusion).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

INT_RANGES = {"int8": (-128, 127), "uint8": (0, 255)}
_TORCH_DTYPES = {"int8": torch.int8, "uint8": torch.uint8}


@dataclass(frozen=True)
class ActQDQ:
    """One per-tensor activation Q/DQ: ``value = scale * q`` with ``q`` in ``[qmin, qmax]``.

    ``q`` is stored as ``q + zero_point`` in ``dtype``. TensorRT takes zero-point 0 only; for ONNX Runtime a
    signed grid is stored as uint8 with zero-point 128 (the same values): its x86 integer kernels take uint8
    activations, and its own int8-to-uint8 rewrite only matches a Q directly followed by a DQ, so a signed
    grid with an integer Clip (a first layer's normalised input) would otherwise keep its conv in float.

    Args:
        scale: the positive step.
        dtype: ``int8`` or ``uint8`` (the type of Q's output and of the zero-point).
        qmin: smallest integer kept (>= the dtype's minimum).
        qmax: largest integer kept (<= the dtype's maximum).
        float_clip: ``(lo, hi)`` clipped in float before Q, or None.
        int_clip: clip the integers between Q and DQ (ONNX Runtime) instead of a float Clip.
        zero_point: the stored integer of 0 (0, or 128 for a signed grid stored as uint8).
    """

    scale: float
    dtype: str
    qmin: int
    qmax: int
    float_clip: tuple[float, float] | None = None
    int_clip: bool = False
    zero_point: int = 0

    @property
    def range(self) -> tuple[int, int]:
        """The grid integers the stored type holds: its range shifted by the zero-point."""
        lo, hi = INT_RANGES[self.dtype]
        return lo - self.zero_point, hi - self.zero_point

    @property
    def narrower_than_dtype(self) -> bool:
        """Whether ``[qmin, qmax]`` is a strict sub-range of what the integer type holds."""
        lo, hi = self.range
        return self.qmin > lo or self.qmax < hi

    def keeps(self, other: ActQDQ) -> bool:
        """Whether this Q/DQ leaves every output of ``other`` unchanged (same grid, no tighter clip)."""
        if (self.scale, self.dtype, self.zero_point, self.qmin, self.qmax) != (
                other.scale, other.dtype, other.zero_point, other.qmin, other.qmax):
            return False
        return self.float_clip is None or (self.float_clip[0] <= self.qmin * self.scale
                                           and self.float_clip[1] >= self.qmax * self.scale)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Quantize-dequantize ``x`` (exported as the Q/DQ nodes)."""
        lo, hi = self.float_clip if self.float_clip is not None else (None, None)
        iclip = (self.qmin, self.qmax) if self.int_clip and self.narrower_than_dtype else (None, None)
        return _ActQDQFn.apply(x, float(self.scale), self.dtype, int(self.zero_point), lo, hi, iclip[0], iclip[1])


class _ActQDQFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, dtype, zero_point, lo, hi, qlo, qhi):  # type: ignore[no-untyped-def,override]
        if lo is not None:
            x = torch.clamp(x, lo, hi)
        tmin, tmax = INT_RANGES[dtype]  # QuantizeLinear: saturate(round(x / s) + zp), as grid integers
        q = torch.clamp(torch.round(x / scale), tmin - zero_point, tmax - zero_point)
        if qlo is not None:
            q = torch.clamp(q, qlo, qhi)
        return q * scale

    @staticmethod
    def symbolic(g, x, scale, dtype, zero_point, lo, hi, qlo, qhi):  # type: ignore[no-untyped-def]
        tdtype = _TORCH_DTYPES[dtype]
        if lo is not None:
            x = g.op("Clip", x, g.op("Constant", value_t=torch.tensor(lo, dtype=torch.float32)),
                     g.op("Constant", value_t=torch.tensor(hi, dtype=torch.float32)))
        s = g.op("Constant", value_t=torch.tensor(scale, dtype=torch.float32))
        zp = g.op("Constant", value_t=torch.tensor(zero_point, dtype=tdtype))
        q = g.op("QuantizeLinear", x, s, zp)
        if qlo is not None:  # the stored integers: grid integers + zero-point
            q = g.op("Clip", q, g.op("Constant", value_t=torch.tensor(qlo + zero_point, dtype=tdtype)),
                     g.op("Constant", value_t=torch.tensor(qhi + zero_point, dtype=tdtype)))
        return g.op("DequantizeLinear", q, s, zp)


class _WeightDQFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, scale):  # type: ignore[no-untyped-def,override]
        shape = [-1] + [1] * (q.dim() - 1)
        return q.to(scale.dtype) * scale.reshape(shape)

    @staticmethod
    def symbolic(g, q, scale):  # type: ignore[no-untyped-def]
        channels = scale.type().sizes()[0]
        zp = g.op("Constant", value_t=torch.zeros(channels, dtype=torch.int8))
        return g.op("DequantizeLinear", q, scale, zp, axis_i=0)


def dequantize_weight(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``scale * q`` per output channel (exported as an int8 initializer + DequantizeLinear, axis 0)."""
    return _WeightDQFn.apply(q, scale)


class QDQ(nn.Module):
    """A standalone activation Q/DQ (used on residual skip branches); in ``observe`` mode it records max|x|."""

    def __init__(self, spec: ActQDQ | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.observed_amax = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec is None:  # observing: pass through, remember the range
            self.observed_amax = max(self.observed_amax, float(x.detach().abs().max()))
            return x
        return self.spec.apply(x)
