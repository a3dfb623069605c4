"""What a model takes: its input contract, recorded in every checkpoint and manifest."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputContract:
    """What a model takes: image channels and size, and the normalisation its weights were trained with.

    Recorded in every checkpoint and export manifest, so export and bench need no flags again. Images are
    converted to it: channels (gray <-> RGB), size (resize and crop) and ``(pixel/255 - mean) / std``.

    Args:
        channels: input channels (1 gray, 3 RGB, or what the model's first layer takes).
        height: input height in pixels.
        width: input width in pixels.
        mean: per-channel mean of pixels in [0, 1] (one value per channel).
        std: per-channel standard deviation, positive.
    """

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"input {name} must be a positive integer, got {value!r}")
        if not 8 <= self.height <= 4096 or not 8 <= self.width <= 4096:
            raise ConfigError(f"input size must be 8 to 4096 pixels per side, got {self.height}x{self.width}")
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        for name, values in (("mean", mean), ("std", std)):
            if len(values) != self.channels:
                raise ConfigError(f"--{name} has {len(values)} value(s) but the input has {self.channels} channel(s); "
                                  "give one per channel, comma-separated")
            if not all(math.isfinite(v) for v in values):
                raise ConfigError(f"--{name} values must be finite numbers, got {values}")
        if any(v <= 0 for v in std):
            raise ConfigError(f"--std values must be > 0, got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return self.channels, self.height, self.width

    @property
    def size_text(self) -> str:
        """``224`` or ``224x160``."""
        return str(self.height) if self.height == self.width else f"{self.height}x{self.width}"
