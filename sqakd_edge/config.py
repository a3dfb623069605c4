"""Typed, frozen, validated configuration.

Configs are built once (by the CLI or by library callers), validated in ``__post_init__``, and
serialised with :func:`to_dict` into checkpoints and manifests so every later stage knows how its
input was made. Only the CLI sees flags.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ConfigError

QUANTIZERS = ("pact", "lsq", "dorefa", "interval")
BACKWARDS = ("ste", "ewgs")
GRANULARITIES = ("per_channel", "per_tensor")
ACT_SIGNS = ("auto", "unsigned", "signed")
METHODS = ("fp", "sqakd", "ce", "ce+kd")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant")
TARGETS = ("tensorrt", "onnxruntime")  # what an INT8 graph's Q/DQ are written for
PRECISIONS = ("fp32", "fp16", "int8")  # engine and graph precisions
MIN_OPSET, MAX_OPSET = 13, 20  # per-channel Q/DQ needs 13, the highest TensorRT 8.2 (Jetson Nano) reads


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")


def check_fraction(name: str, value: float) -> None:
    """A share or agreement threshold in [0, 1] (finite); the one check every config uses."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must lie in [0, 1], got {value!r}")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}, got {value}")


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
            ``benchmarks/bench_speed.py``). Needs ``residual_bits`` > 0; DoReFa students keep separate quantizers (their
            fixed [0, 1] activation range would clip the skip).
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

    def __post_init__(self) -> None:
        _one_of("quantizer", self.quantizer, QUANTIZERS)
        _one_of("backward", self.backward, BACKWARDS)
        _one_of("weight granularity", self.weight_granularity, GRANULARITIES)
        _one_of("activation sign", self.act_sign, ACT_SIGNS)
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
        _positive("ewgs_delta_init", self.ewgs_delta_init, allow_zero=True)
        _positive("ewgs_update_every", self.ewgs_update_every, allow_zero=True)
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
            evaluation does, so every epoch sees the same inputs.
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
        _one_of("method", self.method, METHODS)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "batch_size", "lr", "temperature"):
            _positive(name, getattr(self, name))
        for name in ("quant_lr", "weight_decay", "momentum", "warmup_iters", "num_workers"):
            _positive(name, getattr(self, name), allow_zero=True)
        for name in ("kd_weight", "val_fraction"):
            _positive(name, getattr(self, name), allow_zero=True)
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


@dataclass(frozen=True)
class ExportConfig:
    """What ``export`` writes and how strictly it checks it.

    Args:
        int8: also write the QDQ graph (needs a quantized student).
        target: ``tensorrt`` (symmetric int8 Q/DQ) or ``onnxruntime`` (uint8 activations where exact).
        opset: ONNX opset, 13 (TensorRT 8.2 on JetPack 4.6 reads up to 13) to 20.
        input_shape: ``(N, C, H, W)`` of the example input (N is dynamic in the graph); None: from the
            checkpoint (1, C, size, size).
        parity_samples: inputs for the int8 parity check.
        fp32_parity_samples: inputs for the float graph's check (a plain float export; fewer suffice).
        allow_requantize: re-quantize grids that do not fit the target instead of refusing.
        residual_qdq: (tensorrt) put an int8 Q/DQ on residual skip branches so TensorRT fuses the Adds.
            The student's skip branches are float, so this is not exact: parity measures the cost.
        min_top1_off: minimum top-1 agreement with ORT optimisations off.
        min_top1_on: minimum top-1 agreement with ORT optimisations on.
        fail_on_parity_miss: raise (and write nothing) when parity misses a threshold.
        threads: CPU threads for the PyTorch and ONNX Runtime runs of the parity check (0: their defaults).
            On a shared machine, 1 avoids threads spinning against other processes.
    """

    int8: bool = True
    target: str = "tensorrt"
    opset: int = 13
    input_shape: tuple[int, int, int, int] | None = None
    parity_samples: int = 256
    fp32_parity_samples: int = 32
    allow_requantize: bool = False
    residual_qdq: bool = False
    min_top1_off: float = 0.999
    min_top1_on: float = 0.99
    fail_on_parity_miss: bool = True
    threads: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target {self.target!r}; choose one of: {', '.join(TARGETS)}")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ConfigError(f"opset must be {MIN_OPSET}-{MAX_OPSET} (per-channel Q/DQ needs 13), got {self.opset}")
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if len(shape) != 4 or any(not isinstance(d, int) or d < 1 for d in shape):
                raise ConfigError(f"input shape must be 4 positive integers NxCxHxW, got {shape}")
            object.__setattr__(self, "input_shape", shape)
        for name in ("parity_samples", "fp32_parity_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0: the libraries' defaults), got {self.threads}")
        for name in ("min_top1_off", "min_top1_on"):
            check_fraction(name, getattr(self, name))


