"""``export_checkpoint``: a trained checkpoint becomes ``model.fp32.onnx``, ``model.int8.onnx`` and a manifest.

The steps: fold BN exactly, check every grid fits the target, lower to QDQ ONNX, run ``onnx.checker`` and
the linter on what was written, run parity against the PyTorch model on real inputs, then write the
export directory atomically (a temp directory beside it, renamed into place), so a failure at any step
leaves nothing half-written.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..config import InputContract, QuantConfig, to_dict
from ..errors import CheckpointError, ConfigError, ExportError, first_line
from ..hashing import file_sha256 as _sha256  # a module global: tests inject a write failure here
from .inputs import ParityData
from .plan import TARGETS

SCHEMA = "sqakd-edge.export-manifest"
SCHEMA_VERSION = 1
FP32_FILE = "model.fp32.onnx"
INT8_FILE = "model.int8.onnx"
FP16_FILE = "model.fp16.onnx"
GRAPH_KEYS = {FP32_FILE: "fp32", INT8_FILE: "int8", FP16_FILE: "fp16"}
GRAPHS = tuple(GRAPH_KEYS.values())  # the manifest's order
# FP16 rounds every layer: it agrees with float32 like ONNX Runtime's optimised float graph does
FP16_MIN_TOP1 = 0.99
MANIFEST_FILE = "manifest.json"
MIN_OPSET, MAX_OPSET = 13, 20


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
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


def parse_input_shape(text: str) -> tuple[int, int, int, int]:
    """``"1x1x28x28"`` -> ``(1, 1, 28, 28)``.

    Raises:
        ConfigError: not four positive integers separated by ``x``.
    """
    parts = text.lower().replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) != 4 or any(d < 1 for d in dims):
        raise ConfigError(f"--input-shape {text!r} is not NxCxHxW with positive integers (e.g. 1x1x28x28)")
    return dims  # type: ignore[return-value]


@dataclass
class ExportResult:
    """What an export wrote.

    Attributes:
        out_dir: the export directory.
        manifest: the manifest's content.
        seconds: wall time of the export.
    """

    out_dir: Path
    manifest: dict[str, Any]
    seconds: float
    lines: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether parity met its thresholds."""
        return bool(self.manifest.get("parity", {}).get("passed", False))

    def parity_line(self) -> str:
        """The int8 parity summary (the float one without --int8), one line."""
        from .parity import summary_line

        parity = self.manifest.get("parity", {})
        key = "int8" if "int8" in parity else "fp32"
        return summary_line(key, parity[key]) if key in parity else "parity: not run"


def _versions() -> dict[str, str]:
    out = {"sqakd_edge": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("onnx", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "not installed"
    return out


def _prepare_out(out_dir: Path, force: bool) -> Path:
    """Check the output folder can be written; return its parent (where the temp dir goes).

    Leftovers of a killed export are tidied first: an old export it had moved aside comes back if nothing
    replaced it, and its stale temp folders go.
    """
    from ..stale import remove_stale, restore_set_aside

    parent_dir = out_dir.expanduser().resolve().parent
    restore_set_aside(parent_dir, f".{out_dir.name}.old.*", out_dir.name, inner="d")
    remove_stale(parent_dir, [f".{out_dir.name}.tmp.*", f".{out_dir.name}.probe.*"])
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file; pass a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ExportError(f"--out {out_dir} exists and is not empty; pass --force to replace it")
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out_dir.name}.probe.", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise ExportError(f"cannot write the export next to {out_dir} ({exc.strerror or exc}); pass an --out "
                          "in a writable folder") from None
    return parent


def _refuse_out_holding_inputs(out_dir: Path, inputs: list[Path]) -> None:
    """An ``--out`` that contains an input would be replaced, input and all: refuse it before anything is read."""
    out = out_dir.expanduser().resolve()
    for item in inputs:
        resolved = item.expanduser().resolve()
        if resolved == out or out in resolved.parents:
            raise ExportError(f"--out {out_dir} contains the input {item}; replacing it would delete that file: "
                              f"choose another --out (e.g. {out_dir / 'export'})")


