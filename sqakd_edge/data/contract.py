"""Images converted to a model's input contract (channels, size, normalisation).

A model the user brings (torchvision's or their own) fixes its input: e.g. 3x224x224 normalised with
ImageNet's mean and std. Two ways data meets it:

* image folders are decoded straight into it, as torchvision's reference recipes read ImageNet: training
  takes a random-resized crop and a flip, evaluation resizes the shorter side to ``size / 0.875`` and takes
  the centre crop; gray, RGBA, palette and 16-bit images are converted to the contract's channels;
* in-memory datasets (the embedded set, Fashion-MNIST, CIFAR) and Tiny-ImageNet keep their own pipeline
  (augmentation included) and are adapted after it: back to [0, 1] pixels, gray replicated to RGB (or RGB to
  luminance), resized to the contract's size, normalised with its mean and std.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..config import InputContract
from .info import DatasetInfo
from .transforms import Transform

EVAL_CROP_FRACTION = 0.875  # torchvision's reference evaluation: resize 256, centre-crop 224
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, what PIL's convert("L") uses


def image_mode(contract: InputContract) -> str:
    """The PIL mode images are decoded in: ``L`` for 1 channel, ``RGB`` for 3."""
    return "L" if contract.channels == 1 else "RGB"


def folder_transform(contract: InputContract, augment: bool) -> Transform:
    """uint8 CHW -> the contract's normalised float input (random-resized crop + flip, or resize + centre crop)."""
    size = (contract.height, contract.width)
    if augment:
        steps: list[v2.Transform] = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        short = round(min(size) / EVAL_CROP_FRACTION)
        steps = [v2.Resize(short, antialias=True), v2.CenterCrop(size)]
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(contract.mean), list(contract.std))])


class ContractAdapter(Dataset):
    """A dataset's normalised images re-expressed in another contract (see the module docstring)."""

    def __init__(self, dataset: Dataset, mean: Sequence[float], std: Sequence[float], contract: InputContract) -> None:
        self.dataset = dataset
        self.contract = contract
        self.src_mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.src_std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
        self.mean = torch.tensor(contract.mean, dtype=torch.float32).reshape(-1, 1, 1)
        self.std = torch.tensor(contract.std, dtype=torch.float32).reshape(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        pixels = image * self.src_std + self.src_mean  # back to [0, 1]
        pixels = convert_channels(pixels, self.contract.channels)
        if tuple(pixels.shape[1:]) != (self.contract.height, self.contract.width):
            pixels = F.interpolate(pixels[None], size=(self.contract.height, self.contract.width), mode="bilinear",
                                   antialias=True, align_corners=False)[0].clamp_(0, 1)
        return (pixels - self.mean) / self.std, label

    @property
    def labels(self):  # noqa: ANN201 - whatever the wrapped dataset offers (numpy array)
        return getattr(self.dataset, "labels", None)


def convert_channels(pixels: torch.Tensor, channels: int) -> torch.Tensor:
    """``(C, H, W)`` pixels in [0, 1] to ``channels``: gray replicated, RGB to luminance, else a clear error."""
    have = pixels.shape[0]
    if have == channels:
        return pixels
    if have == 1:
        return pixels.expand(channels, *pixels.shape[1:]).clone()
    if channels == 1 and have == 3:
        weights = torch.tensor(LUMA, dtype=pixels.dtype).reshape(3, 1, 1)
        return (pixels * weights).sum(0, keepdim=True)
    from ..errors import DataError

    raise DataError(f"cannot convert {have}-channel images to the model's {channels} channels; give images with "
                    f"{channels} channels (or 1, gray)")


def adapt(info: DatasetInfo, contract: InputContract) -> DatasetInfo:
    """``info`` served in ``contract`` (unchanged when it already is)."""
    same = (info.in_channels == contract.channels and info.input_size == contract.height == contract.width
            and tuple(info.mean) == contract.mean and tuple(info.std) == contract.std)
    if same:
        return info
    dataset = ContractAdapter(info.dataset, info.mean, info.std, contract)
    return replace(info, dataset=dataset, in_channels=contract.channels, input_size=contract.height,
                   mean=contract.mean, std=contract.std)
