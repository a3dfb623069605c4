#!/usr/bin/env python3
"""sqakd-edge device program: build and time TensorRT engines on a Jetson (or any NVIDIA GPU).

Runs on JetPack 4.6 (Python 3.6, TensorRT 8.2.1, numpy, pycuda) through TensorRT 10.x; imports nothing
from the sqakd_edge package, only the stdlib, numpy and its sibling modules here, and tensorrt/pycuda/
cuda-python/onnx/onnxruntime lazily. Shipped to the device by ``sqakd-edge bench --device ...``.

Commands::

    trt_bench.py bench --graph fp32=model.fp32.onnx --graph int8=model.int8.onnx [--batch 1] ...
    trt_bench.py build MODEL.onnx --precision fp16 --out model.engine
    trt_bench.py platform

``bench`` prints exactly one JSON document (schema ``sqakd-edge.device-results``, version 1) on stdout;
progress goes to stderr. The Nano rule: when TensorRT says the GPU has no fast INT8
(``platform_has_fast_int8`` is False), the QDQ graph is reported as not buildable in INT8 with TensorRT's
own reason, nothing is labelled INT8, and the comparison is FP32 vs FP16 (from the FP32 graph and from
the student with its Q/DQ stripped). When ``tensorrt`` cannot be imported, ``bench`` times the graphs with
ONNX Runtime on the CPU instead and says so (``"runtime": "onnxruntime-fallback"``).
"""

import argparse
import datetime
import json
import os
import sys
import time
import traceback

import numpy as np

if __package__:
    from . import cuda_mem, platform_info, trt_engine, trtexec_runner
else:  # run as a script on the device: the sibling modules sit next to this file
    import cuda_mem
    import platform_info
    import trt_engine
    import trtexec_runner

SCHEMA = "sqakd-edge.device-results"
SCHEMA_VERSION = 2  # 2: raw facts only (no statistics, no comparisons); the workstation derives those
PROGRAM_VERSION = "1"
GRAPH_ROLES = ("fp32", "int8", "int8-stripped", "fp16")
DEFAULT_CACHE = os.path.join("~", ".cache", "sqakd-edge", "engines")

SAMPLE_ROWS = 8  # rows of each engine's output on the timing inputs sent back (the workstation compares them)


def log(message):
    """Progress on stderr (stdout carries only the JSON document)."""
    sys.stderr.write("[trt_bench] %s\n" % message)
    sys.stderr.flush()


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path):
    with open(path, "rb") as fh:
        return trt_engine.sha256_bytes(fh.read())


def one_line(exc):
    text = str(exc).strip().splitlines()
    return "%s: %s" % (type(exc).__name__, text[-1] if text else "")


def where(exc):
    """``file.py:LINE in function`` of the innermost frame of an exception."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "no traceback"
    last = frames[-1]
    return "%s:%d in %s" % (os.path.basename(last[0]), last[1], last[2])


def first_line(exc):
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def log_median(samples):
    """The median of a list of milliseconds, for the device's own log line only.

    The device sends raw samples; every statistic in the results is computed on the workstation, by the code
    the local bench uses.
    """
    values = sorted(samples)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


def sample_output(output):
    """The first rows of an engine's output on the timing inputs, as ``{"shape", "values"}`` (raw facts)."""
    rows = np.array(output, dtype=np.float32, copy=False)
    rows = rows.reshape(rows.shape[0], -1)[:SAMPLE_ROWS]
    return {"shape": list(rows.shape), "values": [float(v) for v in rows.reshape(-1)]}


# --- graphs ---------------------------------------------------------------------------------------------


def input_shape_from_onnx_dims(dims, batch):
    """The concrete input shape for ``batch`` from ONNX/ORT dims (ints, names or None)."""
    shape = []
    for i, d in enumerate(dims):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif i == 0:
            shape.append(batch)
        else:
            raise ValueError("input dimension %d is dynamic (%r); only the batch may be" % (i, d))
    return tuple(shape)


