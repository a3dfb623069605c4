"""The model registry: architectures by name, float definitions only.

Each family module registers its builders with :func:`register`. Quantization is applied later by
``prepare_qat``; nothing here knows about it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    Args:
        name: registry name, e.g. ``resnet20``.
        builder: ``builder(num_classes=..., in_channels=...) -> nn.Module``.
        input_size: the input side the architecture was designed for (32 CIFAR, 64 Tiny-ImageNet).
        family: the paper setting it belongs to (``cifar`` or ``tinyimagenet``).
    """

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    family: str


_REGISTRY: dict[str, ModelSpec] = {}


Builder = Callable[..., nn.Module]


def register(name: str, *, input_size: int, family: str) -> Callable[[Builder], Builder]:
    """Decorator that registers a model builder under ``name``."""

    def wrap(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")  # a programming error, not a user one
        _REGISTRY[name] = ModelSpec(name, builder, input_size, family)
        return builder

    return wrap


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; raises ConfigError listing the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """Build a float model by name.

    Args:
        name: a name from :func:`list_models`.
        num_classes: size of the classifier output.
        in_channels: input image channels (1 for grayscale data).

    Returns:
        The float ``nn.Module``, freshly initialised.

    Raises:
        ConfigError: for an unknown name or non-positive sizes.

    Example:
        >>> create_model("resnet20", num_classes=10, in_channels=1)  # doctest: +ELLIPSIS
        CifarResNet(...)
    """
    spec = model_spec(name)
    if num_classes < 2 or in_channels < 1:
        raise ConfigError(f"num_classes must be >= 2 and in_channels >= 1, got {num_classes} and {in_channels}")
    return spec.builder(num_classes=num_classes, in_channels=in_channels)
