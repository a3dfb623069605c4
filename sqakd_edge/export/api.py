"""``export_checkpoint``: a trained checkpoint becomes ``model.fp32.onnx``, ``model.int8.onnx`` and a manifest.

A short pipeline over one input record (:class:`ExportInputs`): check the models, open the parity data,
run each graph's step (``graphs.int8_graph``, ``fp32_graph``, ``fp16_graph``: build, check, lint, parity,
accuracy, all alike), then write the graphs and the typed manifest (:class:`~sqakd_edge.manifest.Manifest`)
atomically (a temp directory beside the target, renamed into place), so a failure at any step leaves nothing
half-written.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..atomic import atomic_write_text
from ..config import ExportConfig, InputContract, QuantConfig, target_rules, to_dict
from ..errors import CheckpointError, ConfigError, ExportError, first_line
from ..hashing import file_sha256
from ..manifest import FP16_FILE, FP32_FILE, GRAPHS, INT8_FILE, MANIFEST_FILE, InputSpec, Manifest
from .graphs import GraphResult, bias_rounding_note  # noqa: F401  (bias_rounding_note: the demo's summary)
from .inputs import ParityData

__all__ = ["FP16_FILE", "FP32_FILE", "INT8_FILE", "MANIFEST_FILE", "ExportConfig", "ExportInputs", "ExportResult",
           "export_checkpoint", "export_model"]


@dataclass(frozen=True)
class ExportInputs:
    """What is exported: the models, what they are, and where they came from.

    Args:
        model_meta: ``{name, num_classes, in_channels, input_size[, input_shape, source, builder_sha256]}``.
        student: the fake-quant student (quantizers initialised), or None for a float-only export.
        float_model: the float model for ``model.fp32.onnx``; None: the student with its quantizers off.
        float_source: what ``float_model`` is (``teacher``; ``student-float`` is set automatically).
        quant: the student's QuantConfig (for the manifest).
        contract: the model's input contract (shape, mean, std); parity data is converted to it. None:
            ``model_meta``'s square input, and the dataset's own statistics.
        mean: input normalisation mean (manifest); None: the contract's, else the dataset's.
        std: input normalisation std (manifest); None: the contract's, else the dataset's.
        checkpoint: the exported checkpoint (``file``, ``sha256``), for the manifest.
        teacher: the teacher checkpoint behind ``float_model`` (``file``, ``sha256``), for the manifest.
    """

    model_meta: dict[str, Any]
    student: nn.Module | None = None
    float_model: nn.Module | None = None
    float_source: str = "teacher"
    quant: QuantConfig | None = None
    contract: InputContract | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    checkpoint: dict[str, Any] | None = None
    teacher: dict[str, Any] | None = None


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


def export_model(inputs: ExportInputs, out_dir: str | Path, config: ExportConfig = ExportConfig(), *,
                 data: str | None = None, data_fallbacks: tuple[str, ...] = (), parity_data: ParityData | None = None,
                 force: bool = False, log: Callable[[str], None] = print) -> ExportResult:
    """Export models already in memory (what :func:`export_checkpoint` calls after loading).

    Args:
        inputs: the models and what they are.
        out_dir: the export directory to write.
        config: what to write and how strictly to check it.
        data: a dataset spec for parity (must open), or None.
        data_fallbacks: specs to try when ``data`` is None.
        parity_data: inputs to use for parity instead of opening ``data``.
        force: replace a non-empty ``out_dir``.
        log: where progress lines go.

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
        return _pipeline(inputs, Path(out_dir), config, data, data_fallbacks, parity_data, force, log)
    finally:
        torch.set_num_threads(threads)


