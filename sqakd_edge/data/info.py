"""What :func:`~sqakd_edge.data.open_dataset` returns, and the pieces every format shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError

SPLITS = {"train": "train", "test": "test", "val": "test"}


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset ready for a ``DataLoader``, and what a model needs to know about it.

    Args:
        dataset: yields ``(float32 CHW tensor normalised with mean/std, int label)``; the label is
            ``-1`` for unlabeled data.
        name: a short name such as ``fashion-mnist-embedded`` or ``cifar10``.
        num_classes: number of classes, ``None`` when unlabeled.
        in_channels: image channels (1 grayscale, 3 colour).
        input_size: side of the (square) images the dataset yields.
        mean: per-channel mean used for normalisation, in [0, 1] pixel units.
        std: per-channel standard deviation used for normalisation.
        labelled: whether labels exist.
        classes: class names in label order, ``None`` when unlabeled.
    """

    dataset: Dataset
    name: str
    num_classes: int | None
    in_channels: int
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labelled: bool
    classes: tuple[str, ...] | None


class ArrayDataset(Dataset):
    """Images held in memory as one uint8 array ``(N, C, H, W)``, with integer labels.

    Args:
        images: uint8 array of shape ``(N, C, H, W)``.
        labels: integer array of shape ``(N,)``.
        transform: maps a uint8 CHW tensor to the model's float input.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable[[torch.Tensor], torch.Tensor]):
        assert images.dtype == np.uint8 and images.ndim == 4 and len(images) == len(labels)
        self.images = images
        self.labels = labels.astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(torch.from_numpy(self.images[index])), int(self.labels[index])


def normalise_split(split: str) -> str:
    """``train`` or ``test`` (``val`` is an alias of ``test``); ConfigError otherwise."""
    try:
        return SPLITS[split]
    except KeyError:
        raise ConfigError(f"unknown split {split!r}; choose train or test (val is an alias of test)") from None


def check_input_size(input_size: int | None) -> None:
    """Reject sizes no model in the zoo can use (ConfigError)."""
    if input_size is not None and (isinstance(input_size, bool) or not 8 <= int(input_size) <= 1024):
        raise ConfigError(f"input_size must be an integer from 8 to 1024, got {input_size!r}")


def pixel_mean_std(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and standard deviation of uint8 images ``(N, C, H, W)``, in [0, 1] units.

    Counts the 256 pixel values per channel (chunk by chunk, so a 60k-image set needs no float copy)
    and takes the moments of that histogram.

    Args:
        images: uint8 array ``(N, C, H, W)``.
        chunk: images per counting step.

    Returns:
        ``(mean, std)``, one float per channel, rounded to 4 decimals.
    """
    channels = images.shape[1]
    counts = np.zeros((channels, 256), dtype=np.int64)
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk]
        for c in range(channels):
            counts[c] += np.bincount(block[:, c].reshape(-1), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1)
    mean = (counts * values).sum(axis=1) / total
    var = (counts * values**2).sum(axis=1) / total - mean**2
    # A constant channel (e.g. an all-black folder) would divide by zero: floor at one grey level.
    std = np.maximum(np.sqrt(np.maximum(var, 0.0)), 1.0 / 255.0)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)
