"""Fashion-MNIST from its IDX files (``.gz`` or uncompressed), e.g. Debian's ``dataset-fashion-mnist``.

Transform: random crop 28 with 2 px zero padding (the CIFAR recipe scaled to 28 px) and a random
horizontal flip. The flip is label-preserving for all ten classes (garments are left-right
symmetric; a shoe facing right is still a shoe), and crop + flip is the augmentation used for
Fashion-MNIST by e.g. Zhong et al., "Random Erasing Data Augmentation" (2017).
Normalisation: mean and std computed from the training split itself.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .info import ArrayDataset, DatasetInfo, pixel_mean_std
from .transforms import crop_flip_transform, scaled_pad

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
NATIVE_SIZE = 28
NATIVE_PAD = 2
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
LAYOUT = (
    "expected a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or the same files uncompressed)"
)

_UBYTE = 0x08


MAX_IDX_BYTES = 1 << 30  # Fashion-MNIST's largest file is 47 MB; a gzip bomb is not decompressed past this


def _read_bounded_idx(fh: Any, path: Path) -> bytes:
    """The decompressed IDX bytes, never more than its header asks for (plus one, to see a longer file)."""
    head = fh.read(4)
    if len(head) < 4 or head[3] == 0 or head[3] > 4:
        return head  # the magic-number check below names the problem
    dims = fh.read(4 * head[3])
    if len(dims) < 4 * head[3]:
        return head + dims
    need = int(np.prod(struct.unpack(f">{head[3]}I", dims), dtype=np.int64))
    if need > MAX_IDX_BYTES:
        raise DataError(f"IDX file {path} declares {need} data bytes, more than the {MAX_IDX_BYTES >> 20} MiB "
                        "an image set of this kind can hold; the file is corrupt, re-download or reinstall it")
    return head + dims + fh.read(need + 1)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (``.gz`` or raw) into an array of the shape its header states.

    Args:
        path: the file.

    Returns:
        A uint8 array, e.g. ``(N, 28, 28)`` for images or ``(N,)`` for labels.

    Raises:
        DataError: naming the file when it is unreadable, truncated or not an unsigned-byte IDX file.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = _read_bounded_idx(fh, path)
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}; re-download or reinstall it") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE or raw[3] == 0:
        raise DataError(
            f"{path} is not an unsigned-byte IDX file (bad magic number {raw[:4].hex() or 'missing'}); {LAYOUT}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; re-download or reinstall it")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {path} holds {len(raw) - header} data bytes but its header {shape} needs {expected}; "
            "the file is truncated or corrupt, re-download or reinstall it"
        )
    # A writable copy: torch.from_numpy warns on the read-only view of ``raw``.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def find_root(path: Path) -> Path:
    """The folder holding the IDX files: ``path`` itself or torchvision's ``path/FashionMNIST/raw``.

    Raises:
        DataError: when neither holds the training images.
    """
    for candidate in (path, path / "FashionMNIST" / "raw"):
        if _find_file(candidate, FILES["train"][0]) is not None:
            return candidate
    if path == DEFAULT_ROOT:
        raise DataError(
            f"Fashion-MNIST not found in {path}; install Debian's package (apt-get install dataset-fashion-mnist) "
            "or give fashion-mnist:PATH to a folder of its IDX files"
        )
    raise DataError(f"no Fashion-MNIST IDX files in {path}; {LAYOUT}")


def _find_file(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, H, W)`` and labels ``(N,)`` of one split, checked for consistency.

    Raises:
        DataError: for a missing, malformed or inconsistent file.
    """
    arrays = []
    for stem in FILES[split]:
        path = _find_file(root, stem)
        if path is None:
            raise DataError(f"{root} lacks {stem}.gz; {LAYOUT}")
        arrays.append((path, read_idx(path)))
    (images_path, images), (labels_path, labels) = arrays
    if images.ndim != 3:
        raise DataError(f"{images_path} holds a {images.ndim}-d array, expected images (N, H, W); {LAYOUT}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{labels_path} holds {labels.shape} labels for {len(images)} images in {images_path}")
    if len(images) == 0:
        raise DataError(f"{images_path} holds no images")
    if labels.max() >= len(CLASSES):
        raise DataError(f"{labels_path} holds label {labels.max()}, but Fashion-MNIST has {len(CLASSES)} classes")
    return images[:, None], labels


def array_info(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    train_images: np.ndarray,
    augment: bool,
    input_size: int | None,
) -> DatasetInfo:
    """A :class:`DatasetInfo` for Fashion-MNIST-like arrays, normalised with the training split's statistics.

    Args:
        name: the dataset's name.
        images: uint8 ``(N, 1, H, W)`` images of the split to serve.
        labels: their labels.
        train_images: the training split, for mean and std.
        augment: random training transform, or the deterministic evaluation one.
        input_size: output side, or ``None`` for the stored one.

    Returns:
        The dataset description.
    """
    native = images.shape[2] if images.shape[2] == images.shape[3] else None
    size = input_size or native or min(images.shape[2:])
    mean, std = pixel_mean_std(train_images)
    transform = crop_flip_transform(
        size=size,
        native_size=native,
        pad=scaled_pad(NATIVE_PAD, NATIVE_SIZE, size),
        flip=True,
        mean=mean,
        std=std,
        augment=augment,
    )
    return DatasetInfo(
        dataset=ArrayDataset(np.ascontiguousarray(images), labels, transform),
        name=name,
        num_classes=len(CLASSES),
        in_channels=1,
        input_size=size,
        mean=mean,
        std=std,
        labelled=True,
        classes=CLASSES,
    )


def open_fashion_mnist(path: Path | None, split: str, augment: bool, input_size: int | None) -> DatasetInfo:
    """Fashion-MNIST (60k/10k) from IDX files; ``path=None`` reads Debian's ``/usr/share/datasets/fashion-mnist``.

    Args:
        path: folder of the IDX files, or ``None`` for the Debian location.
        split: ``train`` or ``test``.
        augment: random training transform, or the deterministic evaluation one.
        input_size: output side, or ``None`` for 28.

    Returns:
        The dataset description.

    Raises:
        DataError: for missing or malformed files.
    """
    root = find_root(path or DEFAULT_ROOT)
    train_images, train_labels = load_split(root, "train")
    images, labels = (train_images, train_labels) if split == "train" else load_split(root, "test")
    return array_info("fashion-mnist", images, labels, train_images, augment, input_size)
