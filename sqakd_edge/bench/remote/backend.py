"""The ``bench --device NAME`` backend: checks, the run, and what the bench makes of it.

Graphs the device would misread are refused before upload; the run becomes the bench's measurements,
device block and notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...config import RemoteOptions
from ...errors import ConfigError, RemoteError
from .. import devices
from .document import comparisons_from_document, measurements_from_document, notes_from_document
from .run import DeviceRun, run_device_bench
from .ssh import Progress


def device_block(run: DeviceRun, target: devices.RemoteTarget) -> dict[str, Any]:
    """The results document's ``device`` block: a flat summary, and everything else under ``details``."""
    doc = run.document
    platform = doc.get("platform", {})
    gpu = platform.get("gpu") or {}
    mode = platform.get("nvpmodel") or {}
    not_run: list[str] = []
    for r in doc.get("runs", []):
        if r.get("status") != "ok":
            line = f"{r.get('graph')} graph in {str(r.get('precision')).upper()}: {r.get('status')} ({r.get('reason')})"
            if line not in not_run:
                not_run.append(line)
    return {
        "name": target.name,
        "profile": target.profile.name,
        "host": target.ssh.host,
        "port": target.ssh.port,
        "runtime": doc.get("runtime"),
        "fallback_reason": doc.get("fallback_reason"),
        "gpu": f"{gpu.get('name')} (sm {gpu.get('compute_capability')})" if gpu else None,
        "tensorrt": platform.get("tensorrt"),
        "jetpack": platform.get("jetpack"),
        "l4t": platform.get("l4t"),
        "power_mode": f"{mode.get('name')} ({mode.get('id')})" if mode else None,
        "fast_int8": platform.get("fast_int8"),
        "docker_image": target.docker_image,
        "not_run": not_run,
        "upload": f"{len(run.uploaded)} file(s) uploaded, {len(run.skipped)} already there",
        "details": {
            "platform": platform,
            "profile_expected": {"jetpack": target.profile.jetpack, "tensorrt": target.profile.tensorrt,
                                 "python": target.profile.python, "int8": target.profile.int8},
            "graphs": doc.get("graphs", {}),
            "prepared_on_workstation": run.prepared,
            "upload": {"cache": target.remote_cache, "uploaded": run.uploaded, "skipped": run.skipped},
            "setup": run.setup,
            "probe": {k: run.probe.get(k) for k in ("python", "python_executable", "machine", "modules")},
            "program": doc.get("program"),
            "device_results_schema": f"{doc.get('schema')} v{doc.get('schema_version')}",
        },
    }


def device_notes(run: DeviceRun, target: devices.RemoteTarget) -> list[str]:
    """Sentences for the report: the device's notes, refusals, and a mismatch with the profile."""
    doc = run.document
    notes = notes_from_document(doc)
    seen = set()
    for r in doc.get("runs", []):
        key = (r.get("graph"), r.get("precision"), r.get("status"))
        if r.get("status") in ("not-buildable", "failed") and key not in seen:
            seen.add(key)
            notes.append(f"{r['graph']} graph in {r['precision'].upper()}: {r['status']} on this device "
                         f"({r.get('reason')})")
    platform = doc.get("platform", {})
    if doc.get("runtime") == "tensorrt" and platform.get("fast_int8") is not None \
            and bool(platform["fast_int8"]) != target.profile.int8:
        notes.append(f"the device reports fast INT8 = {platform['fast_int8']}, but profile {target.profile.name} "
                     f"says {target.profile.int8}; the device's own answer was used")
    return notes


PARITY_MAX_INPUTS = 512  # real images sent with the job for the three-way parity (a few MB at 64x64)


def _agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {"top1_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
            "max_abs_dlogit": float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0}


