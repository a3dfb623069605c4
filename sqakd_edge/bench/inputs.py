"""Inputs for the bench: the same batch for every graph, random or real, and labelled data for top-1.

Without ``--data`` the timing batch is standard-normal noise (the graphs take normalised input,
so that is the right scale). With ``--data`` it is the first images of the test split, and the
whole split (or ``--data-limit`` images) is used for top-1 accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .export_dir import ExportBundle


@dataclass(frozen=True)
class EvalData:
    """Images and labels as arrays, already normalised like the graphs expect.

    Args:
        images: float32 ``[N, C, H, W]``.
        labels: int64 ``[N]``; -1 for unlabeled images.
        spec: the dataset spec it came from.
        name: the dataset's name.
        labelled: whether the labels are real (else only the images are used, for timing).
        mean: the normalisation mean the dataset applied.
        std: the normalisation std.
    """

    images: np.ndarray
    labels: np.ndarray
    spec: str
    name: str
    labelled: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]


def random_batch(shape: tuple[int, int, int], batch: int, seed: int) -> np.ndarray:
    """A float32 ``[batch, C, H, W]`` batch of standard-normal noise, the same for a given seed."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *shape), dtype=np.float32)


def data_batch(data: EvalData, batch: int) -> np.ndarray:
    """The first ``batch`` images of ``data`` (repeated when it has fewer), contiguous float32."""
    index = np.arange(batch) % len(data.images)
    return np.ascontiguousarray(data.images[index], dtype=np.float32)


def load_eval_data(spec: str, bundle: ExportBundle, limit: int | None = None) -> EvalData:
    """Read the test split of a dataset into arrays, checked against the exported model's input.

    Args:
        spec: a dataset spec of :func:`sqakd_edge.data.open_dataset` (e.g. ``embedded``).
        bundle: the export directory the data must fit.
        limit: read at most this many images (the first ones).

    Returns:
        The :class:`EvalData`.

    Raises:
        DataError: when the data is unreadable, empty, or its images do not fit the model's input.
        MissingDependencyError: when the data module (it needs torch) cannot be imported.
    """
    try:
        from ..data import open_dataset
    except ImportError as exc:
        raise DataError(f"--data needs the sqakd_edge.data module and torch, which cannot be imported ({exc})"
                        ) from None
    from ..config import InputContract

    channels, height, width = bundle.input_shape
    contract = None
    if len(bundle.mean) == channels and len(bundle.std) == channels:  # images converted to what the graph takes
        contract = InputContract(channels, height, width, bundle.mean, bundle.std)
    info = open_dataset(spec, split="test", input_size=height, contract=contract)
    if info.in_channels != channels:
        raise DataError(f"dataset {spec!r} has {info.in_channels}-channel images but the exported model takes "
                        f"{channels}; pick the data the model was trained on")
    size = len(info.dataset)  # type: ignore[arg-type]
    count = size if limit is None else min(limit, size)
    if count == 0:
        raise DataError(f"dataset {spec!r} has no test images")
    images = np.empty((count, channels, height, width), dtype=np.float32)
    labels = np.empty(count, dtype=np.int64)
    for i in range(count):
        image, label = info.dataset[i]
        array = np.asarray(image, dtype=np.float32)
        if array.shape != (channels, height, width):
            raise DataError(f"dataset {spec!r} gives images of shape {list(array.shape)} but the exported model "
                            f"takes {[channels, height, width]}")
        images[i], labels[i] = array, int(label)
    return EvalData(images, labels, spec, info.name, bool(info.labelled), tuple(info.mean), tuple(info.std))


def top1(predict, data: EvalData, batch: int, fixed_batch: bool = False) -> dict[str, float | int]:  # noqa: ANN001
    """Top-1 accuracy of ``predict`` (a runner's ``infer``) on labelled data.

    Args:
        predict: maps a float32 batch to logits.
        data: labelled images.
        batch: images per call.
        fixed_batch: the model accepts only exactly ``batch`` images; the last chunk is padded by
            repeating images, and the padding's predictions are dropped.

    Returns:
        ``{"top1": fraction, "correct": int, "n": int}``.
    """
    correct = 0
    total = len(data.images)
    for start in range(0, total, batch):
        chunk = data.images[start:start + batch]
        size = len(chunk)
        if fixed_batch and size < batch:
            chunk = np.concatenate([chunk, data.images[np.arange(batch - size) % total]])
        logits = predict(np.ascontiguousarray(chunk))[:size]
        correct += int((np.argmax(logits, axis=1) == data.labels[start:start + size]).sum())
    return {"top1": correct / total, "correct": correct, "n": total}
