"""The embedded default dataset: a class-balanced subset of Fashion-MNIST shipped inside the package.

``embedded/fashion_mnist_subset.npz`` holds the first 600 training and the first 100 test images of
each class (6,000 / 1,000, 28x28 grayscale), made by ``scripts/make_embedded_subset.py`` from
Debian's ``dataset-fashion-mnist``. Fashion-MNIST is (c) 2017 Zalando SE, MIT licence: see
``embedded/LICENSE-fashion-mnist.txt``, which must ship with the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .fashion_mnist import CLASSES, array_info
from .info import DatasetInfo

SUBSET_FILE = Path(__file__).parent / "embedded" / "fashion_mnist_subset.npz"
KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def load_subset(path: Path = SUBSET_FILE) -> dict[str, np.ndarray]:
    """The subset's arrays: ``train_images``/``test_images`` uint8 ``(N, 28, 28)``, ``*_labels`` uint8 ``(N,)``.

    Raises:
        DataError: when the file is missing or damaged (a broken installation).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in KEYS}
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(
            f"the embedded dataset {path} is missing or damaged ({exc}); reinstall sqakd-edge, "
            "or regenerate it with scripts/make_embedded_subset.py"
        ) from exc
    return arrays


def open_embedded(split: str, augment: bool, input_size: int | None) -> DatasetInfo:
    """The embedded Fashion-MNIST subset, normalised with its own training split's mean and std.

    Args:
        split: ``train`` or ``test``.
        augment: random training transform (crop 28 pad 2, flip), or the deterministic one.
        input_size: output side, or ``None`` for 28.

    Returns:
        The dataset description (name ``fashion-mnist-embedded``).

    Raises:
        DataError: when the packaged file is missing or damaged.
    """
    arrays = load_subset()
    train_images = arrays["train_images"][:, None]
    images = train_images if split == "train" else arrays["test_images"][:, None]
    labels = arrays[f"{split}_labels"]
    assert labels.max() < len(CLASSES)
    return array_info("fashion-mnist-embedded", images, labels, train_images, augment, input_size)
