"""The graphs of an export, one step each: build the bytes, check and lint them, run their parity check.

``int8_graph``, ``fp32_graph`` and ``fp16_graph`` return the same :class:`GraphResult` (the bytes, the
manifest entry, parity, accuracy, the summary lines), so the export pipeline treats every graph alike,
as Polygraphy's comparator treats its runners.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TARGET_RULES, ExportConfig, QuantConfig, target_rules
from ..errors import ExportError, first_line
from ..manifest import FP16_FILE, FP32_FILE, INT8_FILE
from .inputs import ParityData
from .parity import ParityThresholds

# FP16 rounds every layer: it agrees with float32 like ONNX Runtime's optimised float graph does
FP16_MIN_TOP1 = 0.99


@dataclass
class GraphResult:
    """One graph of an export, checked.

    Args:
        key: ``fp32``, ``int8`` or ``fp16`` (the manifest's key).
        data: the serialised ONNX model.
        entry: its manifest entry (``file``, source, bits, lint...; export adds ``sha256`` and ``bytes``).
        parity: its parity check (``off``, ``on``, ``passed``...).
        accuracy: top-1 of the reference and the graph on labelled parity inputs, else None.
        lines: the summary lines export prints.
        reference: the PyTorch reference logits (the FP16 graph is checked against the FP32 graph's).
        explained_miss: an ONNX Runtime "on" miss that its int32 bias rounding explains (said in ``lines``).
    """

    key: str
    data: bytes
    entry: dict[str, Any]
    parity: dict[str, Any]
    accuracy: dict[str, Any] | None
    lines: list[str] = field(default_factory=list)
    reference: torch.Tensor | None = None
    explained_miss: bool = False


def _top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def _batched(model: nn.Module, inputs: torch.Tensor, batch: int = 64) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]).float()


def _without_bias_rounding(data: bytes, inputs: np.ndarray, reference: np.ndarray, threads: int) -> dict[str, Any]:
    """An ONNX Runtime "on" miss, diagnosed: the "on" run again without ORT's bias rounding.

    ORT rounds each float conv bias onto the int32 grid (input scale x weight scale) to run its integer
    kernels; low-bit students can sit close enough to rounding ties for that to flip decisions. If
    leaving out that one pass restores agreement, the miss is that rounding (TensorRT keeps float biases).
    """
    from .parity import compare, run, session

    passes = TARGET_RULES["tensorrt"].parity_disabled_passes  # ORT's "on" run as it stands for TensorRT
    sess = session(data, "on", disabled_optimizers=passes, threads=threads)
    stats = compare(reference, run(sess, inputs))
    return {"top1_agreement": stats["top1_agreement"], "ort_disabled_optimizers": list(passes)}


def bias_rounding_note(parity: dict[str, Any]) -> str | None:
    """One line on an ONNX Runtime "on" miss that its int32 bias rounding explains, else None."""
    without = parity.get("on", {}).get("without_bias_rounding")
    if without is None:
        return None
    return (f"int8 (on): ONNX Runtime rounds conv biases onto the int32 grid (input scale x weight scale) for its "
            f"integer kernels; without that one pass, agreement is {without['top1_agreement']:.2%}. The TensorRT "
            f"target keeps float biases; train the student with --int32-bias to learn that rounding")


def int8_graph(student: nn.Module, config: ExportConfig, example: torch.Tensor, pdata: ParityData,
               thresholds: ParityThresholds, quant: QuantConfig | None, lap: Callable[[str], None],
               log: Callable[[str], None]) -> GraphResult:
    """``model.int8.onnx``: fold, plan, lower, export, check and lint the QDQ graph, then its parity check.

    The reference is the fake-quant student itself (traced, so its residual skips can be observed).
    """
    from .fold import fold_batchnorm, trace
    from .lint import lint_model, summarize
    from .lower import insert_skip_observers, lower
    from .onnx_io import check_model, to_onnx
    from .parity import graph_parity, summary_line

    folded = fold_batchnorm(student)
    traced = trace(student)
    rules = target_rules(config.target)
    observers = insert_skip_observers(traced) if config.residual_qdq and rules.residual_qdq else {}
    lap("fold_trace")
    reference = _batched(traced.eval(), pdata.inputs)  # the student's own computation; also calibrates skips
    lap("int8_reference")
    skip_amax = {k: o.observed_amax for k, o in observers.items()} if observers else None
    lowered = lower(folded, config.target, allow_requantize=config.allow_requantize, skip_amax=skip_amax)
    model = to_onnx(lowered.module, example, config.opset)
    check_model(model, "int8")
    findings = lint_model(model, config.target)
    errors = [f for f in findings if f.severity == "error"]
    if errors:  # our own output breaking the rules is a bug: refuse to write it
        raise ExportError(f"the int8 graph fails its own lint ({len(errors)} error(s)), first: {errors[0].line()}")
    data = model.SerializeToString()
    lap("int8_lower_export_check_lint")
    step = lowered.output_step.numpy() if lowered.output_step is not None else None
    labels = pdata.labels.numpy() if pdata.labels is not None else None
    disabled = rules.parity_disabled_passes
    parity = graph_parity(data, pdata.inputs.numpy(), reference.numpy(), thresholds, step=step, inspect_kernels=True,
                          disabled_optimizers=disabled, threads=config.threads, labels=labels)
    if rules.diagnose_bias_rounding and parity["off"]["passed"] and not parity["on"]["passed"]:
        parity["on"]["without_bias_rounding"] = _without_bias_rounding(data, pdata.inputs.numpy(),
                                                                       reference.numpy(), config.threads)
    lap("int8_parity")
    parity["reference"] = "PyTorch fake-quant student"
    parity["output_step"] = "input scale x weight scale of the quantized output layer" if step is not None else None
    requantized = lowered.requantized
    if requantized:
        log(f"re-quantized {len(requantized)} grid(s) (--allow-requantize): " + "; ".join(requantized[:3]))
    lint = summarize(findings)
    if lint["warnings"]:
        log(f"lint ({config.target}): {lint['warnings']} warning(s): {', '.join(sorted({f.rule for f in findings}))}")
    graph = {
        "file": INT8_FILE, "wbits": quant.wbits if quant else None, "abits": quant.abits if quant else None,
        "target": config.target, "exact": not requantized and not lowered.skips,
        "requantized": requantized, "residual_qdq": bool(lowered.skips), "folded_batchnorms": len(folded.folded_bn),
        "layers": [p.describe() for p in lowered.plans.values()],
        "skips": {k: {"scale": v.scale} for k, v in lowered.skips.items()}, "lint": lint,
    }
    accuracy = None
    if pdata.labels is not None:
        accuracy = {"samples": len(pdata.inputs), "pytorch_student": _top1(reference, pdata.labels),
                    "onnx_opt_off": parity["off"]["top1_accuracy"], "onnx_opt_on": parity["on"]["top1_accuracy"]}
    lines = [summary_line("int8", parity)]
    rounding = bias_rounding_note(parity)
    if rounding:
        lines.append(rounding)
    return GraphResult("int8", data, graph, parity, accuracy, lines, explained_miss=rounding is not None)


def fp32_graph(float_model: nn.Module, float_source: str, config: ExportConfig, example: torch.Tensor,
               pdata: ParityData, thresholds: ParityThresholds, lap: Callable[[str], None]) -> GraphResult:
    """``model.fp32.onnx``: the float model exported, checked and linted, then its parity check.

    The reference is the float model in PyTorch, on the first ``fp32_parity_samples`` parity inputs.
    """
    from .lint import lint_model, summarize
    from .onnx_io import check_model, to_onnx
    from .parity import graph_parity, summary_line

    inputs = pdata.inputs[: config.fp32_parity_samples]
    labels = pdata.labels[: len(inputs)] if pdata.labels is not None else None
    reference = _batched(float_model, inputs)
    model = to_onnx(float_model, example, config.opset)
    check_model(model, "fp32")
    data = model.SerializeToString()
    lap("fp32_reference_export_check")
    parity = graph_parity(data, inputs.numpy(), reference.numpy(), thresholds, threads=config.threads,
                          labels=labels.numpy() if labels is not None else None)
    parity["reference"] = f"PyTorch float model ({float_source})"
    lap("fp32_parity")
    entry = {"file": FP32_FILE, "source": float_source, "lint": summarize(lint_model(model, config.target))}
    accuracy = None
    if labels is not None:
        accuracy = {"samples": len(inputs), "source": float_source, "pytorch": _top1(reference, labels),
                    "onnx_opt_off": parity["off"]["top1_accuracy"], "onnx_opt_on": parity["on"]["top1_accuracy"]}
    return GraphResult("fp32", data, entry, parity, accuracy, [summary_line("fp32", parity)],
                       reference=reference)


class _Float16(nn.Module):
    """The float model in float16 with float32 input and output (what TensorRT 11 builds an FP16 engine from)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def fp16_graph(float_model: nn.Module, float_source: str, config: ExportConfig, example: torch.Tensor,
               fp32: GraphResult, pdata: ParityData, log: Callable[[str], None]) -> GraphResult | None:
    """``model.fp16.onnx``: float16 weights and compute, float32 I/O, parity-checked against float32 PyTorch.

    TensorRT 11 has no FP16 builder flag (networks are strongly typed): an FP16 engine needs this graph.
    A model whose operators have no float16 export, or whose values overflow float16, is left out with a
    note, not failed.
    """
    from .lint import lint_model, summarize
    from .onnx_io import check_model, to_onnx
    from .parity import graph_parity, summary_line

    try:
        model = to_onnx(_Float16(copy.deepcopy(float_model).half().eval()), example, config.opset)
        check_model(model, "fp16")
    except (ExportError, RuntimeError) as exc:
        reason = first_line(exc)
        log(f"note: no FP16 graph ({reason}); TensorRT 11 will have no FP16 engine of this model")
        return None
    data = model.SerializeToString()
    assert fp32.reference is not None
    inputs = pdata.inputs[: len(fp32.reference)]
    labels = pdata.labels[: len(inputs)].numpy() if pdata.labels is not None else None
    parity = graph_parity(data, inputs.numpy(), fp32.reference.numpy(), ParityThresholds(FP16_MIN_TOP1, FP16_MIN_TOP1),
                          threads=config.threads, labels=labels)
    if not all(math.isfinite(parity[level]["max_abs_dlogit"]) for level in ("off", "on")):
        # Not a parity miss: this float model's values leave float16's range (65504), so an FP16 graph or
        # engine of it computes inf/NaN (e.g. the float copy of a low-bit student, whose activations were
        # held in range only by its quantizers). Left out like a model without float16 operators.
        peak = float(fp32.reference.abs().max())
        log(f"note: no FP16 graph (this float model overflows float16: its FP16 graph returns inf/NaN on the "
            f"parity inputs, the float32 logits reach {peak:.3g}); TensorRT 11 will have no FP16 engine of it")
        return None
    parity["reference"] = f"PyTorch float model in float32 ({float_source})"
    graph = {"file": FP16_FILE, "source": float_source, "dtype": "float16 weights and compute, float32 I/O",
             "lint": summarize(lint_model(model, config.target))}
    return GraphResult("fp16", data, graph, parity, None, [summary_line("fp16", parity)])
