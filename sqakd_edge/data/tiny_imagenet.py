"""Tiny-ImageNet from a local ``tiny-imagenet-200`` folder (64x64 colour JPEGs, 200 classes).

Layout: ``wnids.txt`` (one class id per line), ``train/<wnid>/images/*.JPEG``, and
``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (tab-separated: file, wnid, box).
The unlabelled ``test/`` folder is not used; ``split="test"`` is the labelled validation set.
Labels follow the sorted wnids (as torchvision's ``ImageFolder`` on ``train/`` would).
Transform (the paper's): random-resized-crop 64 and flip; ImageNet mean/std, as the paper's loader.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .images import ImageFileDataset, Sample, drop_unreadable, is_image_file
from .info import DatasetInfo
from .transforms import resized_crop_transform

NATIVE_SIZE = 64
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
FOLDER = "tiny-imagenet-200"
LAYOUT = (
    f"expected {FOLDER}/ holding wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
    "val/val_annotations.txt"
)


def find_root(path: Path) -> Path:
    """The ``tiny-imagenet-200`` folder: ``path`` itself or ``path/tiny-imagenet-200``.

    Raises:
        DataError: when neither holds ``wnids.txt``, or ``train/``, ``val/images`` or
            ``val/val_annotations.txt`` is missing.
    """
    if not path.exists():
        raise DataError(f"Tiny-ImageNet root {path} does not exist; {LAYOUT}")
    root = next((c for c in (path, path / FOLDER) if (c / "wnids.txt").is_file()), None)
    if root is None:
        raise DataError(f"{path} is not a Tiny-ImageNet root: no wnids.txt in it or in {FOLDER}/; {LAYOUT}")
    for needed in ("train", "val/images"):
        if not (root / needed).is_dir():
            raise DataError(f"{root} lacks {needed}/; {LAYOUT}")
    if not (root / "val" / "val_annotations.txt").is_file():
        raise DataError(f"{root} lacks val/val_annotations.txt, which labels the validation images; {LAYOUT}")
    return root


def read_wnids(root: Path) -> tuple[str, ...]:
    """The class ids, sorted.

    Raises:
        DataError: when ``wnids.txt`` is empty or repeats an id.
    """
    wnids = [line.strip() for line in (root / "wnids.txt").read_text().splitlines() if line.strip()]
    if len(wnids) < 2 or len(set(wnids)) != len(wnids):
        raise DataError(f"{root / 'wnids.txt'} must list at least 2 distinct class ids, one per line; {LAYOUT}")
    return tuple(sorted(wnids))


def train_samples(root: Path, wnids: tuple[str, ...]) -> list[Sample]:
    """``(path, label)`` for every training image.

    Raises:
        DataError: when a class folder is missing or empty.
    """
    samples: list[Sample] = []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise DataError(f"{root} lacks train/{wnid}/images/ for class {wnid} of wnids.txt; {LAYOUT}")
        files = sorted(p for p in folder.iterdir() if is_image_file(p))
        if not files:
            raise DataError(f"{folder} holds no images; {LAYOUT}")
        samples += [(str(p), label) for p in files]
    return samples


def val_samples(root: Path, wnids: tuple[str, ...]) -> list[Sample]:
    """``(path, label)`` for every validation image listed in ``val_annotations.txt``.

    Raises:
        DataError: for a malformed line or an unknown class id, naming the line.
    """
    index = {wnid: i for i, wnid in enumerate(wnids)}
    annotations = root / "val" / "val_annotations.txt"
    samples: list[Sample] = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataError(
                f"{annotations} line {number} is not 'FILE<tab>WNID<tab>...' with a WNID from wnids.txt: {line[:80]!r}"
            )
        samples.append((str(root / "val" / "images" / fields[0]), index[fields[1]]))
    if not samples:
        raise DataError(f"{annotations} lists no images; {LAYOUT}")
    return samples


def open_tiny_imagenet(
    path: Path, split: str, augment: bool, input_size: int | None, skip_corrupt: bool
) -> DatasetInfo:
    """Tiny-ImageNet's training set or its labelled validation set (``split="test"``).

    Args:
        path: the ``tiny-imagenet-200`` folder or its parent.
        split: ``train`` or ``test``.
        augment: random training transform (random-resized-crop, flip), or the deterministic one.
        input_size: output side, or ``None`` for 64.
        skip_corrupt: drop unreadable images (with one warning) instead of failing on them.

    Returns:
        The dataset description.

    Raises:
        DataError: for a missing or malformed layout, or (when read) an unreadable image.
    """
    root = find_root(path)
    wnids = read_wnids(root)
    samples = train_samples(root, wnids) if split == "train" else val_samples(root, wnids)
    if skip_corrupt:
        samples = drop_unreadable(samples, "RGB", root)
        if not samples:
            raise DataError(f"every {split} image under {root} is unreadable")
    size = input_size or NATIVE_SIZE
    transform = resized_crop_transform(size=size, mean=MEAN, std=STD, augment=augment)
    return DatasetInfo(
        dataset=ImageFileDataset(samples, "RGB", transform),
        name="tiny-imagenet",
        num_classes=len(wnids),
        in_channels=3,
        input_size=size,
        mean=MEAN,
        std=STD,
        labelled=True,
        classes=wnids,
    )
