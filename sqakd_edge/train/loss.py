"""Training losses: SQAKD's label-free KL to the teacher, and the labelled baselines.

SQAKD (Zhao & Zhao 2024): ``KL(teacher || student)`` on softmax at temperature T, times T^2, averaged
over the batch, with no cross-entropy term. The T^2 factor keeps the gradient magnitude independent of
T (Hinton et al. 2015): softening by T shrinks the logit gradients by 1/T^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TrainConfig


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over the batch.

    Args:
        student_logits: ``(N, C)``.
        teacher_logits: ``(N, C)``, no gradient needed.
        temperature: T.

    Returns:
        A scalar; exactly 0 when the logits are equal.
    """
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * (t * t)


def training_loss(
    config: TrainConfig,
    student_logits: torch.Tensor,
    labels: torch.Tensor | None,
    teacher_logits: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """The loss of ``config.method`` and its parts.

    Returns:
        ``{"loss": total, "kd": ..., "ce": ...}`` (only the parts the method uses).
    """
    parts: dict[str, torch.Tensor] = {}
    if config.uses_teacher:
        assert teacher_logits is not None, "methods with a teacher get teacher logits"
        parts["kd"] = kd_loss(student_logits, teacher_logits, config.temperature)
    if config.uses_labels:
        assert labels is not None, "labelled methods get labels"
        parts["ce"] = F.cross_entropy(student_logits.float(), labels)
    if config.method == "ce+kd":
        parts["loss"] = (1 - config.kd_weight) * parts["ce"] + config.kd_weight * parts["kd"]
    else:
        parts["loss"] = parts["kd"] if config.method == "sqakd" else parts["ce"]
    return parts
