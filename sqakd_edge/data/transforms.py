"""The paper's per-dataset transforms, applied to uint8 CHW tensors.

Every dataset in this package hands its transform a ``uint8`` tensor of shape ``(C, H, W)`` and gets
back a normalised ``float32`` tensor of shape ``(C, size, size)``. ``augment=False`` always gives the
deterministic evaluation transform (resize if needed, then normalise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torchvision.transforms import v2

Transform = Callable[[torch.Tensor], torch.Tensor]


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]


def resize_steps(size: int) -> list[v2.Transform]:
    """Resize the shorter side to ``size``, then centre-crop: square output whatever the aspect ratio."""
    return [v2.Resize(size, antialias=True), v2.CenterCrop(size)]


def crop_flip_transform(
    *,
    size: int,
    native_size: int | None,
    pad: int,
    flip: bool,
    mean: Sequence[float],
    std: Sequence[float],
    augment: bool,
) -> Transform:
    """CIFAR-style transform: (resize), random crop with zero padding, horizontal flip, normalise.

    Args:
        size: output side.
        native_size: side of the stored images; ``None`` when it varies (image folders), which
            always resizes.
        pad: padding of the random crop at ``size`` (CIFAR: 4 at 32).
        flip: random horizontal flip when augmenting.
        mean: per-channel mean in [0, 1].
        std: per-channel standard deviation in [0, 1].
        augment: random training transform, or the deterministic evaluation one.

    Returns:
        A callable from a uint8 CHW tensor to a normalised float32 CHW tensor.
    """
    steps: list[v2.Transform] = []
    if native_size != size:
        steps += resize_steps(size)
    if augment:
        if pad > 0:
            steps.append(v2.RandomCrop(size, padding=pad))
        if flip:
            steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _finish(mean, std))


def resized_crop_transform(*, size: int, mean: Sequence[float], std: Sequence[float], augment: bool) -> Transform:
    """ImageNet-style transform (Tiny-ImageNet): random-resized-crop and flip; eval resizes and centre-crops.

    Args:
        size: output side.
        mean: per-channel mean in [0, 1].
        std: per-channel standard deviation in [0, 1].
        augment: random training transform, or the deterministic evaluation one.

    Returns:
        A callable from a uint8 CHW tensor to a normalised float32 CHW tensor.
    """
    if augment:
        # Area 8-100 %, aspect 3/4-4/3: torchvision's defaults, the range the paper's loader uses.
        steps: list[v2.Transform] = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = resize_steps(size)  # a no-op on images already size x size
    return v2.Compose(steps + _finish(mean, std))


def scaled_pad(native_pad: int, native_size: int, size: int) -> int:
    """The random-crop padding at ``size`` that keeps the paper's ratio (e.g. 4 px at 32 -> 8 px at 64)."""
    return max(1, round(native_pad * size / native_size))
