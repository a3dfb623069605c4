"""Reading the device's answer.

The device program sends raw facts: latency samples, per-layer precision counts, build records, the first
rows of each engine's output. The document is validated before use; then everything derived from it (what
precision really ran, which pairs are compared, agreement with the FP32 engine, the notes) is derived here,
once, and its statistics by the code the local bench uses.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ...errors import RemoteError
from .ssh import _Completed

DEVICE_SCHEMA = "sqakd-edge.device-results"
DEVICE_SCHEMA_VERSION = 2

NANO_NOTE = ("This device has no fast INT8 (TensorRT reports platform_has_fast_int8 = False, as on the Jetson "
             "Nano), so the INT8 (QDQ) graph cannot be built here and nothing is reported as INT8; the "
             "comparison is FP32 vs FP16, from the FP32 graph and from the student with its Q/DQ stripped "
             "(trained weights kept).")
FALLBACK_NOTE = ("TensorRT is not importable on the device, so these timings are ONNX Runtime on the device's CPU, "
                 "not TensorRT on its GPU; they test the transport and the device program, not the device's speed.")
_GPU_RUNTIMES = ("tensorrt", "trtexec")


def _parse_document(done: _Completed, where: str) -> dict[str, Any]:
    text = done.stdout.decode("utf-8", "replace").strip()
    if done.rc != 0:
        # a signal shows as 128+N from the remote shell, or as ssh's own 255 when ssh reports the signal
        cause = "was killed" if done.rc > 128 or done.rc < 0 else f"exited with status {done.rc}"
        raise RemoteError(f"the device program on {where} {cause} before finishing: {done.last_error}")
    try:
        document = json.loads(text.splitlines()[-1]) if text else None
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise RemoteError(f"the device program on {where} returned no complete results (its output was cut off); "
                          "nothing was written locally")
    if document.get("schema") != DEVICE_SCHEMA or document.get("schema_version") != DEVICE_SCHEMA_VERSION:
        raise RemoteError(f"the device program on {where} answered with schema {document.get('schema')!r} version "
                          f"{document.get('schema_version')!r}, not {DEVICE_SCHEMA} v{DEVICE_SCHEMA_VERSION}; "
                          "clear ~/.cache/sqakd-edge on the device and re-run")
    problem = document_problem(document)
    if problem:
        raise RemoteError(f"the device program on {where} returned an invalid document ({problem}); nothing was "
                          "written locally: clear ~/.cache/sqakd-edge on the device and re-run")
    return document


def _samples_problem(value: Any, where: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, list) or (required and not value):
        return f"{where} is {type(value).__name__}, not a list of milliseconds"
    for i, sample in enumerate(value):
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not math.isfinite(sample) \
                or sample <= 0:
            return f"{where}[{i}] is {sample!r}, not a positive finite number of milliseconds"
    return None


def _rows_problem(value: Any, where: str) -> str | None:
    if value is None:
        return None
    shape = value.get("shape") if isinstance(value, dict) else None
    values = value.get("values") if isinstance(value, dict) else None
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) and d >= 0 for d in shape)
            and isinstance(values, list) and len(values) == shape[0] * shape[1]):
        return f"{where} is not {{shape: [rows, classes], values: rows x classes numbers}}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return f"{where} holds a value that is not a finite number"
    return None


def document_problem(document: dict[str, Any]) -> str | None:
    """The first thing in a device document that the workstation cannot use, else None.

    What a device sends back is checked before any of it is used: types, required fields, and latencies that
    are positive finite numbers (a stand-in program in the tests sends each malformed answer).
    """
    runs = document.get("runs")
    if not isinstance(runs, list):
        return f"runs is {type(runs).__name__}, not a list"
    for i, run in enumerate(runs):
        at = f"runs[{i}]"
        if not isinstance(run, dict):
            return f"{at} is {type(run).__name__}, not an object"
        for key in ("graph", "precision", "status"):
            if not isinstance(run.get(key), str):
                return f"{at}.{key} is {run.get(key)!r}, not text"
        batch = run.get("batch")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            return f"{at}.batch is {batch!r}, not a positive integer"
        if run["status"] != "ok":
            continue
        latency = run.get("latency_ms")
        if not isinstance(latency, dict):
            return f"{at}.latency_ms is {type(latency).__name__}, not an object"
        problem = (_samples_problem(latency.get("end_to_end"), f"{at}.latency_ms.end_to_end", True)
                   or _samples_problem(latency.get("gpu_compute"), f"{at}.latency_ms.gpu_compute", False))
        if problem:
            return problem
        for key in ("layers", "engine", "power"):
            if key in run and run[key] is not None and not isinstance(run[key], dict):
                return f"{at}.{key} is {type(run[key]).__name__}, not an object"
        problem = _rows_problem(run.get("sample_output"), f"{at}.sample_output")
        if problem:
            return problem
    for key in ("platform", "graphs"):
        if not isinstance(document.get(key, {}), dict):
            return f"{key} is {type(document[key]).__name__}, not an object"
    if not isinstance(document.get("notes", []), list):
        return f"notes is {type(document['notes']).__name__}, not a list"
    return None


# --- turning the device document into bench measurements --------------------------------------------------

# (graph role, precision) -> (measurement key, label suffix)
_KEYS = {
    ("fp32", "fp32"): ("fp32", ""),
    ("fp32", "fp16"): ("fp16", ""),
    ("int8", "int8"): ("int8", ""),
    ("int8-stripped", "fp32"): ("student-fp32", " (student, Q/DQ stripped)"),
    ("int8-stripped", "fp16"): ("student-fp16", " (student, Q/DQ stripped)"),
}


def precision_ran(run: dict[str, Any]) -> str:
    """What an engine really ran in: INT8 only where the per-layer report shows INT8 layers.

    TensorRT (Python or trtexec) may run a requested precision's layers in another one; its per-layer report
    says. Without that report a non-FP32 request is ``unverified``, never labelled as requested. ONNX
    Runtime on the device's CPU runs the graph as given (a QDQ graph on its integer kernels).
    """
    requested = run["precision"]
    if run.get("runtime") not in _GPU_RUNTIMES:
        return requested
    counts = (run.get("layers") or {}).get("by_precision") or {}
    if not counts:
        return "fp32" if requested == "fp32" else "unverified"
    if requested == "int8":
        return "int8" if "INT8" in counts else ("fp16" if "FP16" in counts else "fp32")
    if requested == "fp16":
        return "fp16" if "FP16" in counts else "fp32"
    return "fp32"


def _sample_rows(run: dict[str, Any]) -> Any:
    sample = run.get("sample_output")
    if not sample or not sample["shape"][0]:
        return None
    import numpy as np

    return np.asarray(sample["values"], dtype=np.float64).reshape(sample["shape"])


def _versus_fp32(run: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, Any] | None:
    """Top-1 agreement and max |Δ| of an engine's sample rows with the FP32 engine's, on the same inputs."""
    if reference is None or reference is run:
        return None
    mine, theirs = _sample_rows(run), _sample_rows(reference)
    if mine is None or theirs is None or mine.shape != theirs.shape:
        return None
    return {"rows": int(mine.shape[0]), "max_abs_diff": float(abs(mine - theirs).max()),
            "top1_agreement": float((mine.argmax(1) == theirs.argmax(1)).mean())}


def measurements_from_document(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The device's successful runs as plain measurement records (the fields of ``bench.backend.Measurement``)."""
    out = []
    runs = document.get("runs", [])
    fp32_at = {r["batch"]: r for r in runs if r["status"] == "ok" and (r["graph"], r["precision"]) == ("fp32", "fp32")}
    for run in runs:
        if run.get("status") != "ok" or (run["graph"], run["precision"]) not in _KEYS:
            continue
        key, suffix = _KEYS[(run["graph"], run["precision"])]
        ran = precision_ran(run)
        runtime = run.get("runtime", "tensorrt")
        short = "TRT" if runtime == "tensorrt" else "ORT"
        label = f"{short} {ran.upper()}{suffix}"
        if ran != run["precision"]:
            label += f" ({run['precision'].upper()} requested)"
        if runtime != "tensorrt":
            label += " on the device CPU"
        latency = run.get("latency_ms") or {}
        extra = {"gpu_compute": list(latency["gpu_compute"])} if latency.get("gpu_compute") else {}
        engine = run.get("engine") or {}
        info = {k: run[k] for k in ("layers", "io_api", "power") if k in run}
        versus = _versus_fp32(run, fp32_at.get(run["batch"]))
        if versus is not None:
            info["vs_fp32_engine"] = versus
        if engine:
            info["engine"] = {k: engine.get(k) for k in ("cache_hit", "build_s", "bytes", "cache_key")}
        out.append({
            "name": key, "label": label, "graph": run["graph"], "runtime": runtime,
            "precision_requested": run["precision"], "precision_ran": ran, "batch": int(run["batch"]),
            "samples_ms": list(latency.get("end_to_end") or []), "model_bytes": engine.get("bytes"),
            "info": info, "extra_samples_ms": extra,
        })
    return out


def _on_gpu_without_int8(document: dict[str, Any]) -> bool:
    return document.get("runtime") in _GPU_RUNTIMES and (document.get("platform") or {}).get("fast_int8") is False


def comparisons_from_document(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(baseline, candidate) measurement keys to compare, headline first.

    INT8 vs FP32 where the device has INT8; on a GPU without fast INT8 (the Nano) FP16 vs FP32, from the FP32
    graph and from the student with its Q/DQ stripped; FP16 vs FP32 as a reference wherever TensorRT ran.
    """
    if _on_gpu_without_int8(document):
        return [("fp32", "fp16"), ("student-fp32", "student-fp16")]
    pairs = [("fp32", "int8")]
    if document.get("runtime") in _GPU_RUNTIMES:
        pairs.append(("fp32", "fp16"))
    return pairs


def notes_from_document(document: dict[str, Any]) -> list[str]:
    """The device's own notes, and what its runtime means for the comparison (the Nano rule, the CPU fallback)."""
    notes = [str(n) for n in document.get("notes", [])]
    if _on_gpu_without_int8(document):
        notes.append(NANO_NOTE)
    elif document.get("runtime") not in _GPU_RUNTIMES:
        notes.append(FALLBACK_NOTE)
    return notes
