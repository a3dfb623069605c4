"""The frozen teacher's logits of each training example, kept across epochs when its inputs do not change.

SQAKD runs the teacher's forward on every training step (on CPU about a seventh of a float training step,
``benchmarks/train_step.py``). With augmentation off (``TrainConfig.augment=False``) an example reaches the
teacher as the same tensor in every epoch, and the teacher is frozen (eval mode, no dropout, no running
statistics), so its logits are the same too: they are computed the first time an example is drawn and read
back afterwards. From the second epoch on a step skips the teacher's forward.

The logits are kept in the dtype the teacher produced them in (bfloat16 under bfloat16 autocast, so nothing
is rounded twice), on the training device, and only when the table fits :data:`MAX_BYTES`; under torchrun
each process keeps the examples it has drawn. The cache lives in memory only: a resumed run refills it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

MAX_BYTES = 1 << 30  # 1 GiB: CIFAR-10 needs 1 MB, ImageNet (1.28 M x 1000 classes, bfloat16) 2.6 GB: not kept


class IndexedDataset(Dataset):
    """``dataset`` whose items carry their index last: ``(image, label, index)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (*self.dataset[index], index)


class TeacherLogitCache:
    """A table of teacher logits by example index, filled as examples are drawn.

    Args:
        size: the number of examples (indices run from 0 to ``size - 1``).
        device: where the table is kept (the training device).
        max_bytes: the largest table kept; a larger one is not allocated and :attr:`off` says why.
    """

    def __init__(self, size: int, device: torch.device, max_bytes: int | None = None) -> None:
        self.size = size
        self.device = device
        self.max_bytes = MAX_BYTES if max_bytes is None else max_bytes
        self.table: torch.Tensor | None = None
        self.filled = torch.zeros(size, dtype=torch.bool, device=device)
        self.off: str | None = None  # why nothing is kept (set by the first store)
        self.hits = 0  # batches served from the table

    def lookup(self, indices: torch.Tensor) -> torch.Tensor | None:
        """The float32 logits of ``indices`` when every one of them is stored, else None."""
        if self.table is None:
            return None
        indices = indices.to(self.device)
        if not bool(self.filled[indices].all()):
            return None
        self.hits += 1
        return self.table[indices].float()

    def logits(self, indices: torch.Tensor, teacher_forward: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The float32 logits of ``indices``: read back when all are stored, else ``teacher_forward()`` kept."""
        cached = self.lookup(indices)
        if cached is not None:
            return cached
        logits = teacher_forward()
        self.store(indices, logits)
        return logits.float()

    def store(self, indices: torch.Tensor, logits: torch.Tensor) -> None:
        """Keep ``logits`` (one row per index) for later epochs."""
        if self.off is not None:
            return
        if self.table is None:
            rows = logits.detach().reshape(logits.shape[0], -1)
            nbytes = self.size * rows.shape[1] * rows.element_size()
            if nbytes > self.max_bytes:
                self.off = (f"the teacher's logits are not cached across epochs: {self.size} examples x "
                            f"{rows.shape[1]} outputs need {nbytes / 2**20:.0f} MiB, more than "
                            f"{self.max_bytes / 2**20:.0f} MiB")
                return
            self.table = torch.empty((self.size, rows.shape[1]), dtype=rows.dtype, device=self.device)
        indices = indices.to(self.device)
        self.table[indices] = logits.detach().reshape(indices.shape[0], -1).to(self.table.dtype)
        self.filled[indices] = True
