"""The results document (``results.json``): schema ``sqakd-edge.bench-results``, version 1.

One document per bench run, the same for a local run and a device run; the README's "Bench
results" section documents every field (the table there mirrors :data:`FIELDS`). A reader checks
``schema`` and ``schema_version`` before anything else; fields may be added in later versions
without bumping it, fields are never removed or changed in meaning without bumping it.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

from .backend import BackendResult, BenchJob, Measurement
from .stats import speedup, summarize

SCHEMA = "sqakd-edge.bench-results"
SCHEMA_VERSION = 1
SPEEDUP_METHOD = "ratio of median latencies; percentile bootstrap over both samples"

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))
_OPT_DICT = (dict, type(None))

# path -> (allowed types, description). "[]" marks every element of a list.
FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "schema": ((str,), "always `sqakd-edge.bench-results`"),
    "schema_version": ((int,), "1"),
    "created": ((str,), "UTC time the run finished, ISO 8601"),
    "command": ((list, type(None)), "the command line (argument list) when run from the CLI"),
    "options": ((dict, type(None)), "the resolved CLI options ({bench: {...}}): --config results.json repeats the run"),
    "export": ((dict,), "what was measured: the export directory"),
    "export.dir": ((str,), "absolute path of the export directory"),
    "export.manifest_sha256": ((str,), "hash of its manifest.json"),
    "export.model": ((dict,), "the manifest's model block (name, num_classes, in_channels, input_size)"),
    "export.target": (_OPT_STR, "the export target (`tensorrt` or `onnxruntime`)"),
    "export.input_shape": ((list,), "[C, H, W] of one image"),
    "export.graphs": ((dict,), "per graph key: file, bytes, sha256"),
    "export.checkpoint": (_OPT_STR, "the checkpoint the graphs came from, as the manifest names it"),
    "settings": ((dict,), "how it was measured"),
    "settings.device": ((str,), "`local` or a device name (e.g. `jetson-nano`)"),
    "settings.batches": ((list,), "batch sizes"),
    "settings.threads": ((int,), "intra-op CPU threads (ONNX Runtime, PyTorch)"),
    "settings.warmup_iters": ((int,), "untimed iterations per model and batch"),
    "settings.iters": ((int, type(None)), "timed iterations per model and batch (null with a duration)"),
    "settings.duration_s": (_OPT_NUM, "seconds of timed rounds per batch size (null with iters)"),
    "settings.round_iters": ((int,), "iterations a model runs before the next one takes its turn"),
    "settings.seed": ((int,), "seed of the random inputs and of the bootstrap"),
    "settings.inputs": ((str,), "`random-normal` or `data`"),
    "settings.data": (_OPT_STR, "the dataset spec given with --data"),
    "settings.data_limit": ((int, type(None)), "cap on images used for accuracy"),
    "environment": ((dict,), "the machine that ran the command (CPU, ISA flags, OS, versions, git commit)"),
    "environment.cpu": ((dict,), "model, architecture, logical/physical cores, isa {flag: bool}"),
    "environment.os": ((str,), "platform string"),
    "environment.python": ((str,), "Python version"),
    "environment.versions": ((dict,), "sqakd_edge, numpy, onnxruntime, onnx, torch (null if absent)"),
    "environment.git_commit": (_OPT_STR, "commit of the sqakd-edge checkout, null when installed"),
    "environment.threads": ((int,), "threads used"),
    "environment.load_average": ((list, type(None)), "1/5/15-minute load average when the run finished"),
    "device": (_OPT_DICT, "null for a local run; filled by a device run (GPU, TensorRT, power mode, ...)"),
    "models": ((list,), "one entry per model that ran (graph x runtime x precision)"),
    "models[].name": ((str,), "key: `fp32`, `int8`, `eager` (a device may add e.g. `fp16`)"),
    "models[].label": ((str,), "what the report shows; built from the precision that ran"),
    "models[].graph": (_OPT_STR, "the export graph it came from; null for the eager model"),
    "models[].runtime": ((str,), "`onnxruntime`, `pytorch` or `tensorrt`"),
    "models[].precision_requested": ((str,), "precision asked for"),
    "models[].precision_ran": ((str,), "precision that ran (a fallback is never labelled int8)"),
    "models[].model_bytes": ((int, type(None)), "size on disk of the graph (eager: the checkpoint)"),
    "models[].accuracy": (_OPT_DICT, "{top1, correct, n} on --data's test split; null without labels"),
    "models[].info": ((dict,), "runtime details: provider, threads, layer placement counts"),
    "results": ((list,), "one entry per model and batch size"),
    "results[].name": ((str,), "the model's key (see models)"),
    "results[].label": ((str,), "as in models"),
    "results[].batch": ((int,), "images per iteration"),
    "results[].precision_requested": ((str,), "as in models"),
    "results[].precision_ran": ((str,), "as in models"),
    "results[].latency_ms": ((dict,), "n, median, p90, p99, mean, std, min, max, iqr (milliseconds per batch)"),
    "results[].throughput_ips": (_NUM, "images per second at the median latency"),
    "results[].noisy": ((bool,), "interquartile range above 25% of the median"),
    "results[].samples_ms": ((list,), "every timed iteration's latency in run order"),
    "results[].extra_samples_ms": ((dict,), "further series, e.g. `gpu_compute` on a device"),
    "speedups": ((list,), "one entry per batch and (baseline, candidate) pair"),
    "speedups[].batch": ((int,), "batch size"),
    "speedups[].baseline": ((str,), "the slower reference's key (e.g. `fp32`)"),
    "speedups[].candidate": ((str,), "the contender's key (e.g. `int8`)"),
    "speedups[].ratio": (_NUM, "median(baseline) / median(candidate); > 1 means the candidate is faster"),
    "speedups[].ci95": ((list,), "[low, high] bootstrap 95% confidence interval of the ratio"),
    "speedups[].trustworthy": ((bool,), "false when < 20 iterations or the interval is wider than 20% of the ratio"),
    "speedups[].warning": (_OPT_STR, "why it is not trustworthy"),
    "speedups[].method": ((str,), "how the ratio and interval were computed"),
    "notes": ((list,), "sentences for the reader (skipped models, layer placement, fallbacks)"),
    "warnings": ((list,), "problems with the measurement itself (noise, untrustworthy ratios, fallbacks)"),
}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _latency(m: Measurement) -> tuple[dict[str, Any], float, bool]:
    stats = summarize(m.samples_ms, m.batch)
    latency = {"n": stats.n, "median": stats.median_ms, "p90": stats.p90_ms, "p99": stats.p99_ms,
               "mean": stats.mean_ms, "std": stats.std_ms, "min": stats.min_ms, "max": stats.max_ms,
               "iqr": stats.iqr_ms}
    return latency, stats.throughput_ips, stats.noisy


def build_results(
    job: BenchJob,
    outcome: BackendResult,
    *,
    device_name: str,
    environment: dict[str, Any],
    command: Sequence[str] | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the results document from a backend's measurements.

    Args:
        job: what was asked.
        outcome: what the backend measured.
        device_name: ``local`` or the device's name.
        environment: the host environment block.
        command: the command line, if any.
        options: the resolved CLI options by command (``{"bench": {...}}``), if any.

    Returns:
        The document (validates with :func:`validate_results`).
    """
    bundle, config = job.bundle, job.config
    warnings: list[str] = []
    models: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    by_key: dict[tuple[str, int], Measurement] = {}
    for m in outcome.measurements:
        by_key[(m.name, m.batch)] = m
        if m.name not in models:
            models[m.name] = {
                "name": m.name, "label": m.label, "graph": m.graph, "runtime": m.runtime,
                "precision_requested": m.precision_requested, "precision_ran": m.precision_ran,
                "model_bytes": m.model_bytes, "accuracy": outcome.accuracy.get(m.name), "info": m.info,
            }
            if m.precision_ran != m.precision_requested:
                warnings.append(f"{m.label}: {m.precision_requested} was requested but {m.precision_ran} ran; "
                                "its numbers describe the precision that ran")
        latency, throughput, noisy = _latency(m)
        if noisy:
            warnings.append(f"{m.label} at batch {m.batch}: latencies spread widely (IQR {latency['iqr']:.3g} ms "
                            f"on a median of {latency['median']:.3g} ms); was the machine busy?")
        results.append({
            "name": m.name, "label": m.label, "batch": m.batch, "precision_requested": m.precision_requested,
            "precision_ran": m.precision_ran, "latency_ms": latency, "throughput_ips": throughput, "noisy": noisy,
            "samples_ms": [round(float(x), 6) for x in m.samples_ms],
            "extra_samples_ms": {k: [float(x) for x in v] for k, v in m.extra_samples_ms.items()},
        })

    speedups: list[dict[str, Any]] = []
    for batch in config.batches:
        for base, cand in outcome.comparisons:
            if (base, batch) not in by_key or (cand, batch) not in by_key:
                continue
            s = speedup(by_key[(base, batch)].samples_ms, by_key[(cand, batch)].samples_ms, seed=config.seed)
            if s.warning:
                warnings.append(f"speed-up of {by_key[(cand, batch)].label} over {by_key[(base, batch)].label} at "
                                f"batch {batch}: {s.warning}")
            speedups.append({
                "batch": batch, "baseline": base, "candidate": cand, "ratio": s.ratio, "ci95": [s.ci_low, s.ci_high],
                "trustworthy": s.trustworthy, "warning": s.warning,
                "method": f"{SPEEDUP_METHOD} ({s.resamples} resamples, seed {s.seed})",
            })

    data = job.eval_data
    if data is not None and bundle.mean and (
        len(data.mean) != len(bundle.mean)
        or any(abs(a - b) > 1e-3 for a, b in zip(data.mean + data.std, bundle.mean + bundle.std, strict=True))
    ):
        warnings.append(f"dataset {data.spec!r} normalises with mean {list(data.mean)} / std {list(data.std)} but the "
                        f"model was exported for {list(bundle.mean)} / {list(bundle.std)}; accuracy may be off")
    manifest = bundle.manifest
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": _now(),
        "command": list(command) if command is not None else None,
        "options": options,
        "export": {
            "dir": str(bundle.directory),
            "manifest_sha256": bundle.manifest_sha256,
            "model": manifest.get("model", {}),
            "target": manifest.get("target"),
            "input_shape": list(bundle.input_shape),
            "graphs": {k: {"file": g.path.name, "bytes": g.bytes, "sha256": g.sha256}
                       for k, g in bundle.graphs.items()},
            "checkpoint": str(bundle.checkpoint) if bundle.checkpoint is not None else None,
        },
        "settings": {
            "device": device_name,
            "batches": list(config.batches),
            "threads": config.resolved_threads,
            "warmup_iters": config.warmup_iters,
            "iters": config.iters,
            "duration_s": config.duration_s,
            "round_iters": config.round_iters,
            "seed": config.seed,
            "inputs": "data" if data is not None else "random-normal",
            "data": config.data,
            "data_limit": config.data_limit,
        },
        "environment": environment,
        "device": outcome.device,
        "models": list(models.values()),
        "results": results,
        "speedups": speedups,
        "notes": list(outcome.notes),
        "warnings": warnings,
    }


