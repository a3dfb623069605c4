"""Evaluation of a model on a split: accuracy (with labels), the KL to the teacher and the method's loss.

Each epoch ``fit`` evaluates the held-out part of the training data (which picks ``best.pt``) and the test
split; the teacher's logits of both are read back from a :class:`~.teacher_cache.TeacherLogitCache` after
the first epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..config import TrainConfig
from .distributed import DistInfo, all_reduce_sum
from .loss import kd_loss, training_loss
from .teacher_cache import TeacherLogitCache


def device_batches(loader: Iterable, device: torch.device
                   ) -> Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """``(images, labels, indices)`` on ``device``; indices (kept on the host) when the dataset is indexed."""
    for images, labels, *indices in loader:
        yield (images.to(device, non_blocking=True), labels.to(device, non_blocking=True),
               indices[0] if indices else None)


def evaluation_share(data: Dataset, info: DistInfo) -> Subset:
    """The examples of ``data`` one process evaluates (a strided share under torchrun), in order."""
    return Subset(data, list(range(info.rank, len(data), info.world_size)))  # type: ignore[arg-type]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    labelled: bool = True,
    batch_size: int = 256,
    dist_info: DistInfo | None = None,
    device: torch.device | None = None,
    teacher_cache: TeacherLogitCache | None = None,
) -> dict[str, float]:
    """Top-1 accuracy (with labels), the KL to the teacher (with a teacher) and the method's loss.

    Under torchrun each process reads a strided share of ``data`` and the sums are reduced, so the
    result is exact and the same on every process. ``teacher_cache`` (sized ``len(evaluation_share(...))``)
    keeps the teacher's logits of this share for the next call on the same data: the evaluation reads
    ``data`` in a fixed order through its deterministic transform, so they do not change.

    Returns:
        ``{"n", "acc"?, "ce"?, "kl"?, "loss"?}`` averaged over the examples.
    """
    info = dist_info or DistInfo()
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    share = evaluation_share(data, info)
    loader = DataLoader(share, batch_size=batch_size, shuffle=False, num_workers=config.num_workers)
    sums = {"n": 0.0, "correct": 0.0, "ce": 0.0, "kl": 0.0, "loss": 0.0}
    for images, labels, _ in device_batches(loader, device):
        logits = model(images).float()
        n = images.shape[0]
        t_logits = None
        if teacher is not None:
            start = int(sums["n"])  # this batch's place in the share
            t_logits = teacher_cache.logits(torch.arange(start, start + n), partial(teacher, images)) \
                if teacher_cache is not None else teacher(images).float()
        sums["n"] += n
        if labelled:
            sums["correct"] += float((logits.argmax(1) == labels).sum())
            sums["ce"] += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        if t_logits is not None:
            sums["kl"] += float(kd_loss(logits, t_logits, config.temperature)) * n
        if (labelled or not config.uses_labels) and (t_logits is not None or not config.uses_teacher):
            sums["loss"] += float(training_loss(config, logits, labels if labelled else None, t_logits)["loss"]) * n
    keys = list(sums)
    reduced = dict(zip(keys, all_reduce_sum([sums[k] for k in keys], info, device), strict=True))
    model.train(was_training)
    count = max(reduced["n"], 1.0)
    out: dict[str, float] = {"n": reduced["n"]}
    if labelled:
        out.update(acc=reduced["correct"] / count, ce=reduced["ce"] / count)
    if teacher is not None:
        out["kl"] = reduced["kl"] / count
    if (labelled or not config.uses_labels) and (teacher is not None or not config.uses_teacher):
        out["loss"] = reduced["loss"] / count
    return out