def prepare_graphs(graphs, work_dir, want_stripped):
    """Hash each graph, fold Identity initializers (with onnx, if installed), strip Q/DQ if asked.

    Returns ``{role: {"path", "sha256", ...notes}}``. The workstation already folds Identity nodes and
    ships the stripped student before upload; this is the safety net for graphs copied by hand.
    """
    try:
        import onnx  # noqa: F401
        if __package__:
            from . import onnx_prep
        else:
            import onnx_prep
    except ImportError as exc:
        onnx_prep = None
        missing = one_line(exc)
    prepared = {}
    for role, path in graphs.items():
        entry = {"file": os.path.basename(path), "source_sha256": sha256_file(path), "path": path}
        if onnx_prep is None:
            entry["identity_check"] = "skipped: onnx is not installed on the device (%s)" % missing
        else:
            import onnx

            model = onnx.load(path)
            found = onnx_prep.count_identity_before_qdq(model)
            entry["identity_before_qdq"] = found
            if found:
                entry["identity_folded"] = onnx_prep.fold_identity_initializers(model)
                out = os.path.join(work_dir, "%s.%s.folded.onnx" % (entry["source_sha256"][:16], role))
                trt_engine.write_atomic(out, model.SerializeToString())
                entry["path"] = out
        entry["sha256"] = sha256_file(entry["path"])
        prepared[role] = entry
    if want_stripped and "int8" in prepared and "int8-stripped" not in prepared:
        if onnx_prep is None:
            log("no stripped student graph given and onnx is missing here: FP16 of the student is skipped")
        else:
            out = os.path.join(work_dir, "%s.int8-stripped.onnx" % prepared["int8"]["sha256"][:16])
            done = onnx_prep.prepare_file(prepared["int8"]["path"], out + ".tmp", strip=True)
            os.replace(out + ".tmp", out)
            prepared["int8-stripped"] = {"file": os.path.basename(out), "path": out, "sha256": sha256_file(out),
                                         "stripped_on_device": done.get("qdq_stripped")}
    return prepared


def plan_runs(roles, runtime, fast_int8, strongly_typed=False):
    """The (graph role, precision, why not run) triples, in the order they are timed.

    ``strongly_typed`` (TensorRT 11): no builder precision flags, so FP16 comes only from the FP16 graph
    (``fp16`` role, export's ``model.fp16.onnx``), never from the FP32 graph.
    """
    runs = []
    if runtime in ("tensorrt", "trtexec"):
        if "fp32" in roles:
            runs.append(("fp32", "fp32", None))
            if strongly_typed:
                if "fp16" in roles:
                    runs.append(("fp16", "fp16", None))
                else:
                    runs.append(("fp32", "fp16", "TensorRT 11 builds FP16 only from an FP16 graph (export writes "
                                                 "model.fp16.onnx); none was given"))
            else:
                runs.append(("fp32", "fp16", None))
        if "int8" in roles:
            runs.append(("int8", "int8", "no-fast-int8" if fast_int8 is False else None))
            # without fast INT8 (or, with trtexec, when the GPU cannot be asked: None, and the workstation
            # shipped the stripped student because the profile has no INT8) the student runs stripped too;
            # trtexec's INT8 attempt then gives TensorRT's own answer
            if fast_int8 is not True and "int8-stripped" in roles and not strongly_typed:
                runs += [("int8-stripped", "fp32", None), ("int8-stripped", "fp16", None)]
    else:
        if "fp32" in roles:
            why = "FP16 needs TensorRT; the ONNX Runtime CPU fallback runs FP32 and QDQ graphs only"
            runs += [("fp32", "fp32", None), ("fp32", "fp16", why)]
        if "int8" in roles:
            runs.append(("int8", "int8", None))
    return runs


# --- the two runtimes -----------------------------------------------------------------------------------


def outputs_on(infer, inputs, batch):
    """The model's outputs on every row of ``inputs``, ``batch`` rows at a time (the last chunk zero-padded).

    Returned as ``{"shape": [N, K], "values": [...]}`` (float32 values as JSON numbers): the workstation
    compares them with ONNX Runtime and PyTorch on the same inputs (three-way parity).
    """
    rows = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start:start + batch]
        padded = chunk if len(chunk) == batch else np.concatenate(
            [chunk, np.zeros((batch - len(chunk),) + chunk.shape[1:], chunk.dtype)])
        rows.append(np.array(infer(padded), dtype=np.float32, copy=True).reshape(batch, -1)[:len(chunk)])
    out = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
    return {"shape": list(out.shape), "values": [float(v) for v in out.reshape(-1)]}


