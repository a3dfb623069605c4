"""The deployability contract: every quantizer states its integer grid.

A fake-quantized tensor equals ``scale * q`` with ``q`` an integer in ``[qmin, qmax]`` and zero-point 0.
Export reads this to write exact integer weights and Q/DQ scales; a quantizer whose values are not on
such a grid (an affine range) raises :class:`NotDeployable` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ExportError


class NotDeployable(ExportError):
    """A quantizer whose values do not lie on a symmetric integer grid (zero-point 0)."""


@dataclass(frozen=True)
class LevelMap:
    """Where rounding happens: integer levels ``k`` in ``[kmin, kmax]``, mapped to ``q = a*k + c``.

    Most grids round directly in ``q`` (``a=1, c=0``). The 2^b-level grids without a zero used by
    DoReFa/EWGS weights (odd integers ``-(2^b-1) .. 2^b-1``) round in ``k`` with ``a=2, c=-(2^b-1)``.
    """

    a: int
    c: int
    kmin: int
    kmax: int

    @property
    def qmin(self) -> int:
        """Smallest integer value."""
        return self.a * self.kmin + self.c

    @property
    def qmax(self) -> int:
        """Largest integer value."""
        return self.a * self.kmax + self.c

    @property
    def levels(self) -> int:
        """Number of representable values."""
        return self.kmax - self.kmin + 1

    def to_levels(self, q_continuous: torch.Tensor) -> torch.Tensor:
        """Continuous values in q units -> clamped continuous levels ``k`` (rounding comes next)."""
        u = q_continuous if self.a == 1 and self.c == 0 else (q_continuous - self.c) / self.a
        return u.clamp(self.kmin, self.kmax)

    def to_q(self, k: torch.Tensor) -> torch.Tensor:
        """Integer levels -> integer values (as float tensors)."""
        return k if self.a == 1 and self.c == 0 else k * self.a + self.c


def unsigned_map(bits: int, *, int8_safe: bool) -> LevelMap:
    """``[0, 2^b - 1]``; with ``int8_safe`` an 8-bit grid becomes ``[0, 127]`` (TensorRT is signed int8)."""
    top = 2**bits - 1
    if int8_safe and top > 127:
        top = 127
    return LevelMap(1, 0, 0, top)


def signed_map(bits: int, mode: str) -> LevelMap:
    """Signed grids with zero-point 0.

    Args:
        bits: 1-8.
        mode: ``full`` ``[-2^(b-1), 2^(b-1)-1]`` (LSQ), ``narrow`` ``[-(2^(b-1)-1), 2^(b-1)-1]``
            (symmetric, TensorRT-style), or ``odd``: the 2^b odd integers in ``[-(2^b-1), 2^b-1]``
            (DoReFa/EWGS weights: 2^b levels, no zero). 1-bit grids are always ``odd`` ({-1, +1}).
    """
    if bits == 1 or mode == "odd":
        top = 2**bits - 1
        return LevelMap(2, -top, 0, top)
    half = 2 ** (bits - 1)
    if mode == "full":
        return LevelMap(1, 0, -half, half - 1)
    if mode == "narrow":
        return LevelMap(1, 0, -(half - 1), half - 1)
    raise ValueError(f"unknown signed grid mode {mode!r}")  # internal: modes are chosen by the quantizers


@dataclass(frozen=True)
class IntegerGrid:
    """``value = scale * q``, ``q`` integer in ``[qmin, qmax]``, zero-point 0.

    Args:
        scale: shape ``()`` (per tensor) or ``(C,)`` (per output channel), positive.
        qmin: smallest integer.
        qmax: largest integer.
        axis: the channel axis of a per-channel scale (0 for Conv/Linear weights), else None.
    """

    scale: torch.Tensor
    qmin: int
    qmax: int
    axis: int | None = None

    @property
    def signed(self) -> bool:
        """Whether the grid has negative values."""
        return self.qmin < 0

    @property
    def bits_needed(self) -> int:
        """Bits of the smallest two's-complement (signed) or unsigned integer holding the grid."""
        if self.signed:
            return max((-self.qmin - 1).bit_length(), self.qmax.bit_length()) + 1
        return max(self.qmax.bit_length(), 1)

    def fits_int8(self) -> bool:
        """Whether every value fits in int8 ``[-128, 127]``."""
        return self.qmin >= -128 and self.qmax <= 127

    def fits_uint8(self) -> bool:
        """Whether every value fits in uint8 ``[0, 255]``."""
        return self.qmin >= 0 and self.qmax <= 255

    def integers(self, values: torch.Tensor) -> torch.Tensor:
        """The integer ``q`` of fake-quantized ``values`` (exact for values on this grid)."""
        scale = self.scale
        if self.axis is not None and scale.dim() == 1:
            shape = [1] * values.dim()
            shape[self.axis] = -1
            scale = scale.reshape(shape)
        return torch.round(values / scale).clamp(self.qmin, self.qmax)
