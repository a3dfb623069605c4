"""The frozen teacher as training runs it: folded, channels-last, bfloat16 where the CPU has it."""

from __future__ import annotations

import pytest
import torch

from sqakd_edge.models import create_model
from sqakd_edge.train.teacher import frozen_teacher, teacher_autocast_dtype

CPU = torch.device("cpu")


def _native_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def test_frozen_teacher_gives_the_teachers_logits_and_leaves_it_intact(float_model):
    x = torch.randn(8, 1, 16, 16)
    with torch.no_grad():
        want = float_model(x)
        fast = frozen_teacher(float_model, CPU)
        got = fast(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))  # BN folded: float noise only
    assert not any(p.requires_grad for p in float_model.parameters()) and not float_model.training
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in float_model.modules())  # the caller's model keeps its BNs
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())


def test_teacher_precision_follows_amp_and_the_cpu():
    assert teacher_autocast_dtype(CPU, amp=False) is None
    assert teacher_autocast_dtype(CPU, amp=True) == (torch.bfloat16 if _native_bf16() else None)


@pytest.mark.skipif(not _native_bf16(), reason="this CPU has no native bfloat16: the teacher stays float32")
def test_bfloat16_teacher_logits_stay_close_to_float32():
    torch.manual_seed(0)
    teacher = frozen_teacher(create_model("resnet20", 10, 3), CPU)
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        fp32 = teacher(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = teacher(x).float()
    assert (bf16 - fp32).abs().max() < 0.02 * fp32.abs().max()
    assert (bf16.softmax(1) - fp32.softmax(1)).abs().max() < 0.02