def load_inputs(path):
    """The parity inputs the workstation sent: a float32 N x C x H x W ``.npy`` (never pickled objects)."""
    if path is None:
        return None
    data = np.load(path, allow_pickle=False)
    if data.dtype != np.float32 or data.ndim != 4:
        raise SystemExit("error: --inputs must be a float32 N x C x H x W .npy, got %s %s" % (data.dtype,
                                                                                            data.shape))
    return data


def onnxruntime_timer(path, precision, batch, warmup, seed, inputs=None):
    """A timer (see :func:`run_rounds`) for one graph on ONNX Runtime's CPU kernels (the fallback)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = input_shape_from_onnx_dims(inp.shape, batch)
    data = np.random.RandomState(seed).standard_normal(shape).astype(np.float32)
    feed = {inp.name: data}
    for _ in range(warmup):
        out = session.run(None, feed)
    samples = []
    n = yield
    while n:
        for _ in range(n):
            start = time.perf_counter()
            out = session.run(None, feed)
            samples.append((time.perf_counter() - start) * 1000.0)
        n = yield
    result = {"runtime": "onnxruntime", "input_shape": list(shape),
              "latency_ms": {"end_to_end": samples, "gpu_compute": None}, "output": out[0]}
    if inputs is not None:
        result["outputs"] = outputs_on(lambda x: session.run(None, {inp.name: x})[0], inputs, shape[0])
    return result


def cache_settings(trt, platform, precision, batch, workspace_mib):
    """Everything besides the graph and TensorRT that a cached engine depends on (see engine_cache_key)."""
    gpu, cuda = platform.get("gpu") or {}, platform.get("cuda") or {}
    settings = {"program": PROGRAM_VERSION, "gpu_name": gpu.get("name"),
                "compute_capability": gpu.get("compute_capability"), "cuda_runtime": cuda.get("runtime"),
                "cuda_driver": cuda.get("driver"), "l4t": platform.get("l4t"), "jetpack": platform.get("jetpack"),
                "precision": precision, "batch": batch, "workspace_mib": workspace_mib}
    settings.update(trt_engine.builder_settings(trt, precision))
    return settings


def read_build_record(path):
    """The build record stored beside a cached engine, or None when missing or not one of ours."""
    try:
        with open(path) as fh:
            record = json.load(fh)
    except (IOError, OSError, ValueError):
        return None
    shape = record.get("input", {}).get("shape") if isinstance(record, dict) else None
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0 for d in shape)):
        return None
    return record


def build_or_load(trt, path, sha, precision, batch, workspace_mib, cache_dir, platform, logger):
    """An engine from the cache, or a fresh build written to it atomically, with its build record beside it.

    The record (``KEY.json``, written after the engine) keeps the input shape and the builder's branches,
    so a cached engine needs nothing but TensorRT; without it the shape is read from the engine itself.
    """
    key = trt_engine.engine_cache_key(sha, trt.__version__, cache_settings(trt, platform, precision, batch,
                                                                           workspace_mib))
    engine_path = os.path.join(cache_dir, key + ".engine")
    record_path = os.path.join(cache_dir, key + ".json")
    info = {"file": engine_path, "cache_key": key}
    if os.path.exists(engine_path):
        with open(engine_path, "rb") as fh:
            data = fh.read()
        record = read_build_record(record_path)
        info.update({"cache_hit": True, "build_s": 0.0, "bytes": len(data)})
        if record is not None:
            info["build"] = record
        return data, info
    gpu = platform.get("gpu") or {}
    timing = os.path.join(cache_dir, "timing-%s-%s.cache" % (trt.__version__, gpu.get("compute_capability")))
    with open(path, "rb") as fh:
        onnx_bytes = fh.read()
    start = time.time()
    data, build_info = trt_engine.build_engine_bytes(trt, onnx_bytes, precision, batch, workspace_mib, timing, logger)
    build_info["build_s"] = round(time.time() - start, 3)
    trt_engine.write_atomic(engine_path, data)
    trt_engine.write_atomic(record_path, json.dumps(build_info, sort_keys=True).encode("utf-8"))
    info.update({"cache_hit": False, "build_s": build_info["build_s"], "bytes": len(data), "build": build_info})
    return data, info


def tensorrt_timer(trt, cuda, engine_bytes, input_shape, warmup, seed, logger, requested, tegrastats,
                   batch=1, inputs=None):
    """A timer (see :func:`run_rounds`) for one engine: CUDA-event latencies, per-layer precision, power.

    ``input_shape`` None: the engine's own input shape (its dynamic batch set to ``batch``).
    """
    with trt_engine.TrtRunner(trt, cuda, engine_bytes, input_shape, logger, batch=batch) as runner:
        input_shape = runner.input_shape
        data = np.random.RandomState(seed).standard_normal(input_shape).astype(np.float32)
        runner.set_input(data)
        events = [cuda.event() for _ in range(4)]
        for _ in range(warmup):
            runner.infer_timed(events)
        sampler = platform_info.TegrastatsSampler() if tegrastats else None
        gpu, e2e = [], []
        n = yield
        if sampler:
            sampler.__enter__()
        try:
            while n:
                for _ in range(n):
                    g, e = runner.infer_timed(events)
                    gpu.append(g)
                    e2e.append(e)
                n = yield
        finally:
            if sampler:
                sampler.__exit__(None, None, None)
        try:
            layers = trt_engine.summarize_layers(runner.layer_info_json(), requested)
        except Exception as exc:  # inspector output is diagnostic; never lose the timings for it
            layers = {"error": one_line(exc)}
        result = {"runtime": "tensorrt", "input_shape": list(input_shape), "io_api": runner.io_api,
                  "latency_ms": {"end_to_end": e2e, "gpu_compute": gpu}, "layers": layers,
                  "output": np.array(runner.output(), copy=True)}
        if inputs is not None:
            def infer(x):
                runner.set_input(x)
                runner.infer_timed(events)
                return runner.output()

            result["outputs"] = outputs_on(infer, inputs, input_shape[0])
        if sampler:
            result["power"] = sampler.summary()
        return result


def whole_timer(measure):
    """A timer for a runner that cannot be interleaved (trtexec times in its own process): all at the end."""
    n = yield
    while n:
        n = yield
    return measure()


def round_sizes(iters, rounds):
    """``iters`` split into ``rounds`` near-equal chunks (the rounds that alternate between engines)."""
    rounds = max(1, min(rounds, iters))
    return [iters // rounds + (1 if i < iters % rounds else 0) for i in range(rounds)]


def run_rounds(timers, iters, rounds):
    """Time every engine in alternating rounds, so a drift of clocks or temperature hits all of them alike.

    ``timers``: ``{key: generator}``; each generator sets up and warms up on its first ``next()``, times ``n``
    iterations on each ``send(n)``, and returns its result on ``send(0)``. Returns ``({key: result},
    {key: exception})``: one failing engine does not stop the others.
    """
    results, errors, active = {}, {}, {}
    for key, timer in timers.items():
        try:
            next(timer)
            active[key] = timer
        except StopIteration as stop:
            results[key] = stop.value
        except Exception as exc:  # noqa: BLE001 (reported per run)
            errors[key] = exc
    for size in round_sizes(iters, rounds):
        for key in list(active):
            try:
                active[key].send(size)
            except Exception as exc:  # noqa: BLE001
                errors[key] = exc
                del active[key]
    for key, timer in active.items():
        try:
            timer.send(0)
            errors[key] = RuntimeError("the timer did not finish")
        except StopIteration as stop:
            results[key] = stop.value
        except Exception as exc:  # noqa: BLE001
            errors[key] = exc
    return results, errors


def time_trtexec(trtexec, version, path, sha, precision, batch, args, platform, requested):
    """Build (or load the cached engine) and time one graph with NVIDIA's trtexec (no CUDA binding needed).

    The facts come from trtexec's own JSON exports (per-inference times, per-layer information); the
    precision counts as verified only when trtexec could export the layer information.
    """
    name, chw = parse_input_spec(args.input)
    settings = {"runner": "trtexec", "program": PROGRAM_VERSION, "precision": precision, "batch": batch,
                "workspace_mib": args.workspace_mib, "l4t": platform.get("l4t"), "jetpack": platform.get("jetpack"),
                "strongly_typed": tuple(version[:2]) >= (11, 0)}
    key = trt_engine.engine_cache_key(sha, "%d.%d.%d" % tuple(version[:3]), settings)
    engine_path = os.path.join(args.cache_dir, key + ".engine")
    facts = trtexec_runner.bench_with_trtexec(
        trtexec, path, precision, args.cache_dir, engine_path, version, batch=batch, input_name=name,
        input_shape=[batch] + chw if chw else None, warmup=args.warmup, iterations=args.iters,
        workspace_mib=args.workspace_mib,
        timing_cache=os.path.join(args.cache_dir, "timing-trtexec-%d.%d.%d.cache" % tuple(version[:3])))
    layer_info = facts.get("layer_info")
    if layer_info:
        layers = trt_engine.summarize_layers(json.dumps(layer_info), requested)
    else:
        layers = {"error": facts.get("layer_info_unavailable") or "trtexec exported no layer information"}
    latency = facts.get("latency_ms") or {}
    if not latency.get("end_to_end"):
        raise trtexec_runner.TrtexecError("trtexec reported no timings for %s" % os.path.basename(path))
    result = {"runtime": "trtexec", "input_shape": [batch] + chw if chw else None, "layers": layers,
              "trtexec": dict((k, facts.get(k)) for k in ("trtexec", "tensorrt_version", "argv", "log_tail")),
              "engine": {"file": engine_path, "cache_key": key, "cache_hit": facts.get("cache_hit"),
                         "build_s": facts.get("build_s"), "bytes": os.path.getsize(engine_path)},
              "latency_ms": {"end_to_end": list(latency["end_to_end"]),
                             "gpu_compute": list(latency.get("gpu_compute") or []) or None}}
    return result


def parse_input_spec(text):
    """``"input:1x28x28"`` -> ``("input", [1, 28, 28])`` (the per-image shape); None -> ``(None, None)``."""
    if not text:
        return None, None
    name, sep, dims = text.rpartition(":")
    try:
        chw = [int(d) for d in dims.split("x")]
    except ValueError:
        chw = []
    if not sep or not name or not chw or any(d < 1 for d in chw):
        raise SystemExit("error: --input takes NAME:CxHxW (e.g. input:3x224x224), got %r" % text)
    return name, chw


def int8_not_buildable_reason(trt, path, batch, workspace_mib, logger):
    """TensorRT's own reason a QDQ graph cannot be built in INT8 on a GPU without fast INT8."""
    with open(path, "rb") as fh:
        onnx_bytes = fh.read()
    try:
        trt_engine.build_engine_bytes(trt, onnx_bytes, "int8", batch, workspace_mib, None, logger)
    except trt_engine.EngineBuildError as exc:
        return str(exc)
    return ("TensorRT built the QDQ graph, but platform_has_fast_int8 is False: without INT8 hardware it would "
            "not run in INT8, so it is not timed or labelled INT8")


