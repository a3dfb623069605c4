"""EWGS delta from a Hessian-trace estimate of the training loss itself (no labels under SQAKD).

Following EWGS (Lee et al. 2021): for each quantizer, ``delta = max(0, (Tr(H)/N) / (3 * std(g)))``, where
H is the Hessian of the loss with respect to the quantizer's rounded levels, N their count, and g the
gradient there. Tr(H) is estimated with Hutchinson's method (Rademacher probes). The released SQAKD code
never ran this update and would have needed labels; here the loss is whatever the run trains on (the
KL to the teacher for SQAKD), so it stays label-free.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..quant import iter_quantizers


def update_ewgs_deltas(
    student: nn.Module,
    loss_of_logits: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    probes: int = 1,
) -> dict[str, float]:
    """Re-estimate every EWGS quantizer's delta on one batch.

    Args:
        student: the fake-quant model (its mode is kept).
        loss_of_logits: maps the student's logits to the scalar training loss.
        images: one input batch.
        probes: Hutchinson probes (more: less noise, one Hessian-vector product each).

    Returns:
        ``{quantizer name: new delta}``; empty when no quantizer uses EWGS.
    """
    targets = [(name, q) for name, q in iter_quantizers(student) if q.backward_kind == "ewgs" and q.enabled]
    if not targets:
        return {}
    for _, q in targets:
        q.capture_levels = True
    try:
        loss = loss_of_logits(student(images))
        captured = [(name, q, q.captured) for name, q in targets if q.captured is not None and q.captured.requires_grad]
        levels = [k for _, _, k in captured]
        grads = torch.autograd.grad(loss, levels, create_graph=True, allow_unused=True)
        used = [(name, q, k, g) for (name, q, k), g in zip(captured, grads, strict=True) if g is not None]
        traces = [torch.zeros((), device=images.device) for _ in used]
        for _ in range(probes):
            probes_v = [torch.randint_like(g, 2) * 2 - 1 for _, _, _, g in used]
            hvs = torch.autograd.grad([g for *_, g in used], [k for _, _, k, _ in used], grad_outputs=probes_v,
                                      retain_graph=True, allow_unused=True)
            for i, (v, hv) in enumerate(zip(probes_v, hvs, strict=True)):
                if hv is not None:
                    traces[i] = traces[i] + (v * hv).sum().detach()
        deltas = {}
        for (name, q, k, g), trace in zip(used, traces, strict=True):
            spread = 3.0 * float(g.detach().float().std())
            avg_trace = float(trace) / probes / k.numel()
            delta = max(0.0, avg_trace / spread) if spread > 0 else 0.0
            q.delta.fill_(delta)
            deltas[name] = delta
        return deltas
    finally:
        for _, q in targets:
            q.capture_levels = False
            q.captured = None
