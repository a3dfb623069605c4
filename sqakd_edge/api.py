"""The Python API for users who train in their own loop (what ``import sqakd_edge`` offers).

Shaped like modelopt's ``mtq.quantize(model, config, forward_loop)`` and torchao's ``quantize_(model, config)``::

    import sqakd_edge
    from sqakd_edge import QuantConfig

    student = sqakd_edge.prepare_student(teacher, QuantConfig(quantizer="lsq", wbits=4, abits=4),
                                         calibration=images[:64])
    loss_fn = sqakd_edge.SQAKDLoss(temperature=4)
    ...  # your loop: loss = loss_fn(student(x), teacher(x).detach())
    sqakd_edge.export_student(student, images[:1], "out/", target="tensorrt", teacher=teacher,
                              parity_inputs=images[:256])
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import InputContract, QuantConfig
from .errors import ConfigError


def prepare_student(teacher: nn.Module, config: QuantConfig | None = None, *,
                    calibration: torch.Tensor | None = None) -> nn.Module:
    """A fake-quant student of ``teacher`` (a deep copy; the teacher is untouched), ready to train.

    Args:
        teacher: your float model (any fx-traceable ``nn.Module``: torchvision's, timm's, your own).
        config: bits, quantizer family, backward and layer policy (default: LSQ W4A4, first/last float).
        calibration: a batch of real inputs; the quantizers take their initial ranges from it (in eval mode, as
            ``sqakd-edge train`` does). Without it they initialise on the first batch the student sees.

    Returns:
        The student (train mode).

    Raises:
        ConfigError: a model fx cannot trace (naming where), or one without Conv2d/Linear layers.
    """
    from .quant import prepare_qat

    student = prepare_qat(teacher, config or QuantConfig())
    if calibration is not None:
        initialize_quantizers(student, calibration)
    return student.train()


def initialize_quantizers(student: nn.Module, batch: torch.Tensor) -> None:
    """Set every quantizer's initial range from one batch (eval mode: BatchNorm uses its running statistics)."""
    was_training = student.training
    student.eval()
    with torch.no_grad():
        student(batch.to(next(student.parameters()).device))
    student.train(was_training)


class SQAKDLoss(nn.Module):
    """SQAKD's label-free loss: ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over the batch.

    Args:
        temperature: T (the paper uses 4).
    """

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        from .train.loss import kd_loss

        return kd_loss(student_logits, teacher_logits.detach(), self.temperature)


def export_student(student: nn.Module, example_input: torch.Tensor, out_dir: str | Path, *, target: str = "tensorrt",
                   teacher: nn.Module | None = None, parity_inputs: torch.Tensor | None = None,
                   parity_labels: torch.Tensor | None = None, mean: tuple[float, ...] | None = None,
                   std: tuple[float, ...] | None = None, name: str | None = None, opset: int = 13,
                   force: bool = False, log: Callable[[str], None] = print) -> Any:
    """Export a trained student (in memory) to ``model.fp32.onnx``, ``model.int8.onnx`` and a manifest.

    Args:
        student: from :func:`prepare_student`, trained (its quantizers initialised).
        example_input: one input batch of the deployed shape ``(N, C, H, W)`` (N becomes dynamic).
        out_dir: the export directory (written atomically).
        target: ``tensorrt`` (symmetric int8 Q/DQ) or ``onnxruntime`` (uint8 activations for x86 CPUs).
        teacher: the float model for ``model.fp32.onnx`` (default: the student with quantizers off).
        parity_inputs: real inputs for the parity check (default: seeded Gaussian noise, said in the manifest).
        parity_labels: their labels, for accuracy in the manifest.
        mean: the normalisation your inputs use (recorded for bench; optional).
        std: as ``mean``.
        name: the model's name in the manifest.
        opset: ONNX opset (13 for TensorRT 8.2 on JetPack 4.6).
        force: replace a non-empty ``out_dir``.
        log: progress lines.

    Returns:
        The :class:`~sqakd_edge.export.api.ExportResult` (``result.parity_line()`` summarises parity).

    Raises:
        ExportError: a layer that cannot be lowered (named, with the reason), or a parity miss.
    """
    from .config import ExportConfig
    from .export.api import ExportInputs, export_model
    from .export.inputs import ParityData, synthetic

    if example_input.dim() != 4:
        raise ConfigError(f"example_input must be a batch (N, C, H, W), got shape {tuple(example_input.shape)}")
    shape = tuple(int(d) for d in example_input.shape)
    student.eval()
    with torch.no_grad():
        out = student(example_input)
    classes = int(out.shape[1])
    if parity_inputs is not None:
        pdata = ParityData(parity_inputs.float(), parity_labels, None, "user inputs", "test")
    else:
        pdata = synthetic(256, shape[1:], "no parity_inputs were given; parity ran on seeded Gaussian inputs")  # type: ignore[arg-type]
    contract = None
    if mean is not None and std is not None:
        contract = InputContract(shape[1], shape[2], shape[3], tuple(mean), tuple(std))
    meta = {"name": name or type(student).__name__, "num_classes": classes, "in_channels": shape[1],
            "input_size": shape[2], "input_shape": list(shape[1:])}
    quant = getattr(student, "sqakd_quant_config", None)
    inputs = ExportInputs(model_meta=meta, student=student, float_model=teacher, quant=quant, contract=contract,
                          mean=tuple(mean) if mean is not None else None, std=tuple(std) if std is not None else None)
    return export_model(inputs, out_dir, ExportConfig(target=target, opset=opset, input_shape=shape),  # type: ignore[arg-type]
                        parity_data=pdata, force=force, log=log)