# --- bench ----------------------------------------------------------------------------------------------


def choose_runtime(requested, cuda_choice="auto"):
    """``(runtime, trt module or None, cuda backend or None, why)``: the first runtime that works here.

    Python TensorRT with a CUDA binding, else NVIDIA's ``trtexec`` (needs neither pycuda nor cuda-python),
    else ONNX Runtime on the CPU. ``why`` says why the earlier choices were passed over (None: the first).
    """
    if requested == "onnxruntime":
        return "onnxruntime-fallback", None, None, "ONNX Runtime was asked for (--runtime onnxruntime)"
    reasons = []
    if requested in ("auto", "tensorrt"):
        try:
            import tensorrt as trt
            trt_engine.check_supported(trt)
            cuda = cuda_mem.load_backend(cuda_choice)
            return "tensorrt", trt, cuda, None
        except ImportError as exc:
            reasons.append("tensorrt is not importable (%s); on a Jetson it comes with JetPack "
                           "(python3-libnvinfer)" % one_line(exc))
        except (trt_engine.UnsupportedTensorRT, cuda_mem.CudaUnavailable) as exc:
            reasons.append(one_line(exc))
        if requested == "tensorrt":
            raise SystemExit("error: " + reasons[-1])
    if requested in ("auto", "trtexec"):
        found = trtexec_runner.find_trtexec()
        if found:
            return "trtexec", None, None, "; ".join(reasons) or None
        reasons.append("no trtexec binary (looked on PATH and at %s)" % trtexec_runner.JETPACK_TRTEXEC)
        if requested == "trtexec":
            raise SystemExit("error: " + reasons[-1])
    return "onnxruntime-fallback", None, None, "; ".join(reasons)


