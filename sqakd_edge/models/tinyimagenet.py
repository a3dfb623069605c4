"""Tiny-ImageNet models (64x64 inputs, 200 classes): torchvision's definitions with 64x64 stems.

Each builder constructs torchvision's model (random weights) and only swaps what assumes 224x224
inputs, so the architecture stays torchvision's:

* ResNet-18: 3x3 stride-1 stem conv and no max pool (final maps 8x8, as in FACTS' measurements);
* VGG-11-BN: no final max pool, global average pooling and one linear layer (the 7x7x4096 head
  is 120 M parameters made for 224 px inputs; the paper's code uses the same global-pool head);
* MobileNet-V2: stride-1 first conv (final maps 4x4);
* ShuffleNet-V2 x0.5: stride-1 first conv and no max pool (final maps 8x8);
* SqueezeNet 1.0: 3x3 stride-1 first conv instead of 7x7 stride 2 (final maps 8x8).

The first conv is always rebuilt, so ``in_channels`` works for every model.
"""

from __future__ import annotations

from torch import nn
from torchvision import models as tv

from .registry import register


def _stem(old: nn.Module, in_channels: int, stride: int = 1, kernel_size: int = 3) -> nn.Conv2d:
    """A new first conv with ``in_channels`` inputs and the old one's outputs and bias, He-initialised."""
    assert isinstance(old, nn.Conv2d)
    conv = nn.Conv2d(
        in_channels, old.out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=old.bias is not None
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


@register("resnet18", input_size=64, family="tinyimagenet")
def resnet18(num_classes: int = 200, in_channels: int = 3) -> nn.Module:
    """ResNet-18 with a 3x3 stride-1 stem and no max pool (11.3 M parameters at 200 classes)."""
    model = tv.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = _stem(model.conv1, in_channels)
    model.maxpool = nn.Identity()
    return model


@register("vgg11_bn", input_size=64, family="tinyimagenet")
def vgg11_bn(num_classes: int = 200, in_channels: int = 3) -> nn.Module:
    """VGG-11 with BN, four max pools, global average pooling and one linear layer."""
    model = tv.vgg11_bn(weights=None, num_classes=num_classes)
    layers = list(model.features)
    assert isinstance(layers[-1], nn.MaxPool2d)
    layers[0] = _stem(layers[0], in_channels)
    model.features = nn.Sequential(*layers[:-1])
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, num_classes)
    nn.init.normal_(model.classifier.weight, 0, 0.01)
    nn.init.zeros_(model.classifier.bias)
    return model


@register("mobilenet_v2", input_size=64, family="tinyimagenet")
def mobilenet_v2(num_classes: int = 200, in_channels: int = 3) -> nn.Module:
    """MobileNet-V2 (width 1.0) with a stride-1 first conv."""
    model = tv.mobilenet_v2(weights=None, num_classes=num_classes)
    stem = model.features[0]
    assert isinstance(stem, nn.Sequential)
    stem[0] = _stem(stem[0], in_channels)
    return model


@register("shufflenet_v2_x0_5", input_size=64, family="tinyimagenet")
def shufflenet_v2_x0_5(num_classes: int = 200, in_channels: int = 3) -> nn.Module:
    """ShuffleNet-V2 x0.5 with a stride-1 first conv and no max pool."""
    model = tv.shufflenet_v2_x0_5(weights=None, num_classes=num_classes)
    model.conv1[0] = _stem(model.conv1[0], in_channels)
    model.maxpool = nn.Identity()
    return model


@register("squeezenet1_0", input_size=64, family="tinyimagenet")
def squeezenet1_0(num_classes: int = 200, in_channels: int = 3) -> nn.Module:
    """SqueezeNet 1.0 with a 3x3 stride-1 first conv."""
    model = tv.squeezenet1_0(weights=None, num_classes=num_classes)
    model.features[0] = _stem(model.features[0], in_channels)
    return model
