"""How a float model becomes a fake-quant student (``QuantConfig``) and how it is trained (``TrainConfig``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .checks import check_fraction, one_of, positive
from .vocabulary import ACT_SIGNS, BACKWARDS, GRANULARITIES, METHODS, OPTIMIZERS, QUANTIZERS, SCHEDULES


@dataclass(frozen=True)
class QuantConfig:
    """How a float model becomes a fake-quant student.

    Args:
        quantizer: forward family: ``pact`` (learned activation clip, DoReFa weights), ``lsq``
            (learned step), ``dorefa`` (tanh-normalised weights, clipped activations) or
            ``interval`` (learned lower/upper bounds, QIL/EWGS-style).
        backward: how gradients pass the rounding: ``ste`` or ``ewgs`` (scaled by the
            discretisation error, delta from a Hessian-trace estimate of the training loss).
        wbits: weight bits, 1-8.
        abits: activation bits, 1-8.
        weight_granularity: ``per_channel`` (output axis) or ``per_tensor`` weight scales.
        act_sign: ``auto`` (decided from the first batch a layer sees), ``unsigned`` or ``signed``.
        deployable: keep every grid exportable to symmetric INT8 (TensorRT): activation ranges
            start at 0, 8-bit unsigned activations use [0, 127], and weight grids that would need
            9 bits use the narrow symmetric grid. ``False`` gives the papers' exact forms.
        keep_first_last_float: leave the first and last weighted layer in full precision (paper).
        first_last_bits: when the first and last weighted layer are quantized, their weight and input
            bits, 1-8; 0: ``wbits``/``abits`` like the other layers. 8 with ``keep_first_last_float=False``
            gives an all-integer graph (ONNX Runtime then runs every layer in integers, with no layout
            Transposes around a float stem: ``benchmarks/bench_speed.py``).
        keep_float: further layer names (as in ``model.named_modules()``) kept in full precision.
        int32_bias: simulate ONNX Runtime's int32 bias (rounded onto ``input scale x weight scale``, after
            BatchNorm folding) in training, so that ``export --target onnxruntime`` computes what the student
            learned (``quant/int32_bias.py``); TensorRT keeps float biases and does not need it.
        ewgs_delta_init: initial EWGS delta.
        ewgs_update_every: iterations between EWGS delta updates (0: once per epoch).
        residual_bits: bits of the quantizers on both inputs of each residual Add after a quant layer
            (the branch output, and the block output that is the next skip), 1-8; 0 leaves the Adds
            float as in the paper. With them, integer runtimes keep every conv and Add in integers and
            export stays exact (``sqakd_edge.quant.residual``).
        share_residual_stream: quantize each residual-stream tensor (a block's input or output) that
            quant layers read once, at ``abits``, with one quantizer those layers share (instead of the
            tensor at ``residual_bits`` and each reader re-quantizing it to ``abits``). The conv inputs
            are the same ``abits`` grids either way; the skip then carries that grid too, and the
            exported graph has no requantization between blocks (faster on ONNX Runtime:
            ``benchmarks/bench_speed.py``). Needs ``residual_bits`` > 0.
        learned_stream_step: in a DoReFa student, the shared stream quantizer is LSQ's (a learned step):
            DoReFa's fixed [0, 1] range would clip the skip, so before this option DoReFa students kept each
            reader's own quantizer and an unshared stream (a requantization before every block, which
            ONNX Runtime runs as separate ops: ``benchmarks/results/bench_speed.dorefa_unshared.md``). False: that
            older student (checkpoints written before the option load as False). Other families ignore it.
    """

    quantizer: str = "lsq"
    backward: str = "ste"
    wbits: int = 4
    abits: int = 4
    weight_granularity: str = "per_channel"
    act_sign: str = "auto"
    deployable: bool = True
    keep_first_last_float: bool = True
    first_last_bits: int = 0
    keep_float: tuple[str, ...] = ()
    int32_bias: bool = False
    ewgs_delta_init: float = 1e-3
    ewgs_update_every: int = 0
    residual_bits: int = 8
    share_residual_stream: bool = True
    learned_stream_step: bool = True

    def __post_init__(self) -> None:
        one_of("quantizer", self.quantizer, QUANTIZERS)
        one_of("backward", self.backward, BACKWARDS)
        one_of("weight granularity", self.weight_granularity, GRANULARITIES)
        one_of("activation sign", self.act_sign, ACT_SIGNS)
        for name in ("wbits", "abits"):
            bits = getattr(self, name)
            if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
                raise ConfigError(f"{name} must be an integer from 1 to 8, got {bits!r}")
        for name in ("residual_bits", "first_last_bits"):
            bits = getattr(self, name)
            if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= 8:
                what = "off" if name == "residual_bits" else "as the other layers"
                raise ConfigError(f"{name} must be an integer from 0 ({what}) to 8, got {bits!r}")
        if self.first_last_bits and self.keep_first_last_float:
            raise ConfigError("first_last_bits sets the bits of a quantized first and last layer, but "
                              "keep_first_last_float keeps them float; set keep_first_last_float=False "
                              "(sqakd-edge train: --first-last-bits alone does both)")
        if self.int32_bias and not self.deployable:
            raise ConfigError("int32_bias rounds biases onto the grids of an INT8 graph, which needs deployable "
                              "grids; drop int32_bias or keep deployable=True")
        positive("ewgs_delta_init", self.ewgs_delta_init, allow_zero=True)
        positive("ewgs_update_every", self.ewgs_update_every, allow_zero=True)
        object.__setattr__(self, "keep_float", tuple(self.keep_float))

    @property
    def tag(self) -> str:
        """A short name such as ``lsq-ste-W4A4``."""
        return f"{self.quantizer}-{self.backward}-W{self.wbits}A{self.abits}"


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: the method, the optimiser and its schedule.

    Args:
        method: ``fp`` (float teacher, labels), ``sqakd`` (KL to the teacher, no labels),
            ``ce`` (QAT with labels) or ``ce+kd`` (labels plus KL, weighted by ``kd_weight``).
        epochs: passes over the training data.
        batch_size: global batch size (split across processes under torchrun).
        optimizer: ``adam`` or ``sgd``.
        lr: learning rate of the model's weights.
        quant_lr: learning rate of quantizer parameters (clips, steps, bounds).
        weight_decay: L2 on the model's weights (never on quantizer parameters).
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        schedule: ``cosine`` decay to 0, or ``constant``.
        warmup_iters: linear warm-up iterations before the schedule.
        temperature: the KL temperature T (SQAKD: 4).
        kd_weight: weight of the KL term in ``ce+kd`` (the CE term gets ``1 - kd_weight``).
        val_fraction: share of the training data held out for label-free model selection.
        seed: random seed.
        num_workers: data-loader worker processes.
        amp: mixed precision: on CUDA the student's and the teacher's forward; on a CPU with native
            bfloat16 (AMX, AVX512-BF16) the frozen teacher's forward only (``train.teacher``).
        augment: the dataset's random training transform (crop, flip); False reads training images as
            evaluation does, so every epoch sees the same inputs (and ``fit`` computes the teacher's logits
            of each example once: ``train.teacher_cache``).
        freeze_bn: the student's BatchNorms keep the statistics they start with (the teacher's running
            mean and variance) instead of normalising each batch by its own: the training forward is then
            the evaluation forward, independent of the batch size and of how it is split over processes
            (as in fold-BN QAT). Their scale and shift are still learned.
    """

    method: str = "sqakd"
    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    quant_lr: float = 1e-5
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "cosine"
    warmup_iters: int = 0
    temperature: float = 4.0
    kd_weight: float = 0.5
    val_fraction: float = 0.1
    seed: int = 0
    num_workers: int = 0
    amp: bool = True
    augment: bool = True
    freeze_bn: bool = False

    def __post_init__(self) -> None:
        one_of("method", self.method, METHODS)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        one_of("schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "batch_size", "lr", "temperature"):
            positive(name, getattr(self, name))
        for name in ("quant_lr", "weight_decay", "momentum", "warmup_iters", "num_workers"):
            positive(name, getattr(self, name), allow_zero=True)
        for name in ("kd_weight", "val_fraction"):
            positive(name, getattr(self, name), allow_zero=True)
        check_fraction("kd_weight", self.kd_weight)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")

    @property
    def uses_labels(self) -> bool:
        """Whether the training loss reads labels (everything but SQAKD)."""
        return self.method != "sqakd"

    @property
    def uses_teacher(self) -> bool:
        """Whether the training loss needs a teacher."""
        return self.method in ("sqakd", "ce+kd")
