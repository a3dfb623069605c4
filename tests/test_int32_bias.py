"""QuantConfig.int32_bias: the student trains with ONNX Runtime's int32 bias rounding, and export keeps it.

What this proves, with real ONNX Runtime: the exported ORT graph of such a student gives the same logits whether or
not ORT rounds its biases (its WeightBiasQuantization pass), so its integer kernels run what the student computed;
for a student without it they differ. It does not prove the accuracy cost (benchmarks/accuracy_fmnist.py
--int32-bias measures that on real data).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sqakd_edge.config import QuantConfig
from sqakd_edge.errors import ConfigError
from sqakd_edge.export.fold import fold_batchnorm
from sqakd_edge.export.lower import lower
from sqakd_edge.export.onnx_io import to_onnx
from sqakd_edge.export.parity import run, session
from sqakd_edge.models import create_model
from sqakd_edge.quant import iter_quant_layers, prepare_qat, set_quantization, to_float
from sqakd_edge.quant.int32_bias import Int32BiasHook, bias_step, finest_multiplier, weight_limit


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct BatchNorm statistics and affine parameters, as training gives (fresh ones fold to zero biases)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.3)
    return model


def student(int32_bias: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = trained_like(create_model("resnet20", num_classes=10, in_channels=1))
    s = prepare_qat(model, QuantConfig(quantizer="lsq", wbits=4, abits=4, int32_bias=int32_bias)).eval()
    with torch.no_grad():
        s(torch.randn(16, 1, 12, 12))  # quantizer ranges
    return s


def ort_logits(s: nn.Module, x: torch.Tensor, *, bias_rounding: bool) -> np.ndarray:
    lowered = lower(fold_batchnorm(s), "onnxruntime")
    data = to_onnx(lowered.module, x[:1], 13).SerializeToString()
    disabled = () if bias_rounding else ("WeightBiasQuantization",)
    return run(session(data, "on", disabled_optimizers=disabled), x.numpy())


def test_multiplier_and_limit_follow_int8_and_int16_pairs():
    assert weight_limit(15) == 127 and weight_limit(255) == 32767 // 510
    assert finest_multiplier(torch.tensor([7, 1, 0, 127]), 127).tolist() == [18, 127, 1, 1]


def test_folded_biases_sit_on_the_grid_the_student_used():
    s = student(True)
    folded = fold_batchnorm(s)
    layers = dict(iter_quant_layers(s))
    for name, f in folded.quant_layers.items():
        assert f.int32_bias
        bn = s.get_submodule(f.bn)
        factor = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        ratio = f.bias.double() / bias_step(layers[name], factor)
        assert torch.allclose(ratio, ratio.round(), atol=1e-3), name


def test_exported_graph_is_the_same_with_and_without_ort_bias_rounding():
    x = torch.randn(32, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    s = student(True)
    with torch.no_grad():
        want = s(x).numpy()
    rounded, kept = ort_logits(s, x, bias_rounding=True), ort_logits(s, x, bias_rounding=False)
    assert np.abs(rounded - kept).mean() < 1e-3, "ORT's own bias rounding still changes the student's graph"
    assert (rounded.argmax(1) == want.argmax(1)).mean() >= 0.95
    plain = student(False)
    r, k = ort_logits(plain, x, bias_rounding=True), ort_logits(plain, x, bias_rounding=False)
    assert np.abs(r - k).mean() > 10 * np.abs(rounded - kept).mean() + 1e-4  # the case the option is for


def test_training_mode_rounds_with_batch_statistics_and_passes_gradients_straight_through():
    s = student(True).train()
    x = torch.randn(8, 1, 12, 12)
    out = s(x)
    out.sum().backward()
    assert all(p.grad is not None for p in s.parameters() if p.requires_grad and p.dim() > 1)
    bn = s.get_submodule("layer1.0.bn1")
    hooks = [h for h in bn._forward_hooks.values() if isinstance(h, Int32BiasHook)]
    assert len(hooks) == 1 and hooks[0].layer is s.get_submodule("layer1.0.conv1")


def test_float_copies_and_switched_off_quantizers_compute_float_biases():
    s = student(True)
    x = torch.randn(4, 1, 12, 12)
    f = to_float(s)
    assert not any(isinstance(h, Int32BiasHook) for m in f.modules() for h in m._forward_hooks.values())
    set_quantization(s, False)
    with torch.no_grad():
        assert torch.allclose(s(x), f(x), atol=1e-5)


def test_int32_bias_needs_deployable_grids():
    with pytest.raises(ConfigError, match="deployable"):
        QuantConfig(int32_bias=True, deployable=False)
