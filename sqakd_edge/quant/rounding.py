"""Rounding with a choice of backward: straight-through (STE) or element-wise gradient scaling (EWGS).

EWGS (Lee et al., CVPR 2021) scales each gradient by the discretisation error of its element:
``g_in = g_out * (1 + delta * sign(g_out) * (u - round(u)))``. ``delta = 0`` is exactly the STE, so
one function serves both. The function is pure: delta is an input, nothing is logged or stored.
"""

from __future__ import annotations

from typing import Any

import torch


class _RoundEWGS(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        k = torch.round(u)
        ctx.save_for_backward(u - k, delta)
        return k

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        error, delta = ctx.saved_tensors
        # Written with differentiable ops so a Hessian-vector product (create_graph=True) can pass.
        return grad * (1 + delta * torch.sign(grad) * error), None


def round_ewgs(u: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Round ``u`` to the nearest integer; backward scales gradients by the discretisation error.

    Args:
        u: continuous levels (already clamped to the grid's range).
        delta: scalar tensor, the EWGS scaling factor (0 gives the STE).

    Returns:
        ``torch.round(u)``.
    """
    return _RoundEWGS.apply(u, delta)


def round_ste(u: torch.Tensor) -> torch.Tensor:
    """Round with the straight-through estimator (identity gradient)."""
    return u + (torch.round(u) - u).detach()


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``factor`` (LSQ's step-size gradient scale)."""
    return (x - x * factor).detach() + x * factor