def _failed(run, runtime, exc):
    status = "failed"
    if runtime == "trtexec" and run["precision"] == "int8" and "Int8 support" in str(exc):
        status = "not-buildable"  # TensorRT's own words: the GPU has no INT8 (the Nano)
    run.update({"status": status, "reason": one_line(exc)})
    log("%s graph, %s failed: %s" % (run["graph"], run["precision"].upper(), run["reason"]))


def bench(args):
    """Run the plan and return the results document (a dict)."""
    graphs = {}
    for spec in args.graph:
        role, sep, path = spec.partition("=")
        if not sep or role not in GRAPH_ROLES:
            raise SystemExit("error: --graph takes ROLE=PATH with ROLE one of %s, got %r"
                             % (", ".join(GRAPH_ROLES), spec))
        if not os.path.isfile(path):
            raise SystemExit("error: graph file %s does not exist" % path)
        graphs[role] = path
    if not graphs:
        raise SystemExit("error: give at least one --graph ROLE=PATH")
    cache_dir = os.path.abspath(os.path.expanduser(args.cache_dir))
    if not os.path.isdir(cache_dir):
        os.makedirs(cache_dir)

    inputs = load_inputs(args.inputs)
    runtime, trt, cuda, fallback_reason = choose_runtime(args.runtime, args.cuda)
    platform = platform_info.base_report()
    platform.update({"tensorrt": None, "fast_int8": None, "fast_fp16": None, "gpu": None, "cuda": None})
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "program": {"name": "trt_bench.py",
           "version": PROGRAM_VERSION}, "created": utc_now(), "runtime": runtime,
           "fallback_reason": fallback_reason, "platform": platform,
           "settings": {"batches": args.batch, "warmup": args.warmup, "iters": args.iters,
                        "workspace_mib": args.workspace_mib, "tegrastats": bool(args.tegrastats),
                        "seed": args.seed, "cache_dir": cache_dir,
                        "parity_inputs": 0 if inputs is None else int(len(inputs))},
           "graphs": {}, "runs": [], "notes": []}

    logger = None
    fast_int8 = None
    trtexec = trtexec_version = None
    if trt is not None:
        logger = trt_engine.make_logger(trt)
        platform["tensorrt"] = str(trt.__version__)
        described = cuda.describe()
        platform["gpu"] = {"name": described["gpu_name"], "compute_capability": described["compute_capability"]}
        platform["cuda"] = {"runtime": described["cuda_runtime"], "driver": described["cuda_driver"],
                            "binding": described["backend"]}
        flags = trt_engine.platform_flags(trt, logger, described["compute_capability"])
        platform.update({"fast_int8": flags["fast_int8"], "fast_fp16": flags["fast_fp16"],
                         "fast_precisions_source": flags["source"]})
        fast_int8 = platform["fast_int8"]
        log("TensorRT %s on %s (sm %s), fast INT8: %s, fast FP16: %s" % (
            trt.__version__, described["gpu_name"], described["compute_capability"], fast_int8,
            platform["fast_fp16"]))
    elif runtime == "trtexec":
        trtexec = trtexec_runner.find_trtexec()
        trtexec_version = trtexec_runner.trtexec_version(trtexec)
        platform["tensorrt"] = "%d.%d.%d" % tuple(trtexec_version[:3])
        platform["trtexec"] = trtexec
        # trtexec cannot say whether the GPU has fast INT8: the INT8 build is tried, and TensorRT's refusal
        # (the Nano's "require hardware with Int8 support") is reported as not buildable
        log("runtime: %s (TensorRT %s): %s" % (trtexec, platform["tensorrt"], fallback_reason))
    else:
        log("runtime: ONNX Runtime on the CPU (%s)" % fallback_reason)
    on_gpu = runtime in ("tensorrt", "trtexec")
    strongly_typed = (trt is not None and trt_engine.is_strongly_typed(trt)) or (
        runtime == "trtexec" and tuple(trtexec_version[:2]) >= (11, 0))

    prepared = prepare_graphs(graphs, cache_dir, want_stripped=(on_gpu and fast_int8 is False))
    doc["graphs"] = dict((role, dict((k, v) for k, v in entry.items() if k != "path"))
                         for role, entry in prepared.items())
    plan = plan_runs(prepared, runtime if on_gpu else "onnxruntime", fast_int8, strongly_typed)
    int8_reason = None
    rounds = 1 if args.tegrastats else args.rounds  # power needs one steady stretch per engine
    doc["settings"]["rounds"] = rounds if runtime != "trtexec" else 1
    try:
        for batch in args.batch:
            timers, runs_by_key = {}, {}
            for index, (role, precision, skip) in enumerate(plan):
                run = {"graph": role, "precision": precision, "batch": batch, "status": "ok", "reason": None}
                doc["runs"].append(run)
                path = prepared[role]["path"]
                if skip == "no-fast-int8":
                    if int8_reason is None:  # TensorRT's reason does not depend on the batch size
                        int8_reason = int8_not_buildable_reason(trt, path, batch, args.workspace_mib, logger)
                        log("%s graph, INT8: not buildable on this device (%s)" % (role, int8_reason))
                    run.update({"status": "not-buildable", "reason": int8_reason})
                    continue
                if skip:
                    run.update({"status": "skipped", "reason": skip})
                    continue
                log("batch %d, %s graph, %s: %s" % (batch, role, precision.upper(),
                                                     "building/loading engine" if on_gpu else "preparing"))
                parity_inputs = inputs if batch == args.batch[0] else None  # outputs once per graph
                try:
                    if runtime == "trtexec":
                        timer = whole_timer(lambda path=path, role=role, precision=precision, batch=batch:
                                            time_trtexec(trtexec, trtexec_version, path, prepared[role]["sha256"],
                                                         precision, batch, args, platform, precision))
                    elif trt is None:
                        timer = onnxruntime_timer(path, precision, batch, args.warmup, args.seed, parity_inputs)
                    else:
                        engine_bytes, engine_info = build_or_load(
                            trt, path, prepared[role]["sha256"], precision, batch, args.workspace_mib, cache_dir,
                            platform, logger)
                        run["engine"] = engine_info
                        shape = engine_info.get("build", {}).get("input", {}).get("shape")
                        timer = tensorrt_timer(trt, cuda, engine_bytes, shape, args.warmup, args.seed, logger,
                                               precision, args.tegrastats, batch, parity_inputs)
                except Exception as exc:  # one failed build must not lose the others
                    _failed(run, runtime, exc)
                    continue
                timers[index], runs_by_key[index] = timer, run
            sizes = round_sizes(args.iters, rounds)
            log("batch %d: timing %d engine(s) in %d alternating round(s) of %s iterations" % (
                batch, len(timers), len(sizes), "/".join(str(n) for n in sizes)))
            results, errors = run_rounds(timers, args.iters, rounds)
            for index, exc in errors.items():
                _failed(runs_by_key[index], runtime, exc)
            for index in sorted(results):
                run, result = runs_by_key[index], results[index]
                if "engine" in result:
                    run["engine"] = result.pop("engine")
                output = result.pop("output", None)  # trtexec returns no outputs
                if output is not None:
                    run["sample_output"] = sample_output(output)
                run.update(result)
                log("batch %d, %s graph, %s: median %.3f ms end to end" % (
                    batch, run["graph"], run["precision"].upper(), log_median(result["latency_ms"]["end_to_end"])))
    finally:
        if cuda is not None:
            cuda.close()
    if runtime == "trtexec" and any(r["graph"] == "int8" for r in doc["runs"]):
        fast_int8 = not any(r["graph"] == "int8" and r["status"] == "not-buildable" for r in doc["runs"])
        platform["fast_int8"] = fast_int8
        platform["fast_precisions_source"] = "whether trtexec could build the QDQ graph in INT8"
    return doc


