"""The frozen teacher as training runs it: on the device, eval mode, no gradients, fused for inference.

SQAKD runs the teacher's forward on every training step, so it is worth running fast; both changes give
the same logits up to float rounding (~1e-6):

- in eval mode BatchNorm is an affine map per channel: folded into the preceding convolution it costs
  no pass over the activations;
- on CPU, oneDNN's convolutions run faster in channels-last (NHWC) layout, where the model runs in it
  (:mod:`.layout`; ``benchmarks/train_step.py`` measures the step).

With mixed precision on (``TrainConfig.amp``, the default) the teacher's forward also runs under autocast:
on CUDA as the student's does, and on a CPU that computes bfloat16 natively (AMX, AVX512-BF16) in bfloat16,
several times faster than float32 there, with logits within ~0.5% of float32. The student's fake-quant forward
stays float32 on CPU, and evaluation (the held-out KL that picks ``best.pt``) runs the teacher in float32.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from .layout import InLayout, training_layout


def teacher_autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype of the teacher's training-time forward on ``device``, or None for float32."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        if os.environ.get("SQAKD_EDGE_CPU_BF16", "").lower() in ("0", "off", "no"):
            return None  # as on a CPU without native bfloat16 (how the suite checks AVX2-only behaviour here)
        try:  # emulated bfloat16 (no AMX / AVX512-BF16) is slower than float32
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        return torch.bfloat16 if native else None
    return None


def frozen_teacher(teacher: nn.Module, device: torch.device, sample: torch.Tensor | None = None) -> nn.Module:
    """Move and freeze ``teacher``; return a copy fused for inference (see the module's docstring).

    A model ``torch.fx`` cannot trace keeps its BatchNorms (the same logits, a little slower).

    Args:
        teacher: the float model (moved, put in eval mode and frozen in place; its layers are kept).
        device: where training runs.
        sample: a batch of inputs to try the channels-last layout on (None: the default layout).
    """
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    from torch.fx.experimental.optimization import fuse

    try:
        fused = fuse(teacher)
    except Exception:  # noqa: BLE001 -- any tracing failure only costs speed
        fused = teacher
    if fused is teacher:
        fused = copy.deepcopy(teacher)  # the layout changes below stay off the caller's model
    memory_format = training_layout(fused, sample, device)
    return InLayout(fused, memory_format).eval()  # the wrapper too: nothing trains
