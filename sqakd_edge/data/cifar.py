"""CIFAR-10 and CIFAR-100 from a local copy of the python-pickle batches; never downloads.

Layouts (https://www.cs.toronto.edu/~kriz/cifar.html, "python version"):
``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` with keys ``data``
(N x 3072 uint8, R then G then B planes of 32x32) and ``labels``;
``cifar-100-python/{train, test, meta}`` with ``data`` and ``fine_labels``.

The batches are pickles, and unpickling runs code named in the file, so they are read with an
unpickler that only admits what a CIFAR batch holds (numpy arrays, lists, dicts, strings).
Transform (the paper's): random crop 32 with 4 px zero padding, horizontal flip, and the paper
code's per-dataset mean/std.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .info import ArrayDataset, DatasetInfo
from .transforms import crop_flip_transform, scaled_pad

NATIVE_SIZE = 32
NATIVE_PAD = 4


@dataclass(frozen=True)
class CifarFormat:
    """One of the two CIFAR layouts."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def layout(self) -> str:
        files = ", ".join(self.train_files + self.test_files)
        return f"expected {self.folder}/ (the CIFAR python version) holding {files}"


CIFAR10 = CifarFormat(
    name="cifar10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    # The paper code's constants (its std is the commonly used one, not the exact pixel std).
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2023, 0.1994, 0.2010),
)
CIFAR100 = CifarFormat(
    name="cifar100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    mean=(0.5071, 0.4867, 0.4408),
    std=(0.2675, 0.2565, 0.2761),
)
FORMATS = {fmt.name: fmt for fmt in (CIFAR10, CIFAR100)}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# What a CIFAR batch may contain: numpy arrays (old and new module paths), and the helper that
# protocol-2 pickles written by Python 3 use for bytes.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}, which no CIFAR batch contains")
        return super().find_class(*target)


def _str_keys(obj: dict) -> dict[str, Any]:
    # The original batches were pickled by Python 2: their keys come back as bytes.
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def read_batch(path: Path, layout: str) -> dict[str, Any]:
    """Unpickle one CIFAR file (restricted to the types a batch holds) into a dict with ``str`` keys.

    Raises:
        DataError: naming the file when it is missing, unreadable or not a CIFAR batch.
    """
    if not path.is_file():
        raise DataError(f"{path} is missing; {layout}")
    try:
        with path.open("rb") as fh:
            obj = _BatchUnpickler(fh, encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 - unpickling fails in many ways; all mean a bad file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path} is not a readable CIFAR batch ({reason}); {layout}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict; {layout}")
    return _str_keys(obj)


def find_root(path: Path, fmt: CifarFormat) -> Path:
    """The batches folder: ``path`` itself or ``path/<cifar-10-batches-py|cifar-100-python>``.

    Raises:
        DataError: when neither holds the first training file.
    """
    if not path.exists():
        raise DataError(f"CIFAR root {path} does not exist; {fmt.layout}")
    for candidate in (path, path / fmt.folder):
        if (candidate / fmt.train_files[0]).is_file():
            return candidate
    raise DataError(f"{path} is not a {fmt.name} root: no {fmt.train_files[0]} in it or in {fmt.folder}/; {fmt.layout}")


def load_split(root: Path, fmt: CifarFormat, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` of one split.

    Raises:
        DataError: for a missing or malformed batch, naming the file.
    """
    images, labels = [], []
    for name in fmt.train_files if split == "train" else fmt.test_files:
        path = root / name
        batch = read_batch(path, fmt.layout)
        if "data" not in batch or fmt.label_key not in batch:
            raise DataError(
                f"{path} lacks the keys 'data' and '{fmt.label_key}' (it has {sorted(batch)}); is it a "
                f"{fmt.name} file? {fmt.layout}"
            )
        data = np.asarray(batch["data"])
        batch_labels = np.asarray(batch[fmt.label_key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * NATIVE_SIZE**2:
            raise DataError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072); {fmt.layout}")
        if batch_labels.shape != (len(data),) or not np.issubdtype(batch_labels.dtype, np.integer):
            raise DataError(f"{path}: '{fmt.label_key}' has shape {batch_labels.shape} for {len(data)} images")
        if len(batch_labels) and (batch_labels.min() < 0 or batch_labels.max() >= fmt.num_classes):
            raise DataError(f"{path}: labels must lie in 0..{fmt.num_classes - 1}, found {batch_labels.max()}")
        images.append(data.reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE))
        labels.append(batch_labels.astype(np.int64))
    all_images = np.concatenate(images)
    if len(all_images) == 0:
        raise DataError(f"the {split} split of {root} holds no images")
    return all_images, np.concatenate(labels)


def class_names(root: Path, fmt: CifarFormat) -> tuple[str, ...]:
    """Class names from the meta file, or the standard ones when it is absent."""
    meta_path = root / fmt.meta_file
    if meta_path.is_file():
        names = read_batch(meta_path, fmt.layout).get(fmt.names_key)
        if isinstance(names, list) and len(names) == fmt.num_classes:
            return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return CIFAR10_CLASSES if fmt is CIFAR10 else tuple(str(i) for i in range(fmt.num_classes))


def open_cifar(path: Path, kind: str, split: str, augment: bool, input_size: int | None) -> DatasetInfo:
    """CIFAR-10 (``kind="cifar10"``) or CIFAR-100 (``"cifar100"``) from a local python-pickle copy.

    Args:
        path: the batches folder or its parent.
        kind: ``cifar10`` or ``cifar100``.
        split: ``train`` or ``test``.
        augment: random training transform (crop 32 pad 4, flip), or the deterministic one.
        input_size: output side, or ``None`` for 32.

    Returns:
        The dataset description.

    Raises:
        DataError: for a missing or malformed root or batch.
    """
    fmt = FORMATS[kind]
    root = find_root(path, fmt)
    images, labels = load_split(root, fmt, split)
    size = input_size or NATIVE_SIZE
    transform = crop_flip_transform(
        size=size,
        native_size=NATIVE_SIZE,
        pad=scaled_pad(NATIVE_PAD, NATIVE_SIZE, size),
        flip=True,
        mean=fmt.mean,
        std=fmt.std,
        augment=augment,
    )
    return DatasetInfo(
        dataset=ArrayDataset(images, labels, transform),
        name=fmt.name,
        num_classes=fmt.num_classes,
        in_channels=3,
        input_size=size,
        mean=fmt.mean,
        std=fmt.std,
        labelled=True,
        classes=class_names(root, fmt),
    )