class _Laps:
    """Seconds per export stage, for the manifest."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = round(self.timings.get(stage, 0.0) + now - self.last, 3)
        self.last = now


def _pipeline(inputs: ExportInputs, out: Path, config: ExportConfig, data: str | None,
              data_fallbacks: tuple[str, ...], parity_data: ParityData | None, force: bool,
              log: Callable[[str], None]) -> ExportResult:
    from .graphs import fp16_graph, fp32_graph, int8_graph
    from .inputs import load_parity_data
    from .parity import ParityThresholds

    start = time.perf_counter()
    parent = _prepare_out(out, force)
    student, float_model, float_source, shape, contract = _checked_models(inputs, config)
    lap = _Laps()
    lap("load_models")
    pdata = parity_data or load_parity_data(data, config.parity_samples, shape[1:], fallbacks=data_fallbacks,
                                            contract=contract)
    lap("load_data")
    if pdata.note:
        log(f"note: {pdata.note}")
    example = torch.zeros(shape)
    thresholds = ParityThresholds(config.min_top1_off, config.min_top1_on)
    results: list[GraphResult] = []
    if config.int8:
        assert student is not None
        results.append(int8_graph(student, config, example, pdata, thresholds, inputs.quant, lap, log))
    fp32 = fp32_graph(float_model, float_source, config, example, pdata, thresholds, lap)
    results.insert(0, fp32)
    if target_rules(config.target).fp16_graph:
        fp16 = fp16_graph(float_model, float_source, config, example, fp32, pdata, log)
        if fp16 is not None:
            results.insert(1, fp16)
        lap("fp16_export_parity")
    by_key = {r.key: r for r in results}

    parity: dict[str, Any] = {"samples": int(len(pdata.inputs)), "data": pdata.describe(),
                              "thresholds": {"min_top1_off": config.min_top1_off, "min_top1_on": config.min_top1_on}}
    accuracy: dict[str, Any] = {}
    for key in ("int8", "fp32", "fp16"):
        if key in by_key:
            parity[key] = by_key[key].parity
            if by_key[key].accuracy:
                accuracy[key] = by_key[key].accuracy
    if pdata.labels is not None:
        accuracy["data"] = f"{pdata.name} ({pdata.split} split): top-1 on the parity inputs"
    parity["passed"] = all(parity[k]["passed"] for k in GRAPHS if k in parity)
    lines = [line for r in results for line in r.lines]
    mean = inputs.mean or (contract.mean if contract is not None else None) or pdata.mean
    std = inputs.std or (contract.std if contract is not None else None) or pdata.std
    manifest = Manifest(
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        model={k: inputs.model_meta[k] for k in ("name", "source", "num_classes", "in_channels", "input_size",
                                                 "input_shape", "builder_sha256") if k in inputs.model_meta},
        input=InputSpec("input", (shape[1], shape[2], shape[3]), tuple(mean) if mean else None,
                        tuple(std) if std else None),
        target=config.target, opset=config.opset, graphs={r.key: r.entry for r in results},
        quant=to_dict(inputs.quant) if inputs.quant is not None else None,
        data={"spec": pdata.spec, "name": pdata.name}, parity=parity, accuracy=accuracy or None,
        versions=_versions(), timings_s=lap.timings, checkpoint=inputs.checkpoint, teacher=inputs.teacher,
    )
    for line in lines:
        log(line)
    if not parity["passed"] and config.fail_on_parity_miss:
        missed = [f"{g} ({lvl})" for g in GRAPHS if g in parity for lvl in ("off", "on")
                  if not parity[g][lvl]["passed"]]
        explained = "int8" in by_key and by_key["int8"].explained_miss
        summary = "; ".join(lines[-2:]) if explained else lines[-1]
        raise ExportError(f"parity below threshold for {', '.join(missed)}: {summary}; nothing was written "
                          "(pass --no-parity-fail to write it anyway, marked as failed in the manifest, or change "
                          "--min-top1-off/--min-top1-on)")
    document = _write(out, parent, results, manifest)
    seconds = time.perf_counter() - start
    log(f"wrote {out} in {seconds:.1f} s ({', '.join(sorted(r.entry['file'] for r in results))}, {MANIFEST_FILE})")
    return ExportResult(out, document, seconds, lines)


def _checked_models(inputs: ExportInputs, config: ExportConfig
                    ) -> tuple[nn.Module | None, nn.Module, str, tuple[int, int, int, int], InputContract | None]:
    """The student and float model in eval mode, checked against the input shape; the shape and contract."""
    from ..quant import to_float, uninitialized_quantizers

    student, meta, contract = inputs.student, inputs.model_meta, inputs.contract
    if config.int8 and student is None:
        raise ConfigError("--int8 needs a quantized student checkpoint")
    name, classes = str(meta["name"]), int(meta["num_classes"])
    if config.input_shape is not None:
        shape = config.input_shape
    elif contract is not None:
        shape = (1, *contract.shape)
    else:
        shape = (1, int(meta["in_channels"]), int(meta["input_size"]), int(meta["input_size"]))
    if contract is not None and tuple(shape[1:]) != contract.shape:
        contract = InputContract(shape[1], shape[2], shape[3], contract.mean, contract.std) \
            if shape[1] == contract.channels else None
    float_model, float_source = inputs.float_model, inputs.float_source
    if float_model is None:
        if student is None:
            raise ConfigError("nothing to export: pass a student or a float model")
        float_model, float_source = to_float(student), "student-float"
    float_model = float_model.eval()
    _check_input_shape(float_model, shape, classes, name)
    if student is not None:
        student = student.eval()
        cold = uninitialized_quantizers(student, among=_reached_quantizers(student))
        if cold:  # a forward pass here would set their ranges from whatever input it saw
            raise ExportError(f"the student's quantizers are not initialised ({cold[0]} and {len(cold) - 1} more); "
                              "run one batch of real data through it first (checkpoints from 'sqakd-edge train' "
                              "always are)")
        _check_input_shape(student, shape, classes, name)
    return student, float_model, float_source, shape, contract


def _write(out: Path, parent: Path, results: list[GraphResult], manifest: Manifest) -> dict[str, Any]:
    """The graphs and ``manifest.json`` into a temp folder beside ``out``, then renamed into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the export is an ordinary folder
        for r in results:
            path = tmp / r.entry["file"]
            path.write_bytes(r.data)
            r.entry.update({"sha256": file_sha256(path), "bytes": len(r.data)})
        document = manifest.to_dict()
        atomic_write_text(tmp / MANIFEST_FILE, _json(document))
        _commit(tmp, out)
    except OSError as exc:  # a full disk, a quota: one line; the old export (if any) is untouched
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"cannot write the export next to {out} ({exc.strerror or exc}); nothing was written "
                          "and an earlier export there is kept: free space and run it again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return document


def _json(document: dict[str, Any]) -> str:
    import json

    return json.dumps(document, indent=2) + "\n"


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
    from ..checkpoint import build_model_from_checkpoint, load_checkpoint, quant_config_of
    from ..models.resolve import contract_of

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
    inputs = ExportInputs(model_meta=meta, student=model if is_student else None, float_model=float_model,
                          float_source=source, quant=quant, contract=contract, mean=mean, std=std,
                          checkpoint=provenance["checkpoint"], teacher=provenance.get("teacher"))
    return export_model(inputs, out_dir, config, data=data, data_fallbacks=fallbacks, force=force, log=log)
