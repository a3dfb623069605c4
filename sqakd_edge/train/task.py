"""One training step's forward as a module: the student's logits and the method's losses.

:class:`DistillationTask` follows timm's ``LogitDistillationTask``: it owns the frozen teacher (eval mode,
``no_grad``, its own autocast dtype) and returns ``{"loss", "output", "kd"?, "ce"?}``; the loop only does
the optimiser step. The teacher is held outside the module tree on purpose: ``task.train()`` must not put
it in training mode, DDP must not wrap it, and no ``state_dict`` (the student's checkpoint) may contain
its weights. The EWGS delta update runs the same losses through the unwrapped student. With a
:class:`~.teacher_cache.TeacherLogitCache` (augmentation off) a batch whose examples the teacher has seen
reads their logits back instead of running it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..config import QuantConfig, TrainConfig
from .ewgs import update_ewgs_deltas
from .layout import DEFAULT, in_layout
from .loss import training_loss
from .teacher import frozen_teacher, teacher_autocast_dtype
from .teacher_cache import TeacherLogitCache


class DistillationTask(nn.Module):
    """The student's forward and the loss of ``config.method`` against a frozen teacher and/or labels.

    Args:
        student: the model being trained (wrapped in DDP by the caller under torchrun).
        config: the method, temperature, KD weight and mixed-precision switch.
        teacher: the float teacher for SQAKD and CE+KD (None for the label-only methods); frozen here.
        device: where training runs (decides the autocast dtypes).
        quant: the student's quantization config (None for a float model): whether EWGS updates happen.
        sample: a batch of inputs, to try the teacher in channels-last on (None: the default layout).
        student_layout: the memory layout the student is in (``layout.training_layout``); batches are
            converted to it.
        teacher_cache: the teacher's logits by example index, for batches that come with their indices
            (only where every epoch gives an example the same input: augmentation off).
    """

    teacher: nn.Module | None  # frozen; outside the module tree

    def __init__(self, student: nn.Module, config: TrainConfig, teacher: nn.Module | None,
                 device: torch.device, quant: QuantConfig | None = None, *, sample: torch.Tensor | None = None,
                 student_layout: torch.memory_format = DEFAULT, teacher_cache: TeacherLogitCache | None = None
                 ) -> None:
        super().__init__()
        self.student = student
        self.config = config
        self.quant = quant
        self.device_type = device.type
        # not a submodule (see the module docstring): plain attribute, frozen once
        object.__setattr__(self, "teacher", frozen_teacher(teacher, device, sample)
                           if teacher is not None and config.uses_teacher else None)
        self.student_layout = student_layout
        self.teacher_cache = teacher_cache if self.teacher is not None else None
        self.teacher_dtype = teacher_autocast_dtype(device, config.amp)
        self.student_amp = config.amp and device.type == "cuda"  # the fake-quant student stays float32 on CPU
        self.student_dtype = torch.bfloat16 if self.student_amp and torch.cuda.is_bf16_supported() else torch.float16

    @property
    def needs_grad_scaler(self) -> bool:
        """float16 autocast needs loss scaling; bfloat16 and float32 do not."""
        return self.student_amp and self.student_dtype == torch.float16

    def teacher_logits(self, images: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor | None:
        """The frozen teacher's float32 logits (None when the method has no teacher).

        With ``indices`` (the examples' indices in the training set) and a teacher cache, logits the teacher
        gave these examples before are read back, and new ones are kept.
        """
        if self.teacher is None:
            return None

        def teacher_forward() -> torch.Tensor:
            with torch.no_grad(), torch.autocast(self.device_type, dtype=self.teacher_dtype or torch.float32,
                                                 enabled=self.teacher_dtype is not None):
                return self.teacher(images)  # type: ignore[misc]

        if self.teacher_cache is not None and indices is not None:
            return self.teacher_cache.logits(indices, teacher_forward)
        return teacher_forward().float()

    def forward(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """``{"loss", "output", "kd"?, "ce"?}`` of one batch; labels are read only by labelled methods.

        ``indices``: the examples' indices in the training set, for the teacher cache.
        """
        images = in_layout(images, self.student_layout)  # the teacher's wrapper then has nothing to convert
        t_logits = self.teacher_logits(images, indices)
        with torch.autocast(self.device_type, dtype=self.student_dtype, enabled=self.student_amp):
            logits = self.student(images)
        losses = training_loss(self.config, logits.float(), labels if self.config.uses_labels else None, t_logits)
        return {**losses, "output": logits}

    def wants_ewgs_update(self, step: int, batch_index: int) -> bool:
        """Whether EWGS deltas are re-estimated before this step (every N steps, or once per epoch)."""
        if self.quant is None or self.quant.backward != "ewgs":
            return False
        every = self.quant.ewgs_update_every
        return bool(every and step % every == 0) or (not every and batch_index == 0)

    def update_ewgs(self, student: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    indices: torch.Tensor | None = None) -> dict[str, Any]:
        """Re-estimate the EWGS deltas of ``student`` (unwrapped) on one batch, from the training loss itself."""
        images = in_layout(images, self.student_layout)
        t_logits = self.teacher_logits(images, indices)
        return update_ewgs_deltas(
            student, lambda logits: training_loss(self.config, logits, labels, t_logits)["loss"], images)
