"""Reading the device's answer.

The results document is validated before use, then turned into the bench's measurements and comparisons.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ...errors import RemoteError
from .ssh import _Completed

DEVICE_SCHEMA = "sqakd-edge.device-results"
DEVICE_SCHEMA_VERSION = 1


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
    for key in ("platform", "graphs"):
        if not isinstance(document.get(key, {}), dict):
            return f"{key} is {type(document[key]).__name__}, not an object"
    comparisons = document.get("comparisons", [])
    if not isinstance(comparisons, list):
        return f"comparisons is {type(comparisons).__name__}, not a list"
    for i, comparison in enumerate(comparisons):
        if not isinstance(comparison, dict):
            return f"comparisons[{i}] is {type(comparison).__name__}, not an object"
        others = comparison.get("others", [])
        if not isinstance(others, list):
            return f"comparisons[{i}].others is {type(others).__name__}, not a list"
        for entry in [comparison.get("headline"), *others]:
            if entry is None:
                continue
            if not isinstance(entry, dict) or not all(
                    isinstance(entry.get(k), list) and len(entry[k]) == 2 and all(isinstance(x, str) for x in entry[k])
                    for k in ("baseline", "candidate")):
                return f"comparisons[{i}] has an entry without [graph, precision] baseline and candidate"
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


def _ran(run: dict[str, Any]) -> str:
    """A plain precision for what ran: INT8 only when the inspector saw INT8 layers (or ORT ran the QDQ graph)."""
    requested = run["precision"]
    counts = (run.get("layers") or {}).get("by_precision") or {}
    if run.get("runtime") != "tensorrt" or not counts:
        return requested
    if requested == "int8":
        return "int8" if "INT8" in counts else ("fp16" if "FP16" in counts else "fp32")
    if requested == "fp16":
        return "fp16" if "FP16" in counts else "fp32"
    return "fp32"


def measurements_from_document(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The device's successful runs as plain measurement records (the fields of ``bench.backend.Measurement``)."""
    out = []
    for run in document.get("runs", []):
        if run.get("status") != "ok" or (run["graph"], run["precision"]) not in _KEYS:
            continue
        key, suffix = _KEYS[(run["graph"], run["precision"])]
        ran = _ran(run)
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
        info = {k: run[k] for k in ("layers", "io_api", "power", "max_abs_diff_vs_fp32", "top1_agreement_vs_fp32")
                if k in run}
        info["device_precision_ran"] = run.get("precision_ran")
        if engine:
            info["engine"] = {k: engine.get(k) for k in ("cache_hit", "build_s", "bytes", "cache_key")}
        out.append({
            "name": key, "label": label, "graph": run["graph"], "runtime": runtime,
            "precision_requested": run["precision"], "precision_ran": ran, "batch": int(run["batch"]),
            "samples_ms": list(latency.get("end_to_end") or []), "model_bytes": engine.get("bytes"),
            "info": info, "extra_samples_ms": extra,
        })
    return out


def comparisons_from_document(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(baseline, candidate) measurement keys the device's headline and reference comparisons name."""
    pairs: list[tuple[str, str]] = []
    for comparison in document.get("comparisons", [])[:1]:
        for entry in [comparison.get("headline"), *comparison.get("others", [])]:
            if not entry:
                continue
            base, cand = _KEYS.get(tuple(entry["baseline"])), _KEYS.get(tuple(entry["candidate"]))
            if base and cand and (base[0], cand[0]) not in pairs:
                pairs.append((base[0], cand[0]))
    return pairs