def _values(document: Any, path: str) -> list[Any]:
    """Every value at ``path`` (``a.b``, ``list[].field``); missing keys raise KeyError."""
    values = [document]
    for part in path.split("."):
        many = part.endswith("[]")
        key = part[:-2] if many else part
        nxt: list[Any] = []
        for value in values:
            if not isinstance(value, dict) or key not in value:
                raise KeyError(path)
            nxt.extend(value[key] if many and isinstance(value[key], list) else [value[key]])
        values = nxt
    return values


def validate_results(document: Any) -> list[str]:
    """Check a results document against :data:`FIELDS`.

    Args:
        document: a parsed ``results.json``.

    Returns:
        The problems found, one sentence each; empty when the document is valid.
    """
    if not isinstance(document, dict):
        return ["the document is not a JSON object"]
    if document.get("schema") != SCHEMA or document.get("schema_version") != SCHEMA_VERSION:
        return [f"not a {SCHEMA} v{SCHEMA_VERSION} document"]
    problems = []
    for path, (types, _) in FIELDS.items():
        try:
            values = _values(document, path)
        except KeyError:
            problems.append(f"missing field {path}")
            continue
        for value in values:
            # bool is an int in Python; a count must not be a bool
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                expected = "/".join(t.__name__ for t in types)
                problems.append(f"{path} has type {type(value).__name__}, expected {expected}")
    return problems