# --- build / platform commands --------------------------------------------------------------------------


def build_command(args):
    import tensorrt as trt

    with open(args.model, "rb") as fh:
        onnx_bytes = fh.read()
    logger = trt_engine.make_logger(trt)
    data, info = trt_engine.build_engine_bytes(trt, onnx_bytes, args.precision, args.batch, args.workspace_mib,
                                               args.timing_cache, logger)
    trt_engine.write_atomic(args.out, data)
    info.update({"engine": os.path.abspath(args.out), "bytes": len(data)})
    return info


def platform_command(args):
    report = platform_info.base_report()
    try:
        import tensorrt as trt
    except ImportError as exc:
        report["tensorrt"] = None
        report["tensorrt_error"] = one_line(exc)
        return report
    report["tensorrt"] = str(trt.__version__)
    report.update(trt_engine.platform_flags(trt))
    return report


def parse_batches(text):
    """``"1,32"`` -> ``[1, 32]`` (argparse type)."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(b < 1 for b in sizes):
        raise argparse.ArgumentTypeError("batch sizes are positive integers separated by commas, got %r" % text)
    return sorted(set(sizes), key=sizes.index)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="trt_bench.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    b = sub.add_parser("bench", help="build (or load) and time engines; one JSON document on stdout")
    b.add_argument("--graph", action="append", default=[], metavar="ROLE=PATH",
                   help="a graph to time; ROLE is fp32, int8 (QDQ) or int8-stripped")
    b.add_argument("--batch", type=parse_batches, default=[1], help="batch sizes, comma-separated (e.g. 1,32)")
    b.add_argument("--warmup", type=int, default=20)
    b.add_argument("--iters", type=int, default=200)
    b.add_argument("--rounds", type=int, default=5,
                   help="alternating rounds the iterations are split into, engine after engine (1: one block each)")
    b.add_argument("--workspace-mib", type=int, default=trt_engine.DEFAULT_WORKSPACE_MIB)
    b.add_argument("--cache-dir", default=DEFAULT_CACHE, help="engine and timing cache folder")
    b.add_argument("--runtime", choices=("auto", "tensorrt", "trtexec", "onnxruntime"), default="auto")
    b.add_argument("--cuda", choices=("auto", "pycuda", "cuda-python"), default="auto")
    b.add_argument("--tegrastats", action="store_true", help="sample board power with tegrastats while timing")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--input", default=None, metavar="NAME:CxHxW",
                   help="the graphs' input name and per-image shape (trtexec needs them for a dynamic batch)")
    b.add_argument("--inputs", default=None, metavar="NPY",
                   help="float32 N x C x H x W inputs: each graph's outputs on them are returned (parity)")
    c = sub.add_parser("build", help="build one engine file")
    c.add_argument("model")
    c.add_argument("--precision", choices=trt_engine.PRECISIONS, default="fp16")
    c.add_argument("--out", required=True)
    c.add_argument("--batch", type=int, default=1)
    c.add_argument("--workspace-mib", type=int, default=trt_engine.DEFAULT_WORKSPACE_MIB)
    c.add_argument("--timing-cache", default=None)
    sub.add_parser("platform", help="report the platform as JSON")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command: bench, build or platform")
    if args.command == "bench" and (args.iters < 1 or args.warmup < 0 or args.rounds < 1):
        parser.error("--iters and --rounds must be >= 1 and --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    commands = {"bench": bench, "build": build_command, "platform": platform_command}
    try:
        doc = commands[args.command](args)
    except (trt_engine.EngineBuildError, trt_engine.UnsupportedTensorRT, cuda_mem.CudaUnavailable,
            trtexec_runner.TrtexecError) as exc:
        sys.stderr.write("error: %s\n" % first_line(exc))
        return 2
    except SystemExit:
        raise
    except Exception as exc:  # one line with where it happened; the traceback only when asked for
        if os.environ.get("SQAKD_EDGE_DEBUG"):
            traceback.print_exc()
        sys.stderr.write("error: the device program failed: %s (%s); rerun with SQAKD_EDGE_DEBUG=1 for the "
                         "traceback\n" % (one_line(exc), where(exc)))
        return 1
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
