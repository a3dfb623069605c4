"""The frozen teacher as training runs it: on the device, eval mode, no gradients, Conv+BN folded.

In eval mode BatchNorm is an affine map per channel, so folding it into the preceding convolution gives the
same logits up to float rounding (~1e-6) and removes a pass over every activation of the teacher's
forward, which SQAKD runs on every training step.
"""

from __future__ import annotations

import torch
from torch import nn


def frozen_teacher(teacher: nn.Module, device: torch.device) -> nn.Module:
    """Move and freeze ``teacher``; return a copy with Conv+BN folded (or ``teacher`` if fx cannot trace it)."""
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(teacher)
    except Exception:  # noqa: BLE001 -- a model fx cannot trace runs unfolded: the same logits, a little slower
        return teacher
