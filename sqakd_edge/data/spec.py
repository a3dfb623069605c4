"""Dataset specs (``embedded``, ``cifar10:PATH``, a bare path, ...) and :func:`open_dataset`."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import InputContract
from ..errors import DataError
from . import cifar, fashion_mnist, tiny_imagenet
from .cifar import open_cifar
from .contract import adapt
from .embedded import open_embedded
from .fashion_mnist import open_fashion_mnist
from .folder import open_folder
from .info import DatasetInfo, check_input_size, normalise_split
from .tiny_imagenet import open_tiny_imagenet

#: Every spec form, with what it reads; the CLI shows this in ``--help``.
DATASET_KINDS = {
    "embedded": "embedded: the Fashion-MNIST subset shipped in the package (6,000 train / 1,000 test)",
    "fashion-mnist": f"fashion-mnist[:PATH]: Fashion-MNIST IDX .gz files (default {fashion_mnist.DEFAULT_ROOT})",
    "cifar10": f"cifar10:PATH: CIFAR-10 python batches ({cifar.CIFAR10.folder})",
    "cifar100": f"cifar100:PATH: CIFAR-100 python batches ({cifar.CIFAR100.folder})",
    "tiny-imagenet": f"tiny-imagenet:PATH: a {tiny_imagenet.FOLDER} folder",
    "folder": "folder:PATH: images, labelled by class subfolders or unlabeled",
    "unlabeled": "unlabeled:PATH: a folder of images read without labels",
}
_NO_PATH = ("embedded",)
_OPTIONAL_PATH = ("fashion-mnist",)


def list_dataset_kinds() -> list[str]:
    """The dataset kinds a spec may name (``kind`` or ``kind:PATH``), in display order."""
    return list(DATASET_KINDS)


def _forms() -> str:
    short = [text.split(": ", 1)[0] for text in DATASET_KINDS.values()]
    return ", ".join(short) + " or a bare PATH (layout detected)"


def parse_spec(spec: str | os.PathLike[str]) -> tuple[str | None, Path | None]:
    """Split a spec into ``(kind, path)``; ``kind`` is ``None`` for a bare path.

    Raises:
        DataError: for an unknown kind or a kind given without its required path.
    """
    text = os.fspath(spec).strip()
    if not text:
        raise DataError(f"empty dataset spec; give one of: {_forms()}")
    if text in _NO_PATH + _OPTIONAL_PATH:
        return text, None
    kind, sep, rest = text.partition(":")
    if sep and kind in DATASET_KINDS:
        if kind in _NO_PATH:
            raise DataError(f"the dataset '{kind}' takes no path; give just '{kind}'")
        if not rest:
            raise DataError(f"the dataset '{kind}' needs a path: {kind}:PATH")
        return kind, Path(rest).expanduser()
    path = Path(text).expanduser()
    looks_like_kind = sep and kind and "/" not in kind and os.sep not in kind
    if looks_like_kind and not path.exists():
        raise DataError(f"unknown dataset kind {kind!r}; choose one of: {_forms()}")
    return None, path


def detect_kind(path: Path) -> str:
    """The layout of a bare path: CIFAR, Tiny-ImageNet, Fashion-MNIST IDX, else an image folder.

    Raises:
        DataError: when the path does not exist or is not a folder.
    """
    if not path.exists():
        raise DataError(f"dataset path {path} does not exist; give one of: {_forms()}")
    if not path.is_dir():
        raise DataError(f"dataset path {path} is not a folder; give one of: {_forms()}")
    for kind, fmt in cifar.FORMATS.items():
        if (path / fmt.folder).is_dir() or (path / fmt.train_files[0]).is_file():
            return kind
    if (path / "wnids.txt").is_file() or (path / tiny_imagenet.FOLDER).is_dir():
        return "tiny-imagenet"
    stem = fashion_mnist.FILES["train"][0]
    for folder in (path, path / "FashionMNIST" / "raw"):
        if (folder / stem).is_file() or (folder / f"{stem}.gz").is_file():
            return "fashion-mnist"
    return "folder"


def open_dataset(
    spec: str | os.PathLike[str],
    split: str = "train",
    augment: bool = False,
    input_size: int | None = None,
    skip_corrupt: bool = False,
    contract: InputContract | None = None,
) -> DatasetInfo:
    """Open a dataset by spec, ready for a ``DataLoader``.

    Args:
        spec: ``embedded``, ``fashion-mnist[:PATH]``, ``cifar10:PATH``, ``cifar100:PATH``,
            ``tiny-imagenet:PATH``, ``folder:PATH``, ``unlabeled:PATH``, or a bare PATH whose
            layout is detected.
        split: ``train`` or ``test`` (``val`` is an alias of ``test``).
        augment: the dataset's random training transform; ``False`` gives the deterministic
            evaluation transform.
        input_size: side of the square images to yield; ``None`` keeps the dataset's own
            (28 Fashion-MNIST, 32 CIFAR, 64 Tiny-ImageNet; folders: first image, at most 64).
        skip_corrupt: drop unreadable image files with one counted warning, instead of raising
            a DataError naming the first one read.
        contract: a model's input contract (channels, size, mean/std): images are converted to it
            (``data.contract``), and ``input_size`` is ignored.

    Returns:
        A :class:`DatasetInfo`.

    Raises:
        DataError: for a missing, malformed or empty dataset (one line, with the expected layout).
        ConfigError: for an unknown split or an unusable input size.

    Example:
        >>> info = open_dataset("embedded", split="test")
        >>> info.num_classes, info.in_channels, info.input_size, len(info.dataset)
        (10, 1, 28, 1000)
    """
    split = normalise_split(split)
    check_input_size(input_size)
    kind, path = parse_spec(spec)
    if kind is None:
        assert path is not None
        kind = detect_kind(path)
    if kind in ("folder", "unlabeled"):
        assert path is not None
        return open_folder(path, split, augment, input_size, skip_corrupt,
                           labelled=False if kind == "unlabeled" else None, contract=contract)
    native_size = None if contract is not None else input_size
    if kind == "embedded":
        info = open_embedded(split, augment, native_size)
    elif kind == "fashion-mnist":
        info = open_fashion_mnist(path, split, augment, native_size)
    elif kind in cifar.FORMATS:
        assert path is not None
        info = open_cifar(path, kind, split, augment, native_size)
    else:
        assert path is not None and kind == "tiny-imagenet"
        info = open_tiny_imagenet(path, split, augment, native_size, skip_corrupt)
    return adapt(info, contract) if contract is not None else info