@dataclass(frozen=True)
class Target:
    """What an export target asks of the INT8 graph: the rules export, parity and the linter apply.

    Args:
        name: ``tensorrt`` or ``onnxruntime``.
        signed_only: int8 Q/DQ only (TensorRT); else uint8 activations where the grid is unsigned.
        unsigned_qmax: the top of a re-quantized unsigned activation grid (127 in int8, 255 in uint8).
        clip_in_float: keep an out-of-grid clip as a float Clip before the Q (TensorRT); else the integer
            grid's own saturation does it (ONNX Runtime fuses Q/DQ through it).
        drop_redundant_clips: remove Clips the Q's saturation already does (ONNX Runtime: a Clip between a
            conv and its Q stops the QLinearConv fusion).
        residual_qdq: ``--residual-qdq`` (Q/DQ on residual skips so Adds fuse) applies.
        parity_disabled_passes: ONNX Runtime passes the parity "on" run leaves out, so that it stands for this
            target's runtime (TensorRT keeps conv biases in float: no int32 bias rounding).
        diagnose_bias_rounding: on an "on" miss, run again without ORT's bias rounding to say if that is why.
        fp16_graph: also write ``model.fp16.onnx`` (TensorRT 11 builds FP16 engines from it only).
        lint_all_rules: the linter's full TensorRT profile; else only what matters to ONNX Runtime.
    """

    name: str
    signed_only: bool
    unsigned_qmax: int
    clip_in_float: bool
    drop_redundant_clips: bool
    residual_qdq: bool
    parity_disabled_passes: tuple[str, ...]
    diagnose_bias_rounding: bool
    fp16_graph: bool
    lint_all_rules: bool


TARGET_RULES = {
    "tensorrt": Target("tensorrt", signed_only=True, unsigned_qmax=127, clip_in_float=True,
                       drop_redundant_clips=False, residual_qdq=True,
                       parity_disabled_passes=("WeightBiasQuantization",), diagnose_bias_rounding=False,
                       fp16_graph=True, lint_all_rules=True),
    "onnxruntime": Target("onnxruntime", signed_only=False, unsigned_qmax=255, clip_in_float=False,
                          drop_redundant_clips=True, residual_qdq=False, parity_disabled_passes=(),
                          diagnose_bias_rounding=True, fp16_graph=False, lint_all_rules=False),
}
assert tuple(TARGET_RULES) == TARGETS


def target_rules(name: str) -> Target:
    """The rules of export target ``name``.

    Raises:
        ConfigError: an unknown target (the message lists the known ones).
    """
    _one_of("target", name, TARGETS)
    return TARGET_RULES[name]


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputContract:
    """What a model takes: image channels and size, and the normalisation its weights were trained with.

    Recorded in every checkpoint and export manifest, so export and bench need no flags again. Images are
    converted to it: channels (gray <-> RGB), size (resize and crop) and ``(pixel/255 - mean) / std``.

    Args:
        channels: input channels (1 gray, 3 RGB, or what the model's first layer takes).
        height: input height in pixels.
        width: input width in pixels.
        mean: per-channel mean of pixels in [0, 1] (one value per channel).
        std: per-channel standard deviation, positive.
    """

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"input {name} must be a positive integer, got {value!r}")
        if not 8 <= self.height <= 4096 or not 8 <= self.width <= 4096:
            raise ConfigError(f"input size must be 8 to 4096 pixels per side, got {self.height}x{self.width}")
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        for name, values in (("mean", mean), ("std", std)):
            if len(values) != self.channels:
                raise ConfigError(f"--{name} has {len(values)} value(s) but the input has {self.channels} channel(s); "
                                  "give one per channel, comma-separated")
            if not all(math.isfinite(v) for v in values):
                raise ConfigError(f"--{name} values must be finite numbers, got {values}")
        if any(v <= 0 for v in std):
            raise ConfigError(f"--std values must be > 0, got {std}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return self.channels, self.height, self.width

    @property
    def size_text(self) -> str:
        """``224`` or ``224x160``."""
        return str(self.height) if self.height == self.width else f"{self.height}x{self.width}"


def parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> ``(224, 224)``; ``"224x160"`` -> ``(224, 160)`` (height x width).

    Raises:
        ConfigError: anything else.
    """
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or any(d < 1 for d in dims):
        raise ConfigError(f"--input-size {text!r} is not N or HxW with positive integers (e.g. 224 or 224x160)")
    return dims[0], dims[1]


def parse_floats(text: str, name: str) -> tuple[float, ...]:
    """``"0.485,0.456,0.406"`` -> a tuple of finite floats.

    Raises:
        ConfigError: an empty list, or a value that is not a finite number.
    """
    try:
        values = tuple(float(p) for p in str(text).split(",") if p.strip())
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--{name} {text!r} is not a comma-separated list of finite numbers (e.g. 0.485,0.456,0.406)")
    return values


C = TypeVar("C")


def to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Rebuild a config from :func:`to_dict`'s output, ignoring unknown keys from newer versions."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return cls(**kwargs)


def replace(config: C, **changes: Any) -> C:
    """A copy of ``config`` with ``changes``, validated again; unknown names are a ConfigError."""
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


__all__ = [
    "InputContract", "QuantConfig", "TrainConfig", "from_dict", "parse_floats", "parse_size", "replace", "to_dict",
]
