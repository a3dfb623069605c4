"""Any folder of images, labelled by class subfolders or not labelled at all (SQAKD's case).

Layout rules, decided once per folder:

* **labelled** when the folder holds no images itself and at least two subfolders hold images
  (anywhere below them): each such subfolder is a class, named after it, labels in sorted order;
* **unlabeled** otherwise (a flat folder, or nested folders without that structure): every image
  below the folder, label ``-1``. The ``unlabeled:PATH`` spec forces this reading.

Splits: a folder with ``train/`` and ``test/`` (or ``val/``) subfolders uses them. Any other folder
is one pool from which every 10th image (per class, in sorted file order) is held out as ``test``,
so ``train`` and ``test`` never overlap.

Images of any size are resized (shorter side) and centre-cropped to ``input_size``; without one,
the first image's shorter side is used, capped at 64 (the largest input of the model zoo).
Channels: 1 when the first image is grayscale, else 3 (other images are converted to match).
Mean/std: computed from up to 512 evenly spaced training images.
Transform: random crop with padding size/8 and flip (the CIFAR recipe) when augmenting.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import InputContract
from ..errors import DataError
from .contract import folder_transform, image_mode
from .images import (
    IMAGE_SUFFIXES,
    ImageFileDataset,
    Sample,
    Scan,
    drop_unreadable,
    find_images,
    probe_image,
    read_image,
)
from .info import DatasetInfo, pixel_mean_std
from .transforms import crop_flip_transform, resize_steps

HOLDOUT_EVERY = 10
MAX_DEFAULT_SIZE = 64
STATS_IMAGES = 512
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}
UNLABELED = -1


def _no_images(root: Path) -> DataError:
    return DataError(
        f"no images found under {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); give a folder of images, "
        "with one subfolder per class when they are labelled"
    )


def _split_folders(root: Path) -> tuple[Path, Path] | None:
    """``(train, test)`` subfolders when the folder is split, else ``None``."""
    train = root / "train"
    test = next((root / name for name in SPLIT_FOLDERS["test"] if (root / name).is_dir()), None)
    return (train, test) if train.is_dir() and test is not None else None


def _class_folders(root: Path, scan: Scan, min_classes: int = 2) -> dict[str, list[Path]] | None:
    """Images per class subfolder, or ``None`` when the folder has no class structure."""
    if any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        return None
    per_class = {}
    top = root.resolve()
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if sub.resolve() == top or sub.resolve() in top.parents:
            scan.cycles.append(sub.name)  # a "class" that is the dataset itself, or holds it
            continue
        images = find_images(sub, scan)
        if images:
            per_class[sub.name] = images
    return per_class if len(per_class) >= min_classes else None


def scan(
    root: Path, labelled: bool | None, classes: tuple[str, ...] | None = None, skipped: Scan | None = None
) -> tuple[list[Sample], tuple[str, ...] | None]:
    """The samples of one folder and its class names (``None`` when unlabeled).

    Args:
        root: the folder.
        labelled: ``None`` decides from the layout; ``False`` reads it as unlabeled.
        classes: the class names to label with (a test folder uses the training folder's).
        skipped: collects the directory links that were not followed.

    Returns:
        ``(samples, classes)``.

    Raises:
        DataError: when the folder holds a class the training folder lacks.
    """
    skipped = skipped if skipped is not None else Scan()
    # A test folder may hold only some of the training classes, even a single one.
    per_class = _class_folders(root, skipped, 1 if classes else 2) if labelled is not False else None
    if classes is not None:
        if per_class is None:
            raise DataError(f"{root} has no class subfolders, but the training folder is labelled by {classes[:3]}...")
        unknown = sorted(set(per_class) - set(classes))
        if unknown:
            raise DataError(f"{root} holds classes {unknown} that the training folder lacks; use the same class names")
    if per_class is None:
        return [(str(p), UNLABELED) for p in find_images(root, skipped)], None
    names = classes or tuple(per_class)
    index = {name: i for i, name in enumerate(names)}
    return [(str(p), index[name]) for name, files in per_class.items() for p in files], names


def holdout(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Split one pool into ``(train, test)``: every 10th image of each class (in order) goes to test."""
    train: list[Sample] = []
    test: list[Sample] = []
    seen: dict[int, int] = {}
    for sample in samples:
        position = seen.get(sample[1], 0)
        seen[sample[1]] = position + 1
        (test if position % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 else train).append(sample)
    return train, test


def _probe(samples: list[Sample], skip_corrupt: bool) -> tuple[str, int]:
    """Mode and shorter side of the first (readable, when skipping) image."""
    for path, _ in samples:
        try:
            mode, width, height = probe_image(path)
        except DataError:
            if not skip_corrupt:
                raise
            continue
        return mode, min(width, height)
    raise DataError(f"none of the {len(samples)} images can be read")


def _mean_std(samples: list[Sample], mode: str, size: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel statistics of up to STATS_IMAGES evenly spaced images, as the model will see them."""
    picks = np.unique(np.linspace(0, len(samples) - 1, min(STATS_IMAGES, len(samples))).round().astype(int))
    resize = resize_steps(size)
    images = []
    for i in picks:
        try:
            pixels = torch.from_numpy(read_image(samples[i][0], mode, size))
        except DataError:
            continue  # only reachable when skipping unreadable images; the split's warning counts them
        for step in resize:
            pixels = step(pixels)
        images.append(pixels.numpy())
    if not images:
        raise DataError(f"none of the {len(samples)} training images can be read")
    return pixel_mean_std(np.stack(images))


def open_folder(
    path: Path, split: str, augment: bool, input_size: int | None, skip_corrupt: bool, labelled: bool | None = None,
    contract: InputContract | None = None,
) -> DatasetInfo:
    """A folder of images, labelled by class subfolders or unlabeled (see the module docstring).

    Args:
        path: the folder.
        split: ``train`` or ``test``.
        augment: random training transform, or the deterministic one.
        input_size: output side; ``None`` takes the first image's shorter side, at most 64.
        skip_corrupt: drop unreadable images (with one warning) instead of failing on them.
        labelled: ``None`` decides from the layout; ``False`` forces unlabeled.
        contract: a model's input contract: images are decoded into its channels and size, and normalised with
            its mean and std, as torchvision's reference recipes do (``data.contract``); ``input_size`` is then
            ignored.

    Returns:
        The dataset description.

    Raises:
        DataError: for a missing or empty folder, too few images for a test split, or an unreadable image.
    """
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise DataError(f"image folder {path} {what}; give a folder of images (one subfolder per class if labelled)")
    skipped = Scan()
    folders = _split_folders(path)
    if folders is not None:
        train, classes = scan(folders[0], labelled, skipped=skipped)
        # An unlabeled training folder makes the test folder unlabeled too, whatever its layout.
        test, _ = scan(folders[1], labelled if classes else False, classes, skipped=skipped)
    else:
        pool, classes = scan(path, labelled, skipped=skipped)
        train, test = holdout(pool)
    note = skipped.warning(path)
    if note:
        warnings.warn(note + " (links are followed only inside the folder, and never round a loop)", UserWarning,
                      stacklevel=3)
    if not train:  # the holdout always leaves training images, so only an empty folder gets here
        raise _no_images(folders[0] if folders else path)
    chosen = train if split == "train" else test
    if not chosen and folders:
        raise _no_images(folders[1])
    if not chosen:
        raise DataError(
            f"{path} has too few images ({len(train)}) to hold out a test split (every {HOLDOUT_EVERY}th image of "
            "each class); add images, or give train/ and test/ subfolders"
        )
    if contract is not None:
        mode, size = image_mode(contract), max(contract.height, contract.width)
        mean, std = contract.mean, contract.std
        transform = folder_transform(contract, augment)
    else:
        mode, side = _probe(train, skip_corrupt)
        size = input_size or min(side, MAX_DEFAULT_SIZE)
        mean, std = _mean_std(train, mode, size)
        transform = crop_flip_transform(
            size=size, native_size=None, pad=max(1, size // 8), flip=True, mean=mean, std=std, augment=augment
        )
    if skip_corrupt:
        chosen = drop_unreadable(chosen, mode, path, size_hint=size)
        if not chosen:
            raise DataError(f"every {split} image under {path} is unreadable")
    return DatasetInfo(
        dataset=ImageFileDataset(chosen, mode, transform, size_hint=size),
        name=f"folder-{path.name}",
        num_classes=len(classes) if classes else None,
        in_channels=1 if mode == "L" else 3,
        input_size=contract.height if contract is not None else size,
        mean=mean,
        std=std,
        labelled=classes is not None,
        classes=classes,
    )
