"""Exact BatchNorm folding: BN goes into per-channel scales and the bias; the integers stay integers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sqakd_edge.config import QuantConfig
from sqakd_edge.errors import ExportError
from sqakd_edge.export.fold import FoldedQuantConv2d, fold_batchnorm, fold_layer, trace
from sqakd_edge.models import create_model
from sqakd_edge.quant import iter_quant_layers, prepare_qat
from sqakd_edge.quant.modules import QuantConv2d
from sqakd_edge.quant.quantizers import Quantizer


def _randomise_bn(model: nn.Module, gen: torch.Generator, negative: bool = True) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            if negative:
                m.weight.data[::3] *= -1  # every third channel: gamma < 0 flips the integers
            m.bias.data.copy_(torch.rand(c, generator=gen) - 0.5)


def _conv_bn(quantizer: str, bits: int, granularity: str, seed: int = 0) -> tuple[QuantConv2d, nn.BatchNorm2d]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv = nn.Conv2d(6, 8, 3, padding=1, bias=True)
    q = QuantConv2d.from_float(conv, QuantConfig(quantizer=quantizer, wbits=bits, abits=bits,
                                                 weight_granularity=granularity))
    bn = nn.BatchNorm2d(8)
    holder = nn.Sequential(bn)
    _randomise_bn(holder, gen)
    q.eval(), bn.eval()
    with torch.no_grad():
        q(torch.randn(16, 6, 5, 5, generator=gen).abs())
    return q, bn


@pytest.mark.parametrize("quantizer", ["pact", "lsq", "dorefa", "interval"])
@pytest.mark.parametrize("granularity", ["per_channel", "per_tensor"])
def test_folded_layer_equals_conv_then_bn(quantizer, granularity):
    q, bn = _conv_bn(quantizer, 4, granularity)
    folded = fold_layer(q, bn, name="conv", bn_name="bn")
    x = torch.randn(4, 6, 5, 5).abs()
    with torch.no_grad():
        want = bn(q(x))
        got = folded(x)
    # same input quantization, same integers: the only difference is float rounding of scale and bias
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    # the integers are the quantizer's, sign-flipped where gamma < 0; the scales are per channel
    grid = q.weight_grid()
    q_int = grid.integers(q.quantized_weight().detach())
    flip = torch.sign(bn.weight.detach()).reshape(-1, 1, 1, 1)
    assert torch.equal(folded.weight_int, (q_int * flip).to(torch.int32))
    assert folded.weight_scale.shape == (8,) and bool((folded.weight_scale > 0).all())


def test_fold_never_touches_rounded_weights_per_tensor_becomes_per_channel():
    q, bn = _conv_bn("lsq", 2, "per_tensor")
    folded = fold_layer(q, bn, name="conv")
    assert q.weight_grid().scale.dim() == 0  # trained per tensor
    assert len(set(folded.weight_scale.tolist())) > 1  # per channel after folding
    assert set(folded.weight_int.unique().tolist()) <= {-2, -1, 0, 1, 2}  # still the 2-bit grid (up to sign)


def test_dead_channel_gets_positive_scale_and_zero_integers():
    q, bn = _conv_bn("lsq", 4, "per_channel")
    bn.weight.data[2] = 0.0
    folded = fold_layer(q, bn, name="conv", bn_name="bn")
    assert folded.dead_channels == 1
    assert bool((folded.weight_int[2] == 0).all())
    assert float(folded.weight_scale[2]) == float(folded.weight_scale[torch.arange(8) != 2].min())
    x = torch.randn(2, 6, 5, 5).abs()
    with torch.no_grad():
        want, got = bn(q(x)), folded(x)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)  # channel 2 is the constant beta - mean*0 = beta


def _student_with_trained_like_bn(quantizer: str, seed: int, batch: int) -> tuple[nn.Module, torch.Tensor]:
    """A W4A4 ResNet-20 student with random BN statistics (negative gammas too), initialised on ``x``."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = create_model("resnet20", num_classes=10, in_channels=1)
    _randomise_bn(model, gen)
    student = prepare_qat(model, QuantConfig(quantizer=quantizer, wbits=4, abits=4)).eval()
    x = torch.randn(batch, 1, 12, 12, generator=gen)
    with torch.no_grad():
        student(x)
    return student, x


@pytest.mark.parametrize("quantizer", ["pact", "lsq", "dorefa", "interval"])
def test_whole_model_folded_equals_unfolded(quantizer):
    student, x = _student_with_trained_like_bn(quantizer, seed=1, batch=32)
    folded = fold_batchnorm(student)
    assert len(folded.folded_bn) == 19 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.module.modules())
    assert set(folded.quant_layers) == {name for name, _ in iter_quant_layers(student)}
    # activation quantizers off (layer inputs and residual Adds; weights stay on their grid): a float
    # comparison, no rounding to flip
    activations = [m for m in [*student.modules(), *folded.module.modules()]
                   if isinstance(m, Quantizer) and not m.is_weight]
    assert len(activations) > 2 * 18  # the layers' inputs and the residual quantizers, in both models
    for q in activations:
        q.enabled = False
    with torch.no_grad():
        want, got = student(x), folded.module(x)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    # quantizers on: roundings sit on the same grid; float noise may flip a rare tie, not the decision
    for q in activations:
        q.enabled = True
    with torch.no_grad():
        want, got = student(x), folded.module(x)
    assert torch.equal(want.argmax(1), got.argmax(1))


def test_float_conv_bn_is_fused_and_student_untouched():
    model = create_model("resnet20", num_classes=10, in_channels=3).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)  # a float model: the first-conv path (plain Conv2d + BN)
    assert folded.quant_layers == {}
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(folded.module(x), model(x), atol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_torchvision_resnet_traces_and_folds():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(num_classes=10)
    student = prepare_qat(net, QuantConfig(quantizer="lsq", wbits=8, abits=8)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        student(x)
    folded = fold_batchnorm(student)
    assert len(folded.folded_bn) == 20  # every BN, downsample branches included
    assert all(isinstance(m, FoldedQuantConv2d) for name, m in folded.quant_layers.items() if name != "fc")


def test_untraceable_model_is_refused_clearly():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow
                return self.conv(x).mean((2, 3))
            return self.conv(-x).mean((2, 3))

    with pytest.raises(ExportError, match="torch.fx cannot trace Branchy"):
        trace(Branchy())


@pytest.mark.parametrize("quantizer", ["dorefa", "lsq"])
def test_folding_in_float64_is_the_student_to_the_last_bits(quantizer):
    """Folding is exact math: done in float64 on a float64 student, the logits agree to ~1e-14, so any
    parity miss of a float32 graph is float32 rounding (see the slow grid's explanation of DoReFa misses)."""
    s, x = _student_with_trained_like_bn(quantizer, seed=0, batch=16)
    with torch.no_grad():
        s64 = s.double()
        want = s64(x.double())
        folded = fold_batchnorm(s64, dtype=torch.float64)
        assert all(layer.weight_scale.dtype == torch.float64 for layer in folded.quant_layers.values())
        got = folded.module(x.double())
    assert float((got - want).abs().max()) <= 1e-9 * float(want.abs().max())
    assert fold_batchnorm(s).quant_layers["layer1.0.conv1"].weight_scale.dtype == torch.float32  # the default