def _commit(tmp: Path, out_dir: Path) -> None:
    """Move the finished temp dir into place (replacing an old export, which --force allowed)."""
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.resolve().parent))
        os.replace(out_dir, old / "d")
    try:
        os.replace(tmp, out_dir)
    except OSError:
        if old is not None:
            os.replace(old / "d", out_dir)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _reached_quantizers(student: nn.Module) -> set[str]:
    """Names of the quantizers the student's forward runs, as it is (in eval mode for export).

    A training-only branch (an auxiliary head) never runs in eval mode: its quantizers may be uninitialised, and
    they are not exported.
    """
    from ..graph import TraceFailure, trace
    from ..quant import iter_quantizers

    try:
        gm = trace(student)
    except TraceFailure:
        return {n for n, _ in iter_quantizers(student)}
    called = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    return {n for n, _ in iter_quantizers(student) if n in called or n.rpartition(".")[0] in called}


def _top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def _batched(model: nn.Module, inputs: torch.Tensor, batch: int = 64) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]).float()


def _check_input_shape(model: nn.Module, shape: tuple[int, int, int, int], num_classes: int, name: str) -> None:
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape))
    except Exception as exc:  # a shape error can be any of RuntimeError/ValueError/IndexError
        first = first_line(exc)
        raise ExportError(f"model {name} rejects input shape {'x'.join(map(str, shape))} ({first}); pass "
                          "--input-shape NxCxHxW with the channels and size the model was trained on") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (shape[0], num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ExportError(f"model {name} returns {got} for input {'x'.join(map(str, shape))}, expected logits "
                          f"({shape[0]}, {num_classes})")


def export_model(student: nn.Module | None, out_dir: str | Path, config: ExportConfig = ExportConfig(),
                 **kwargs: Any) -> ExportResult:
    """Export models already in memory (what :func:`export_checkpoint` calls after loading).

    Args:
        student: the fake-quant student (quantizers initialised), or None for a float-only export.
        out_dir: the export directory to write.
        config: what to write and how strictly to check it.
        **kwargs: see :func:`_export_model` (``model_meta`` is required).

    Returns:
        What was written.

    Raises:
        ExportError: a grid that does not fit, a model the exporter or checker rejects, lint errors in our
            own output, an unwritable or occupied ``out_dir``, or a parity miss (with
            ``fail_on_parity_miss``).
        ConfigError: an inconsistent request (``int8`` without a student).
        DataError: ``data`` that cannot be opened or does not fit the model.
    """
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _export_model(student, out_dir, config, **kwargs)
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Int8Graph:
    model: bytes
    graph: dict[str, Any]
    parity: dict[str, Any]
    accuracy: dict[str, Any] | None


def _without_bias_rounding(data: bytes, inputs: np.ndarray, reference: np.ndarray, threads: int) -> dict[str, Any]:
    """An ONNX Runtime "on" miss, diagnosed: the "on" run again without ORT's bias rounding.

    ORT rounds each float conv bias onto the int32 grid (input scale x weight scale) to run its integer
    kernels; low-bit students can sit close enough to rounding ties for that to flip decisions. If
    leaving out that one pass restores agreement, the miss is that rounding (TensorRT keeps float biases).
    """
    from .parity import TENSORRT_DISABLED_OPTIMIZERS, compare, run, session

    sess = session(data, "on", disabled_optimizers=TENSORRT_DISABLED_OPTIMIZERS, threads=threads)
    stats = compare(reference, run(sess, inputs))
    return {"top1_agreement": stats["top1_agreement"], "ort_disabled_optimizers": list(TENSORRT_DISABLED_OPTIMIZERS)}


def bias_rounding_note(parity: dict[str, Any]) -> str | None:
    """One line on an ONNX Runtime "on" miss that its int32 bias rounding explains, else None."""
    without = parity.get("on", {}).get("without_bias_rounding")
    if without is None:
        return None
    return (f"int8 (on): ONNX Runtime rounds conv biases onto the int32 grid (input scale x weight scale) for its "
            f"integer kernels; without that one pass, agreement is {without['top1_agreement']:.2%}. The TensorRT "
            f"target keeps float biases; more bits make the grid finer")


def _int8_graph(student: nn.Module, config: ExportConfig, example: torch.Tensor, pdata: ParityData,
                thresholds: Any, quant: QuantConfig | None, lap: Callable[[str], None],
                log: Callable[[str], None]) -> _Int8Graph:
    """Fold, plan, lower, export, check and lint the QDQ graph, then run its parity check."""
    from .fold import fold_batchnorm, trace
    from .lint import lint_model, summarize
    from .lower import insert_skip_observers, lower
    from .onnx_io import check_model, to_onnx
    from .parity import TENSORRT_DISABLED_OPTIMIZERS, graph_parity

    folded = fold_batchnorm(student)
    traced = trace(student)
    observers = insert_skip_observers(traced) if config.residual_qdq and config.target == "tensorrt" else {}
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
    disabled = TENSORRT_DISABLED_OPTIMIZERS if config.target == "tensorrt" else ()
    parity = graph_parity(data, pdata.inputs.numpy(), reference.numpy(), thresholds, step=step, inspect_kernels=True,
                          disabled_optimizers=disabled, threads=config.threads, labels=labels)
    if config.target == "onnxruntime" and parity["off"]["passed"] and not parity["on"]["passed"]:
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
    return _Int8Graph(data, graph, parity, accuracy)


def _export_model(student: nn.Module | None, out_dir: str | Path, config: ExportConfig = ExportConfig(), *,
                 model_meta: dict[str, Any], float_model: nn.Module | None = None, float_source: str = "teacher",
                 quant: QuantConfig | None = None, data: str | None = None, data_fallbacks: tuple[str, ...] = (),
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 provenance: dict[str, Any] | None = None, parity_data: ParityData | None = None,
                 contract: InputContract | None = None, force: bool = False,
                 log: Callable[[str], None] = print) -> ExportResult:
    """The body of :func:`export_model`.

    Args:
        student: the fake-quant student (quantizers initialised), or None for a float-only export.
        out_dir: the export directory to write.
        config: what to write and how strictly to check it.
        model_meta: ``{name, num_classes, in_channels, input_size}``.
        float_model: the float model for ``model.fp32.onnx``; None: the student with quantizers off.
        float_source: what ``float_model`` is (``teacher``; ``student-float`` is set automatically).
        quant: the student's QuantConfig (for the manifest).
        data: a dataset spec for parity (must open), or None.
        data_fallbacks: specs to try when ``data`` is None.
        mean: input normalisation mean (manifest); None: the dataset's.
        std: input normalisation std (manifest); None: the dataset's.
        provenance: extra manifest blocks (``checkpoint``, ``teacher``).
        parity_data: inputs to use for parity instead of opening ``data``.
        contract: the model's input contract (shape, mean, std); data for parity is converted to it. None:
            ``model_meta``'s square input, and the dataset's own statistics.
        force: replace a non-empty ``out_dir``.
        log: where progress lines go.

    Returns and raises as :func:`export_model`.
    """
    from ..quant import to_float
    from .inputs import load_parity_data
    from .lint import lint_model, summarize
    from .onnx_io import check_model, to_onnx
    from .parity import ParityThresholds, graph_parity, summary_line

    start = time.perf_counter()
    out = Path(out_dir)
    parent = _prepare_out(out, force)
    if config.int8 and student is None:
        raise ConfigError("--int8 needs a quantized student checkpoint")
    name, classes = str(model_meta["name"]), int(model_meta["num_classes"])
    if config.input_shape is not None:
        shape = config.input_shape
    elif contract is not None:
        shape = (1, *contract.shape)
    else:
        shape = (1, int(model_meta["in_channels"]), int(model_meta["input_size"]), int(model_meta["input_size"]))
    if contract is not None and tuple(shape[1:]) != contract.shape:
        contract = InputContract(shape[1], shape[2], shape[3], contract.mean, contract.std) \
            if shape[1] == contract.channels else None
    if contract is not None:
        mean, std = mean or contract.mean, std or contract.std
    if float_model is None:
        if student is None:
            raise ConfigError("nothing to export: pass a student or a float model")
        float_model, float_source = to_float(student), "student-float"
    float_model = float_model.eval()
    _check_input_shape(float_model, shape, classes, name)
    if student is not None:
        from ..quant import uninitialized_quantizers

        student = student.eval()
        cold = uninitialized_quantizers(student, among=_reached_quantizers(student))
        if cold:  # a forward pass here would set their ranges from whatever input it saw
            raise ExportError(f"the student's quantizers are not initialised ({cold[0]} and {len(cold) - 1} more); "
                              "run one batch of real data through it first (checkpoints from 'sqakd-edge train' "
                              "always are)")
        student = student.eval()
        _check_input_shape(student, shape, classes, name)
    thresholds = ParityThresholds(config.min_top1_off, config.min_top1_on)
    timings: dict[str, float] = {}
    last = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        timings[stage] = round(timings.get(stage, 0.0) + now - last[0], 3)
        last[0] = now

    lap("load_models")
    pdata = parity_data or load_parity_data(data, config.parity_samples, shape[1:], fallbacks=data_fallbacks,
                                            contract=contract)
    lap("load_data")
    if pdata.note:
        log(f"note: {pdata.note}")
    inputs = pdata.inputs
    example = torch.zeros(shape)
    graphs: dict[str, dict[str, Any]] = {}
    parity: dict[str, Any] = {"samples": int(len(inputs)), "data": pdata.describe(),
                              "thresholds": {"min_top1_off": config.min_top1_off, "min_top1_on": config.min_top1_on}}
    payload: dict[str, bytes] = {}
    accuracy: dict[str, Any] = {}
    labels = pdata.labels.numpy() if pdata.labels is not None else None
    lines: list[str] = []
    note: str | None = None  # an ONNX Runtime "on" miss that its bias rounding explains

    if config.int8:
        assert student is not None
        int8 = _int8_graph(student, config, example, pdata, thresholds, quant, lap, log)
        payload[INT8_FILE], graphs["int8"], parity["int8"] = int8.model, int8.graph, int8.parity
        lines.append(summary_line("int8", parity["int8"]))
        note = bias_rounding_note(parity["int8"])
        if note:
            lines.append(note)
        if int8.accuracy:
            accuracy["int8"] = int8.accuracy

    fp_inputs = inputs[: config.fp32_parity_samples]
    fp_reference = _batched(float_model, fp_inputs)
    fp_model = to_onnx(float_model, example, config.opset)
    check_model(fp_model, "fp32")
    payload[FP32_FILE] = fp_model.SerializeToString()
    lap("fp32_reference_export_check")
    fp_labels = labels[: len(fp_inputs)] if labels is not None else None
    parity["fp32"] = graph_parity(payload[FP32_FILE], fp_inputs.numpy(), fp_reference.numpy(), thresholds,
                                  threads=config.threads, labels=fp_labels)
    parity["fp32"]["reference"] = f"PyTorch float model ({float_source})"
    lap("fp32_parity")
    graphs["fp32"] = {"file": FP32_FILE, "source": float_source,
                      "lint": summarize(lint_model(fp_model, config.target))}
    lines.insert(0, summary_line("fp32", parity["fp32"]))
    if config.target == "tensorrt":
        fp16 = _fp16_graph(float_model, example, config, fp_inputs, fp_reference, fp_labels, float_source, log)
        if fp16 is not None:
            payload[FP16_FILE], graphs["fp16"], parity["fp16"] = fp16
            lines.insert(1, summary_line("fp16", parity["fp16"]))
        lap("fp16_export_parity")
    if pdata.labels is not None:
        accuracy["fp32"] = {"samples": len(fp_inputs), "source": float_source,
                            "pytorch": _top1(fp_reference, pdata.labels[: len(fp_inputs)]),
                            "onnx_opt_off": parity["fp32"]["off"]["top1_accuracy"],
                            "onnx_opt_on": parity["fp32"]["on"]["top1_accuracy"]}
        accuracy["data"] = f"{pdata.name} ({pdata.split} split): top-1 on the parity inputs"
    parity["passed"] = all(parity[k]["passed"] for k in GRAPHS if k in parity)

    manifest = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {k: model_meta[k] for k in ("name", "source", "num_classes", "in_channels", "input_size",
                                             "input_shape", "builder_sha256") if k in model_meta},
        "input": {"name": "input", "shape": ["batch", *shape[1:]], "dtype": "float32",
                  "mean": list(mean or pdata.mean or []) or None, "std": list(std or pdata.std or []) or None,
                  "layout": "NCHW"},
        "output": {"name": "logits", "shape": ["batch", classes]},
        "target": config.target, "opset": config.opset, "graphs": graphs,
        "quant": to_dict(quant) if quant is not None else None,
        **(provenance or {}),
        "data": {"spec": pdata.spec, "name": pdata.name},
        "parity": parity, "accuracy": accuracy or None, "versions": _versions(),
        "timings_s": timings,
    }
    for line in lines:
        log(line)
    if not parity["passed"] and config.fail_on_parity_miss:
        missed = [f"{g} ({lvl})" for g in GRAPHS if g in parity for lvl in ("off", "on")
                  if not parity[g][lvl]["passed"]]
        summary = "; ".join(lines[-2:]) if note else lines[-1]
        raise ExportError(f"parity below threshold for {', '.join(missed)}: {summary}; nothing was written "
                          "(pass --no-parity-fail to write it anyway, marked as failed in the manifest, or change "
                          "--min-top1-off/--min-top1-on)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the export is an ordinary folder
        for fname, data_bytes in payload.items():
            (tmp / fname).write_bytes(data_bytes)
            graphs[GRAPH_KEYS[fname]].update({"sha256": _sha256(tmp / fname), "bytes": len(data_bytes)})
        manifest["graphs"] = {k: _ordered(graphs[k]) for k in GRAPHS if k in graphs}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _commit(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    log(f"wrote {out} in {seconds:.1f} s ({', '.join(sorted(payload))}, {MANIFEST_FILE})")
    return ExportResult(out, manifest, seconds, lines)


class _Float16(nn.Module):
    """The float model in float16 with float32 input and output (what TensorRT 11 builds an FP16 engine from)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.half()).float()


def _fp16_graph(float_model: nn.Module, example: torch.Tensor, config: ExportConfig, inputs: torch.Tensor,
                reference: torch.Tensor, labels: Any, float_source: str, log: Callable[[str], None]
                ) -> tuple[bytes, dict[str, Any], dict[str, Any]] | None:
    """``model.fp16.onnx``: float16 weights and compute, float32 I/O, parity-checked against float32 PyTorch.

    TensorRT 11 has no FP16 builder flag (networks are strongly typed): an FP16 engine needs this graph.
    A model whose operators have no float16 export is left out with a note, not failed.
    """
    from .lint import lint_model, summarize
    from .onnx_io import check_model, to_onnx
    from .parity import ParityThresholds, graph_parity

    try:
        model = to_onnx(_Float16(copy.deepcopy(float_model).half().eval()), example, config.opset)
        check_model(model, "fp16")
    except (ExportError, RuntimeError) as exc:
        reason = first_line(exc)
        log(f"note: no FP16 graph ({reason}); TensorRT 11 will have no FP16 engine of this model")
        return None
    data = model.SerializeToString()
    parity = graph_parity(data, inputs.numpy(), reference.numpy(), ParityThresholds(FP16_MIN_TOP1, FP16_MIN_TOP1),
                          threads=config.threads,
                          labels=labels)
    parity["reference"] = f"PyTorch float model in float32 ({float_source})"
    graph = {"file": FP16_FILE, "source": float_source, "dtype": "float16 weights and compute, float32 I/O",
             "lint": summarize(lint_model(model, config.target))}
    return data, graph, parity


def _ordered(graph: dict[str, Any]) -> dict[str, Any]:
    """file, sha256, bytes first (as in the interface), then the rest."""
    head: dict[str, Any] = {k: graph[k] for k in ("file", "sha256", "bytes", "source", "wbits", "abits") if k in graph}
    return {**head, **{k: v for k, v in graph.items() if k not in head}}


def _load(load: Callable[..., dict[str, Any]], path: Path, **kwargs: Any) -> dict[str, Any]:
    """``load_checkpoint``, with any unexpected unpickling error turned into a one-line CheckpointError."""
    from ..errors import SqakdEdgeError

    try:
        return load(path, **kwargs)
    except SqakdEdgeError:
        raise
    except Exception as exc:  # e.g. KeyError from torch.load on a short text file
        raise CheckpointError(f"checkpoint {path} is corrupt or not a PyTorch file ({type(exc).__name__}: "
                              f"{str(exc)[:120]}); pass a .pt file written by 'sqakd-edge train'") from None


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, config: ExportConfig = ExportConfig(), *,
                      teacher: str | Path | None = None, data: str | None = None, force: bool = False,
                      log: Callable[[str], None] = print) -> ExportResult:
    """Export a sqakd-edge checkpoint (``sqakd-edge export``).

    Args:
        checkpoint: a student checkpoint (or a float one, without ``config.int8``).
        out_dir: the export directory.
        config: what to write and how strictly to check it (``ExportConfig(int8=True)`` by default).
        teacher: a float teacher checkpoint for ``model.fp32.onnx``; None: the student with quantizers off.
        data: dataset spec for parity (must open); None: the checkpoint's data, else ``embedded``, else
            seeded Gaussian inputs (noted in the manifest).
        force: replace a non-empty ``out_dir``.
        log: where progress lines go.

    Returns:
        What was written (``result.parity_line()`` is the one-line summary).

    Raises:
        CheckpointError: not a sqakd-edge checkpoint, or a float checkpoint with ``int8``.
        ExportError: see :func:`export_model`.

    Example:
        >>> export_checkpoint("runs/w4a4/best.pt", "runs/w4a4/export", ExportConfig(target="tensorrt"))
    """
    from ..models.resolve import contract_of
    from ..train.checkpoint import build_model_from_checkpoint, file_sha256, load_checkpoint, quant_config_of

    path = Path(checkpoint)
    _refuse_out_holding_inputs(Path(out_dir), [path, *([Path(teacher)] if teacher is not None else [])])
    ckpt = _load(load_checkpoint, path)
    if config.int8 and ckpt.get("kind") != "student":
        raise CheckpointError(f"{path} holds a float model ('{ckpt.get('kind')}'); --int8 needs a quantized student "
                              f"(train one with: sqakd-edge train --teacher {path} ...), or drop --int8")
    model = build_model_from_checkpoint(ckpt)
    meta = dict(ckpt["model"])
    provenance: dict[str, Any] = {"checkpoint": {"file": str(path.resolve()), "sha256": file_sha256(path)}}
    is_student = ckpt.get("kind") == "student"
    float_model, source = (None, "student-float") if is_student else (model, "teacher")
    if teacher is not None:
        t_ckpt = _load(load_checkpoint, Path(teacher), kind="fp")
        for key in ("num_classes", "in_channels"):
            if t_ckpt["model"][key] != meta[key]:
                raise CheckpointError(f"teacher {teacher} has {key} {t_ckpt['model'][key]} but the student has "
                                      f"{meta[key]}; pass the student's own teacher")
        float_model, source = build_model_from_checkpoint(t_ckpt), "teacher"
        provenance["teacher"] = {"file": str(Path(teacher).resolve()), "sha256": file_sha256(teacher)}
    data_meta = ckpt.get("data") or {}
    fallbacks = tuple(dict.fromkeys(s for s in (data_meta.get("spec"), "embedded") if s))
    quant = quant_config_of(ckpt) if is_student and ckpt.get("quant") else None
    mean = tuple(data_meta["mean"]) if data_meta.get("mean") else None
    std = tuple(data_meta["std"]) if data_meta.get("std") else None
    contract = contract_of(meta, data_meta) if meta.get("input_shape") else None
    return export_model(model if is_student else None, out_dir, config, model_meta=meta, float_model=float_model,
                        float_source=source, quant=quant, data=data, data_fallbacks=fallbacks, mean=mean, std=std,
                        provenance=provenance, contract=contract, force=force, log=log)
