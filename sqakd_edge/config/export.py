"""What ``export`` writes (``ExportConfig``) and the rules each target asks of an INT8 graph (``Target``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .checks import check_fraction, one_of
from .vocabulary import MAX_OPSET, MIN_OPSET, TARGETS


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
    one_of("target", name, TARGETS)
    return TARGET_RULES[name]