def _local_references(job: Any, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX Runtime (CPU, optimisations off) on each exported graph, and the PyTorch models, on ``inputs``.

    Keys: ``ort:fp32``/``ort:int8``/``ort:fp16``, ``pytorch:float`` (the float model behind the FP32 graph)
    and ``pytorch:student`` (the fake-quant student, the reference of the INT8 graph), where available.
    """
    from ...export.parity import run as ort_run
    from ...export.parity import session

    used = {ort for ort, _ in _PARITY_REFERENCES.values()}
    refs: dict[str, np.ndarray] = {}
    for key, graph in job.bundle.graphs.items():
        if f"ort:{key}" in used:
            refs[f"ort:{key}"] = ort_run(session(graph.path.read_bytes(), "off"), inputs)
    manifest = job.bundle.manifest
    try:
        import torch

        from ...checkpoint import build_model_from_checkpoint, file_sha256, load_checkpoint
        from ...quant import to_float
    except ImportError:
        return refs

    def logits(model: Any) -> np.ndarray:
        with torch.no_grad():
            return model.eval()(torch.from_numpy(inputs)).numpy()

    sources = {"pytorch:student": manifest.get("checkpoint"), "pytorch:float": manifest.get("teacher")}
    for key, entry in sources.items():
        path = Path(entry["file"]) if isinstance(entry, dict) and entry.get("file") else None
        if path is None or not path.is_file() or file_sha256(path) != entry.get("sha256"):
            continue
        checkpoint = load_checkpoint(path)
        refs[key] = logits(build_model_from_checkpoint(checkpoint))
        if key == "pytorch:student" and manifest.get("teacher") is None:
            # no teacher exported: the FP32 graph is the student with its quantizers off
            refs["pytorch:float"] = logits(to_float(build_model_from_checkpoint(checkpoint)))
    return refs


# measurement key -> (ONNX Runtime reference, PyTorch reference)
_PARITY_REFERENCES = {"fp32": ("ort:fp32", "pytorch:float"), "fp16": ("ort:fp32", "pytorch:float"),
                      "int8": ("ort:int8", "pytorch:student"), "student-fp32": ("ort:int8", "pytorch:student"),
                      "student-fp16": ("ort:int8", "pytorch:student")}


def three_way_parity(document: dict[str, Any], job: Any, inputs: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per device measurement: top-1 agreement and max |Δlogit| with ONNX Runtime and PyTorch, and accuracy.

    The device ran each engine on the same real inputs and sent its outputs back; the references are
    computed here, on the workstation, with the code the local bench and export use. INT8 engines are
    compared with the INT8 graph on ONNX Runtime and the fake-quant student in PyTorch; FP32/FP16 with the
    FP32 graph and the float model. A device output of the wrong shape is reported, not compared.
    """
    from .document import _KEYS

    refs = _local_references(job, inputs)
    labels = job.eval_data.labels[: len(inputs)] if job.eval_data is not None and job.eval_data.labelled else None
    first_batch = min((r.get("batch", 0) for r in document.get("runs", []) if r.get("outputs")), default=None)
    result: dict[str, dict[str, Any]] = {}
    for run in document.get("runs", []):
        outputs = run.get("outputs")
        if run.get("status") != "ok" or not isinstance(outputs, dict) or run.get("batch") != first_batch:
            continue
        key = _KEYS.get((run.get("graph"), run.get("precision")), (None,))[0]
        if key is None:
            continue
        shape, values = outputs.get("shape"), outputs.get("values")
        if not (isinstance(shape, list) and isinstance(values, list) and len(shape) == 2
                and shape[0] == len(inputs) and shape[0] * shape[1] == len(values)):
            result[key] = {"error": f"the device returned outputs of shape {shape!r} for {len(inputs)} inputs"}
            continue
        engine = np.asarray(values, dtype=np.float64).reshape(shape)
        entry: dict[str, Any] = {"n": int(shape[0])}
        for side, ref_key in zip(("vs_onnxruntime", "vs_pytorch"), _PARITY_REFERENCES.get(key, (None, None)),
                                 strict=True):
            if ref_key in refs and refs[ref_key].shape == engine.shape:
                entry[side] = {"reference": ref_key, **_agreement(engine, refs[ref_key])}
        if labels is not None:
            correct = int((engine.argmax(1) == labels).sum())
            entry["accuracy"] = {"top1": correct / len(labels), "correct": correct, "n": int(len(labels))}
            for ref_key in {r for r in _PARITY_REFERENCES.get(key, ()) if r in refs}:
                entry.setdefault("reference_accuracy", {})[ref_key] = float(np.mean(refs[ref_key].argmax(1) == labels))
        result[key] = entry
    return result


def parity_line(label: str, entry: dict[str, Any]) -> str:
    """One sentence of the report: how the device's engine agrees with ONNX Runtime and PyTorch."""
    if "error" in entry:
        return f"{label}: parity not computed ({entry['error']})."
    parts = [f"{label} on the device, {entry['n']} real inputs"]
    for side, name in (("vs_onnxruntime", "ONNX Runtime"), ("vs_pytorch", "PyTorch")):
        if side in entry:
            parts.append(f"vs {name}: top-1 agreement {100 * entry[side]['top1_agreement']:.1f} %, max |Δlogit| "
                         f"{entry[side]['max_abs_dlogit']:.3g}")
    if "accuracy" in entry:
        parts.append(f"accuracy {100 * entry['accuracy']['top1']:.2f} %")
    return "; ".join(parts) + "."


def check_graphs_for_device(manifest: dict[str, Any], graphs: dict[str, Path],
                            profile: devices.DeviceProfile) -> None:
    """Refuse, before anything is uploaded, graphs the device's TensorRT would misread or reject.

    An INT8 graph exported for ONNX Runtime has uint8 Q/DQ: TensorRT 8.2 reads them without complaint and
    computes wrong values (clipped at 127), 10.x rejects them. The TensorRT lint (with the profile's highest
    opset: 13 for TensorRT 8.2) runs on every graph, and its errors stop the run.
    """
    from ...export.lint import lint_file

    target = manifest.get("target")
    if "int8" in graphs and target != "tensorrt":
        raise ConfigError(f"the INT8 graph was exported for {target or 'an unknown target'!r}, not TensorRT; "
                          f"{profile.name} runs TensorRT, which misreads such graphs: re-export with "
                          "'sqakd-edge export CHECKPOINT --int8 --target tensorrt'")
    for role, path in graphs.items():
        errors = [f for f in lint_file(path, "tensorrt", profile.max_onnx_opset) if f.severity == "error"]
        if errors:
            first = errors[0]
            raise ConfigError(f"{path.name} ({role}) would fail on {profile.name}'s TensorRT {profile.tensorrt}: "
                              f"{first.message} at {first.node} ({len(errors)} lint error(s)); {first.fix}")


class RemoteBackend:
    """The ``bench`` backend that runs the graphs on a device over SSH (see the module docstring).

    Args:
        target: the resolved device (and how to reach it).
        options: how to run there.
        progress: receives progress lines (default: print to stderr).
    """

    def __init__(self, target: devices.RemoteTarget, options: RemoteOptions,
                 progress: Progress | None = None) -> None:
        self.target = target
        self.options = options
        self.name = target.name
        self.progress = progress if progress is not None else _print_progress
        self.last_run: DeviceRun | None = None

    def run(self, job: Any) -> Any:
        """Time the job's graphs on the device and return a ``bench.backend.BackendResult``.

        Raises:
            ConfigError: settings the device path does not support (``--duration``, eager).
            RemoteError: any failure on the way to or on the device.
        """
        import numpy as np

        from ..backend import BackendResult, Measurement

        config = job.config
        if config.iters is None:
            raise ConfigError("--duration is not supported with a remote --device; give --iters N")
        data = job.eval_data
        inputs = data.images[:PARITY_MAX_INPUTS] if data is not None else None
        # the FP16 graph only where TensorRT builds FP16 from it alone (11.x, strongly typed); 8.x-10.x use the flag
        wanted = config.graphs or ("fp32", "int8", *(("fp16",) if "11." in self.target.profile.tensorrt else ()))
        if "eager" in wanted and config.graphs is not None:
            raise ConfigError("the PyTorch eager model runs only with --device local; choose --graphs fp32,int8")
        graphs = {k: g.path for k, g in job.bundle.graphs.items() if k in wanted}
        check_graphs_for_device(job.bundle.manifest, graphs, self.target.profile)
        run = run_device_bench(graphs, self.target, self.options, batches=config.batches,
                               warmup_iters=config.warmup_iters, iters=config.iters, seed=config.seed,
                               progress=self.progress, inputs=inputs,
                               input_spec=f"{job.bundle.input_name}:{'x'.join(map(str, job.bundle.input_shape))}")
        self.last_run = run
        measurements = [Measurement(**{**m, "samples_ms": np.asarray(m["samples_ms"], dtype=float)})
                        for m in measurements_from_document(run.document)]
        if not measurements:
            raise RemoteError(f"the device program on {self.target.ssh.where} timed nothing: "
                              + "; ".join(device_notes(run, self.target)))
        names = {m.name for m in measurements}
        comparisons = [p for p in comparisons_from_document(run.document) if p[0] in names and p[1] in names]
        accuracy: dict[str, dict[str, Any]] = {}
        notes = device_notes(run, self.target)
        if inputs is not None:
            parity = three_way_parity(run.document, job, inputs)
            for m in measurements:
                if m.name in parity:
                    m.info["parity"] = parity[m.name]
                    if parity[m.name].get("accuracy"):
                        accuracy[m.name] = parity[m.name]["accuracy"]
                    notes.append(parity_line(m.label, parity[m.name]))
        return BackendResult(measurements, comparisons, accuracy,
                             device_block(run, self.target), notes)


def _print_progress(line: str) -> None:
    import sys

    sys.stderr.write(f"  [device] {line}\n")
    sys.stderr.flush()


def make_backend(
    device: str,
    host: str | None = None,
    setup: bool = False,
    *,
    inventory: str | None = None,
    port: int | None = None,
    identity_file: str | None = None,
    known_hosts_file: str | None = None,
    accept_new_host_key: bool = False,
    remote_python: str | None = None,
    docker_image: str | None = None,
    tegrastats: bool = False,
    progress: Progress | None = None,
) -> RemoteBackend:
    """The hook ``sqakd-edge bench --device NAME`` calls: resolve the device and build its backend.

    Args:
        device: a profile name (with ``host``) or a device name from the inventory.
        host: ``USER@HOST`` or an ``~/.ssh/config`` alias.
        setup: set the power mode and clocks first (needs passwordless sudo; restored afterwards).
        inventory: an inventory file (default ``$SQAKD_EDGE_INVENTORY`` or ``~/.config/sqakd-edge/inventory.json``).
        port: SSH port (default: the inventory's, else ssh's).
        identity_file: SSH private key.
        known_hosts_file: a known_hosts file to use instead of ``~/.ssh/known_hosts``.
        accept_new_host_key: accept an unknown host key on first contact (never a changed one).
        remote_python: the device's interpreter (default: inventory, then profile: ``python3``).
        docker_image: run the device program in this image on the device.
        tegrastats: sample power while timing.
        progress: progress sink (default: stderr).

    Returns:
        The :class:`RemoteBackend`.

    Raises:
        ConfigError: unknown device, a profile without a host, a malformed host.
    """
    target = devices.resolve_device(device, host=host, inventory=inventory, port=port, identity_file=identity_file,
                                    known_hosts_file=known_hosts_file, accept_new_host_key=accept_new_host_key,
                                    remote_python=remote_python, docker_image=docker_image)
    return RemoteBackend(target, RemoteOptions(setup=setup, tegrastats=tegrastats), progress)
