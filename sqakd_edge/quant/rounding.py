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


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to ``shape`` (a scalar or a per-channel ``(C, 1, ...)`` scale)."""
    if t.shape == shape:
        return t
    if len(shape) == 0:
        return t.sum()
    dims = [i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1]
    return t.sum(dim=dims, keepdim=True)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum()`` as one BLAS dot, without copies when both are dense in the same memory order.

    A channels-last tensor is not contiguous, and ``flatten`` would copy it; its storage in memory order is.
    """
    if a.stride() == b.stride() and (a.is_contiguous() or a.is_contiguous(memory_format=torch.channels_last)):
        return torch.dot(a.as_strided((a.numel(),), (1,)), b.as_strided((b.numel(),), (1,)))
    return torch.dot(a.flatten(), b.flatten())


class _FakeQuant(torch.autograd.Function):
    """``scale * q(x / scale)`` in one node: the same values and gradients as the op-by-op version.

    Training time on a CPU is dominated by elementwise passes over activations (memory traffic), and
    composing the quantizer from div/clamp/round/mul and their backwards costs ~25 passes per tensor.
    Here the forward is four passes into two new tensors, and for a scalar scale it saves only ``x``
    (which the layer before keeps alive anyway) and the integer values, not ``u`` or a mask. The
    backward is one masked copy (``hardtanh_backward``: a vectorised kernel, where a bool mask with
    ``torch.where`` is several times slower on CPU) and two dot products for the scale; what that saves per
    step is measured by ``benchmarks/train_step.py``. Not twice differentiable: the
    EWGS Hessian estimate uses the op-by-op path.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, delta: torch.Tensor, ewgs: bool, a: int, c: int,
                kmin: int, kmax: int) -> torch.Tensor:
        u = x / scale
        if a != 1 or c != 0:
            u = u.sub_(c).div_(a)
        # A scalar scale on CPU: the backward's range test runs on x against float bounds, so only x (kept
        # alive by the layer before anyway) and the integers need saving, and u is worked in place. (Equal to
        # the test on u but for float rounding exactly at a bound.)
        in_x_units = scale.dim() == 0 and x.device.type == "cpu"
        k = u.clamp_(kmin, kmax) if in_x_units else u.clamp(kmin, kmax)
        error = None
        if ewgs:  # delta times the discretisation error (in levels): all the EWGS backward needs
            continuous, k = k, k.round()
            error = continuous.sub_(k).mul_(delta)
        else:
            k = k.round_()
        q = k if a == 1 and c == 0 else k.mul_(a).add_(c)
        if in_x_units:
            s = float(scale)
            ctx.bounds = ((kmin * a + c) * s, (kmax * a + c) * s)
            ctx.save_for_backward(x, scale, q, error)
        else:
            ctx.bounds = None
            ctx.save_for_backward(u, scale, q, error)
        ctx.consts = (ewgs, a, c, kmin, kmax)
        # A new tensor, not saved: the caller may change it in place (torchvision's ``out += identity``).
        return q * scale

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        t, scale, q, error = ctx.saved_tensors
        ewgs, a, c, kmin, kmax = ctx.consts
        grad = grad_out
        if ewgs:
            # grad * (1 + delta * sign(grad) * error), written as grad + |grad| * (delta * error) (scale > 0).
            grad = grad.abs().mul_(error).add_(grad)
        # dL/dx: the gradient inside the clamp range (strictly, as torch.clamp's backward), 0 outside.
        lo, hi = ctx.bounds or (kmin, kmax)
        grad_in = torch.ops.aten.hardtanh_backward(grad, t, lo, hi)
        grad_scale = None
        if ctx.needs_input_grad[1]:
            # d(scale*q(x/scale))/dscale = q - (x/scale) * dq/dv
            if ctx.bounds is not None:  # t is x
                grad_scale = _dot(grad_out, q) - _dot(grad_in, t) / scale
            else:  # t is u, and x/scale = a*u + c
                v = t if a == 1 and c == 0 else t * a + c
                grad_scale = _sum_to(grad_out * q - grad_in * v, scale.shape)
        return grad_in if ctx.needs_input_grad[0] else None, grad_scale, None, None, None, None, None, None


def fake_quant(x: torch.Tensor, scale: torch.Tensor, delta: torch.Tensor, ewgs: bool, a: int, c: int, kmin: int,
               kmax: int) -> torch.Tensor:
    """``scale * (a * round(clamp((x/scale - c)/a, kmin, kmax)) + c)`` with STE or EWGS gradients.

    Args:
        x: input.
        scale: positive scale broadcastable to ``x`` (scalar, or ``(C, 1, ...)`` per channel).
        delta: EWGS delta (scalar tensor), used when ``ewgs``.
        ewgs: scale gradients by the discretisation error.
        a: level step of the grid (1, or 2 for the odd grid).
        c: level offset of the grid.
        kmin: lowest level.
        kmax: highest level.
    """
    return _FakeQuant.apply(x, scale, delta, ewgs, a, c, kmin, kmax)
