"""Image files on disk: finding them, decoding them, and what to do with the unreadable ones.

An unreadable image is a :class:`~sqakd_edge.errors.DataError` naming the file, unless the user asked
to skip them: then every file is decoded once up front, the bad ones are dropped, and one warning
gives their count (so the dataset's length is known before training starts).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})

Sample = tuple[str, int]


def is_image_file(path: Path) -> bool:
    """Whether ``path`` names an image file by its suffix (hidden files never count)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


@dataclass
class Scan:
    """What :func:`find_images` skipped, for the one warning the caller gives."""

    outside: list[str] = field(default_factory=list)  # directory links leading out of the root
    cycles: list[str] = field(default_factory=list)  # directory links back into a folder already being read

    def warning(self, root: Path) -> str | None:
        """One sentence on the skipped links, or None when nothing was skipped."""
        parts = []
        if self.outside:
            parts.append(f"{len(self.outside)} link(s) leading out of the folder ({', '.join(self.outside[:3])})")
        if self.cycles:
            parts.append(f"{len(self.cycles)} link(s) looping back into it ({', '.join(self.cycles[:3])})")
        return f"skipped {' and '.join(parts)} under {root}" if parts else None


def find_images(root: Path, scan: Scan | None = None) -> list[Path]:
    """Every image file under ``root``, recursively, in sorted order; hidden folders are skipped.

    Directory links are followed only when they stay inside ``root`` and do not lead back into a folder
    that is being read (a loop would repeat images forever, or label another class's images as this one);
    file links to images inside ``root`` are kept. What is skipped is counted in ``scan``.
    """
    scan = scan if scan is not None else Scan()
    top = root.resolve()
    found: list[Path] = []

    def inside(path: Path) -> bool:
        return path == top or top in path.parents

    def walk(folder: Path, real: Path, ancestors: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return  # unreadable folder: nothing to list
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                continue
            if is_dir:
                target = path.resolve()
                if target in top.parents or target in ancestors or target == real:
                    scan.cycles.append(str(path.relative_to(root)))  # back up to a folder being read
                elif not inside(target):
                    scan.outside.append(str(path.relative_to(root)))
                else:
                    walk(path, target, ancestors | {real})
            elif is_image_file(path) and (not entry.is_symlink() or inside(path.resolve())):
                found.append(path)
            elif is_image_file(path):
                scan.outside.append(str(path.relative_to(root)))

    walk(root, top, frozenset())
    return found


def _unreadable(path: str | Path, exc: BaseException) -> DataError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return DataError(
        f"cannot read image {path}: {reason}; replace or delete it, or skip unreadable images with "
        "skip_corrupt=True (CLI: --skip-corrupt)"
    )


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float gray images as 8-bit gray, scaled by their real range (not clipped).

    PIL's ``convert("L")`` clips such images at 255, which turns a 16-bit photo white. A 16-bit image spans
    [0, 65535]; an integer image whose values fit in 8 bits is taken as it is; a float image in [0, 1] is
    scaled by 255.
    """
    if img.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return img
    values = np.asarray(img, dtype=np.float64)
    peak = float(values.max()) if values.size else 0.0
    if img.mode == "F":
        top = 1.0 if peak <= 1.0 else 255.0
    else:
        top = 65535.0 if img.mode.startswith("I;16") or peak > 255 else 255.0
    gray = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, "L")


def read_image(path: str | Path, mode: str, size_hint: int | None = None) -> np.ndarray:
    """Decode one image to a uint8 array ``(C, H, W)``.

    Args:
        path: the image file.
        mode: ``"L"`` (1 channel) or ``"RGB"`` (3 channels); other modes are converted (RGBA and palette
            images as PIL converts them, 16-bit and float images by their real range).
        size_hint: the side the image will be resized to; large JPEGs are then decoded at a
            reduced scale (still at least this size), which is much faster.

    Returns:
        The pixels, uint8, channels first.

    Raises:
        DataError: naming the file, when it is missing or cannot be decoded.
    """
    try:
        with Image.open(path) as img:
            if size_hint is not None:
                img.draft(mode, (size_hint, size_hint))
            pixels = np.array(_to_8bit(img).convert(mode), dtype=np.uint8)
    # PIL reports broken files through many exception types (OSError, SyntaxError, ValueError,
    # struct.error, DecompressionBombError...): any failure to decode a user's file is a data error.
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, exc) from exc
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1).copy()


def probe_image(path: str | Path) -> tuple[str, int, int]:
    """The mode to read a folder in (``"L"`` or ``"RGB"``) and the width and height of one image.

    Raises:
        DataError: naming the file when it cannot be opened.
    """
    try:
        with Image.open(path) as img:
            mode = "L" if img.mode in _GRAY_MODES else "RGB"
            return mode, img.width, img.height
    except Exception as exc:  # noqa: BLE001 - see read_image
        raise _unreadable(path, exc) from exc


def drop_unreadable(samples: Sequence[Sample], mode: str, where: Path, size_hint: int | None = None) -> list[Sample]:
    """Decode every image once and keep the readable ones; warn once with the count of the others.

    Args:
        samples: ``(path, label)`` pairs.
        mode: ``"L"`` or ``"RGB"``.
        where: the dataset root, for the warning.
        size_hint: as in :func:`read_image`.

    Returns:
        The readable samples, in their original order.
    """
    kept: list[Sample] = []
    bad: list[str] = []
    for path, label in samples:
        try:
            read_image(path, mode, size_hint)
        except DataError:
            bad.append(path)
        else:
            kept.append((path, label))
    if bad:
        shown = ", ".join(Path(p).name for p in bad[:3]) + (", ..." if len(bad) > 3 else "")
        warnings.warn(
            f"skipped {len(bad)} unreadable image(s) of {len(samples)} under {where}: {shown}",
            UserWarning,
            stacklevel=3,
        )
    return kept


class ImageFileDataset(Dataset):
    """Images decoded from files on each access.

    Args:
        samples: ``(path, label)`` pairs; label ``-1`` for unlabeled images.
        mode: ``"L"`` or ``"RGB"``.
        transform: maps a uint8 CHW tensor to the model's float input.
        size_hint: as in :func:`read_image`.
    """

    def __init__(
        self,
        samples: Iterable[Sample],
        mode: str,
        transform: Callable[[torch.Tensor], torch.Tensor],
        size_hint: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.mode = mode
        self.transform = transform
        self.size_hint = size_hint

    @property
    def labels(self) -> np.ndarray:
        """All labels, in sample order (``-1`` when unlabeled)."""
        return np.array([label for _, label in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        pixels = read_image(path, self.mode, self.size_hint)
        return self.transform(torch.from_numpy(pixels)), label
