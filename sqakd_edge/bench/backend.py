"""Where graphs run: the backend interface, and the local (ONNX Runtime + PyTorch) backend.

``run_bench`` does everything that is the same on every machine — reading the export directory,
preparing inputs, statistics, speed-ups, the results file, report and plot — and hands the part
that differs to a *backend*: take the graphs, the settings and the inputs, return per-iteration
latencies. A remote backend (TensorRT on a Jetson over SSH) implements the same :class:`Backend`
protocol and returns the same :class:`Measurement` records, plus a ``device`` block.

The CLI finds a remote backend through ``sqakd_edge.bench.remote.make_backend(device=NAME,
host=USER@HOST or None, setup=bool) -> Backend``; its ``name`` becomes ``settings.device`` in the
results. A remote backend ships ``job.bundle.graphs[...].path`` and ``job.inputs`` (one float32
batch per batch size), sets ``precision_ran`` from what the engine really ran, returns
``comparisons`` such as ``[("fp32", "fp16"), ("fp32", "int8")]``, and puts per-layer precision
counts in ``Measurement.info`` and GPU-compute series in ``Measurement.extra_samples_ms``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import BenchConfig
from ..errors import ConfigError, EngineError, ExportError
from ..hashing import file_sha256
from .export_dir import ExportBundle
from .inputs import EvalData, top1
from .measure import measure
from .runners import OrtRunner, Runner, TorchRunner, checkpoint_loader


@dataclass(frozen=True)
class BenchJob:
    """Everything a backend needs.

    Args:
        bundle: the checked export directory.
        config: the settings.
        inputs: per batch size, the one input batch every graph is timed on.
        eval_data: labelled (or unlabelled) real data, when ``--data`` was given.
        show_progress: draw a progress bar (None: only on a terminal).
    """

    bundle: ExportBundle
    config: BenchConfig
    inputs: dict[int, np.ndarray]
    eval_data: EvalData | None = None
    show_progress: bool | None = None


@dataclass
class Measurement:
    """The timed iterations of one model at one batch size, and what actually ran.

    Args:
        name: unique key within a run (``fp32``, ``int8``, ``eager``; a device may add e.g. ``fp16``).
        label: what a person reads, e.g. ``ORT INT8``; built from the precision that *ran*.
        graph: the export graph it came from (``fp32``/``int8``), None for the eager model.
        runtime: ``onnxruntime``, ``pytorch``, ``tensorrt``.
        precision_requested: what was asked for.
        precision_ran: what ran (differs when a runtime fell back; never labelled INT8 then).
        batch: images per iteration.
        samples_ms: per-iteration latency, milliseconds, in run order.
        model_bytes: size on disk of what ran (graph, engine or checkpoint), if known.
        info: runtime details (provider, threads, layer placement, ...).
        notes: sentences for the report.
        extra_samples_ms: further series, e.g. ``{"gpu_compute": [...]}`` on a GPU.
    """

    name: str
    label: str
    graph: str | None
    runtime: str
    precision_requested: str
    precision_ran: str
    batch: int
    samples_ms: np.ndarray
    model_bytes: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra_samples_ms: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class BackendResult:
    """What a backend returns.

    Args:
        measurements: one per (name, batch).
        comparisons: ``(baseline, candidate)`` name pairs to compute speed-ups for.
        accuracy: per name, ``{"top1", "correct", "n"}`` when labelled data was given.
        device: the device block (None for a local run).
        notes: sentences for the report (e.g. why a precision was not run).
    """

    measurements: list[Measurement]
    comparisons: list[tuple[str, str]]
    accuracy: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


class Backend(Protocol):
    """Runs a :class:`BenchJob` somewhere and returns latencies."""

    name: str

    def run(self, job: BenchJob) -> BackendResult:
        """Time every graph of the job at every batch size."""
        ...


def _label(runner: Runner) -> str:
    runtime = {"onnxruntime": "ORT", "pytorch": "PyTorch"}.get(runner.runtime, runner.runtime)
    label = f"{runtime} {runner.precision_ran.upper()}"
    if runner.runtime == "pytorch":
        label += " eager"
    if runner.precision_ran != runner.precision_requested:
        label += f" ({runner.precision_requested.upper()} requested)"
    return label


def _placement_note(runner: OrtRunner) -> str | None:
    p = runner.placement
    if p is None or runner.precision_requested != "int8":
        return None
    if p["int8_layers"] == 0:
        return (f"{runner.path.name}: ONNX Runtime fused none of the Q/DQ pairs into integer kernels, so the graph "
                "ran in FP32 (fake-quantized); it is not labelled INT8")
    return (f"{runner.path.name}: {p['int8_layers']} weighted layers ran on ONNX Runtime integer kernels, "
            f"{p['float_layers']} in float; {p['unfused_qdq']} Q/DQ nodes remain after optimisation")


class LocalBackend:
    """ONNX Runtime (and the PyTorch eager model, when its checkpoint is at hand) on this machine.

    Args:
        model_loader: turns the checkpoint path into a loader of the eager model; default
            :func:`~sqakd_edge.bench.runners.checkpoint_loader` (needs ``sqakd_edge.checkpoint``).
    """

    name = "local"

    def __init__(self, model_loader: Callable[[Path], Callable[[], Any]] | None = None) -> None:
        self.model_loader = model_loader

    def select(self, job: BenchJob) -> tuple[list[str], list[str]]:
        """Which of fp32/int8/eager run, and notes on those skipped.

        Raises:
            ConfigError: when a graph asked for with ``graphs`` is not available.
        """
        bundle, wanted = job.bundle, job.config.graphs
        notes: list[str] = []
        # the FP16 graph is for TensorRT 11 (no FP16 flag); ONNX Runtime's CPU kernels mostly cast float16 back
        available = [key for key in bundle.graphs if key != "fp16"]
        eager_reason = None
        if bundle.checkpoint is None:
            eager_reason = "the manifest names no checkpoint"
        elif not bundle.checkpoint.is_file():
            eager_reason = f"its checkpoint {bundle.checkpoint} is not on this machine"
        elif bundle.checkpoint_sha256 is None or file_sha256(bundle.checkpoint) != bundle.checkpoint_sha256:
            eager_reason = (f"its checkpoint {bundle.checkpoint} is not the one the export was made from (sha256 "
                            "differs from the manifest's)")
        elif importlib.util.find_spec("torch") is None:
            eager_reason = "torch is not installed"
        if eager_reason is None:
            available.append("eager")
        if wanted is None:
            if eager_reason is not None:
                notes.append(f"PyTorch eager baseline skipped: {eager_reason}.")
            return available, notes
        missing = [g for g in wanted if g not in available]
        if missing:
            why = {"int8": "the export has no INT8 graph (export with --int8)", "fp32": "the export has no FP32 graph",
                   "eager": eager_reason or ""}
            raise ConfigError(f"cannot run {', '.join(missing)}: {'; '.join(why[g] for g in missing)}")
        return [g for g in ("fp32", "int8", "eager") if g in wanted], notes

    def _runners(self, job: BenchJob, names: list[str]) -> list[Runner]:
        threads = job.config.resolved_threads
        runners: list[Runner] = []
        for name in names:
            if name == "eager":
                assert job.bundle.checkpoint is not None  # select() checked
                loader = (self.model_loader or checkpoint_loader)(job.bundle.checkpoint)
                runners.append(TorchRunner(loader, name="eager", threads=threads,
                                           note=f"model rebuilt from {job.bundle.checkpoint.name}"))
            else:
                graph = job.bundle.graphs[name]
                runners.append(OrtRunner(graph.path, name=name, precision_requested=graph.precision, threads=threads))
        return runners

    def _check_shapes(self, job: BenchJob, runners: list[Runner]) -> None:
        expected = list(job.bundle.input_shape)
        shapes = {r.name: r.input_shape() for r in runners if isinstance(r, OrtRunner)}
        if "fp32" in shapes and "int8" in shapes and shapes["fp32"][1:] != shapes["int8"][1:]:
            raise ExportError(f"the FP32 and INT8 graphs take different input shapes ({shapes['fp32']} vs "
                              f"{shapes['int8']}); re-export both from one checkpoint")
        for name, shape in shapes.items():
            file = job.bundle.graphs[name].path.name
            if len(shape) != 4 or list(shape[1:]) != expected:
                raise ExportError(f"{file} takes input {shape} but manifest.json says [batch, {expected[0]}, "
                                  f"{expected[1]}, {expected[2]}]; re-export the model")
            fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
            bad = [b for b in job.config.batches if fixed is not None and b != fixed]
            if bad:
                raise ConfigError(f"{file} accepts only batch {fixed} (its batch dimension is fixed), not "
                                  f"{', '.join(map(str, bad))}; use --batch {fixed} or export with a dynamic batch")

    def _check_outputs(self, job: BenchJob, runners: list[Runner]) -> None:
        for runner in runners:
            batch = job.inputs[job.config.batches[0]]
            logits = np.asarray(runner.infer(batch))
            if logits.shape != (len(batch), job.bundle.num_classes):
                raise EngineError(f"{runner.name} returned logits of shape {list(logits.shape)}, expected "
                                  f"[{len(batch)}, {job.bundle.num_classes}] as manifest.json says; "
                                  "re-export the model")

    def run(self, job: BenchJob) -> BackendResult:
        """Load every runner, check shapes, time each batch size, then measure accuracy.

        Raises:
            ConfigError: a graph asked for is unavailable, or a batch size a fixed-batch graph rejects.
            ExportError: graphs whose input shapes disagree with each other or with the manifest.
            EngineError: a graph ONNX Runtime cannot load or run.
        """
        from tqdm import tqdm

        names, notes = self.select(job)
        config = job.config
        with contextlib.ExitStack() as stack:
            runners = [stack.enter_context(r) for r in self._runners(job, names)]
            self._check_shapes(job, runners)
            self._check_outputs(job, runners)
            per_batch = len(runners) * (config.warmup_iters + (config.iters or 0))
            total = per_batch * len(config.batches) if config.iters is not None else None
            measurements: list[Measurement] = []
            with tqdm(total=total, desc="bench", unit="it", disable=_progress_disabled(job), leave=False) as bar:
                for batch in config.batches:
                    bar.set_postfix_str(f"batch {batch}")
                    samples = measure(runners, job.inputs[batch], warmup_iters=config.warmup_iters,
                                      iters=config.iters, duration_s=config.duration_s,
                                      round_iters=config.round_iters, tick=lambda: bar.update(1))
                    measurements += [self._record(job, r, batch, samples[r.name]) for r in runners]
            accuracy = self._accuracy(job, runners)
        for runner in runners:
            note = _placement_note(runner) if isinstance(runner, OrtRunner) else None
            if note:
                notes.append(note)
        comparisons = [(a, b) for a, b in (("fp32", "int8"), ("eager", "int8"), ("eager", "fp32"))
                       if a in names and b in names]
        return BackendResult(measurements, comparisons, accuracy, None, notes)

    def _record(self, job: BenchJob, runner: Runner, batch: int, samples: np.ndarray) -> Measurement:
        if isinstance(runner, OrtRunner):
            graph: str | None = runner.name
            size: int | None = job.bundle.graphs[runner.name].bytes
        else:
            graph = None
            size = job.bundle.checkpoint.stat().st_size if job.bundle.checkpoint is not None else None
        return Measurement(
            name=runner.name, label=_label(runner), graph=graph, runtime=runner.runtime,
            precision_requested=runner.precision_requested, precision_ran=runner.precision_ran, batch=batch,
            samples_ms=samples, model_bytes=size, info=runner.info(),
        )

    def _accuracy(self, job: BenchJob, runners: list[Runner]) -> dict[str, dict[str, Any]]:
        data = job.eval_data
        if data is None or not data.labelled:
            return {}
        batch = max(job.config.batches)
        fixed = {r.name: isinstance(r, OrtRunner) and isinstance(r.input_shape()[0], int) for r in runners}
        return {r.name: top1(r.infer, data, batch, fixed_batch=fixed[r.name]) for r in runners}


def _progress_disabled(job: BenchJob) -> bool | None:
    # tqdm's disable=None means "only on a terminal".
    return None if job.show_progress is None else not job.show_progress
