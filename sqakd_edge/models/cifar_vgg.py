"""CIFAR VGG-8 and VGG-13 with batch norm, global average pooling and one linear layer.

The shape of the paper's code (CRD's CIFAR VGG): five groups of 3x3 conv-BN-ReLU (64, 128, 256,
512, 512 channels), 2x2 max pooling after the first three groups only (32 -> 4 px), then global
average pooling and a single linear classifier. VGG-8 has one conv per group, VGG-13 two (the
names count the three fully connected layers of the ImageNet originals, replaced here by one).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register

_WIDTHS = (64, 128, 256, 512, 512)
_POOLED_GROUPS = 3  # groups followed by max pooling: 32x32 inputs reach 4x4


class CifarVGG(nn.Module):
    """VGG for small images: ``convs_per_group`` conv-BN-ReLU layers per group, then pool + linear."""

    def __init__(self, convs_per_group: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for group, width in enumerate(_WIDTHS):
            for _ in range(convs_per_group):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
            if group < _POOLED_GROUPS:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register("vgg8", input_size=32, family="cifar")
def vgg8(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR VGG-8 with BN: 5 conv layers (one per group) and 1 linear layer (3.9 M parameters)."""
    return CifarVGG(1, num_classes, in_channels)


@register("vgg13", input_size=32, family="cifar")
def vgg13(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR VGG-13 with BN: 10 conv layers (two per group) and 1 linear layer (9.4 M parameters)."""
    return CifarVGG(2, num_classes, in_channels)
