"""Datasets: the embedded Fashion-MNIST subset, Fashion-MNIST IDX, CIFAR-10/100, Tiny-ImageNet, image folders.

One module per on-disk format; :func:`open_dataset` picks one from a spec such as ``"embedded"``,
``"cifar10:/data/cifar"`` or a bare path, and returns a :class:`DatasetInfo` whose dataset yields
``(normalised float32 CHW tensor, int label)``, label ``-1`` for unlabeled images.
"""

from .info import DatasetInfo
from .spec import DATASET_KINDS, list_dataset_kinds, open_dataset

__all__ = ["DATASET_KINDS", "DatasetInfo", "list_dataset_kinds", "open_dataset"]
