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
import math
import os
import sys
import time
import traceback

import numpy as np

if __package__:
    from . import cuda_mem, platform_info, trt_engine
else:  # run as a script on the device: the sibling modules sit next to this file
    import cuda_mem
    import platform_info
    import trt_engine

SCHEMA = "sqakd-edge.device-results"
SCHEMA_VERSION = 1
PROGRAM_VERSION = "1"
GRAPH_ROLES = ("fp32", "int8", "int8-stripped")
DEFAULT_CACHE = os.path.join("~", ".cache", "sqakd-edge", "engines")

NANO_NOTE = ("This device has no fast INT8 (TensorRT reports platform_has_fast_int8 = False, as on the Jetson "
             "Nano), so the INT8 (QDQ) graph cannot be built here and nothing is reported as INT8; the "
             "comparison is FP32 vs FP16, from the FP32 graph and from the student with its Q/DQ stripped "
             "(trained weights kept).")
FALLBACK_NOTE = ("TensorRT is not importable on the device, so these timings are ONNX Runtime on the device's CPU, "
                 "not TensorRT on its GPU; they test the transport and the device program, not the device's speed.")


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


# --- statistics -----------------------------------------------------------------------------------------


def percentile(sorted_values, q):
    """Linear-interpolated percentile (numpy's default) of an already sorted list."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(samples):
    """median, p90, p99, mean, std, min, max of a list of milliseconds."""
    if not samples:
        return None
    values = sorted(samples)
    mean = sum(values) / float(len(values))
    var = sum((v - mean) ** 2 for v in values) / float(max(1, len(values) - 1))
    return {"n": len(values), "median": percentile(values, 50), "p90": percentile(values, 90),
            "p99": percentile(values, 99), "mean": mean, "std": math.sqrt(var), "min": values[0],
            "max": values[-1]}


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


def plan_runs(roles, runtime, fast_int8):
    """The (graph role, precision) pairs to run, and those reported as not run, with why."""
    runs = []
    if runtime == "tensorrt":
        if "fp32" in roles:
            runs += [("fp32", "fp32", None), ("fp32", "fp16", None)]
        if "int8" in roles:
            if fast_int8:
                runs.append(("int8", "int8", None))
            else:
                runs.append(("int8", "int8", "no-fast-int8"))
                if "int8-stripped" in roles:
                    runs += [("int8-stripped", "fp32", None), ("int8-stripped", "fp16", None)]
    else:
        if "fp32" in roles:
            why = "FP16 needs TensorRT; the ONNX Runtime CPU fallback runs FP32 and QDQ graphs only"
            runs += [("fp32", "fp32", None), ("fp32", "fp16", why)]
        if "int8" in roles:
            runs.append(("int8", "int8", None))
    return runs


# --- the two runtimes -----------------------------------------------------------------------------------


def time_onnxruntime(path, precision, batch, warmup, iters, seed):
    """Time one graph with ONNX Runtime on the CPU (the fallback when TensorRT is missing)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = input_shape_from_onnx_dims(inp.shape, batch)
    data = np.random.RandomState(seed).standard_normal(shape).astype(np.float32)
    feed = {inp.name: data}
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        out = session.run(None, feed)
        samples.append((time.perf_counter() - start) * 1000.0)
    ran = "int8 (QDQ on ONNX Runtime CPU kernels)" if precision == "int8" else "fp32"
    return {"runtime": "onnxruntime", "precision_ran": ran, "input_shape": list(shape),
            "latency_ms": {"end_to_end": samples, "gpu_compute": None}, "output": out[0]}


def build_or_load(trt, path, sha, precision, batch, workspace_mib, cache_dir, gpu, logger):
    """An engine from the cache, or a fresh build written to it atomically."""
    key = trt_engine.engine_cache_key(sha, trt, gpu.get("gpu_name"), gpu.get("compute_capability"), precision,
                                      batch, workspace_mib)
    engine_path = os.path.join(cache_dir, key + ".engine")
    info = {"file": engine_path, "cache_key": key}
    if os.path.exists(engine_path):
        with open(engine_path, "rb") as fh:
            data = fh.read()
        info.update({"cache_hit": True, "build_s": 0.0, "bytes": len(data)})
        return data, info
    timing = os.path.join(cache_dir, "timing-%s-%s.cache" % (trt.__version__, gpu.get("compute_capability")))
    with open(path, "rb") as fh:
        onnx_bytes = fh.read()
    start = time.time()
    data, build_info = trt_engine.build_engine_bytes(trt, onnx_bytes, precision, batch, workspace_mib, timing, logger)
    trt_engine.write_atomic(engine_path, data)
    info.update({"cache_hit": False, "build_s": round(time.time() - start, 3), "bytes": len(data),
                 "build": build_info})
    return data, info


def time_tensorrt(trt, cuda, engine_bytes, input_shape, warmup, iters, seed, logger, requested, tegrastats):
    """Time one engine with CUDA events; returns latencies, per-layer precision and optional power."""
    data = np.random.RandomState(seed).standard_normal(input_shape).astype(np.float32)
    with trt_engine.TrtRunner(trt, cuda, engine_bytes, input_shape, logger) as runner:
        runner.set_input(data)
        events = [cuda.event() for _ in range(4)]
        for _ in range(warmup):
            runner.infer_timed(events)
        sampler = platform_info.TegrastatsSampler() if tegrastats else None
        gpu, e2e = [], []
        if sampler:
            sampler.__enter__()
        try:
            for _ in range(iters):
                g, e = runner.infer_timed(events)
                gpu.append(g)
                e2e.append(e)
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
        if sampler:
            result["power"] = sampler.summary()
        return result


def precision_ran_from_layers(requested, layers):
    """What the engine actually ran in: the requested precision, or "mixed" with the counts."""
    counts = layers.get("by_precision") if isinstance(layers, dict) else None
    if not counts:
        return requested
    if set(counts) == {requested.upper()}:
        return requested
    if requested == "int8" and "INT8" not in counts:
        return "not int8: " + ", ".join("%s %d" % kv for kv in sorted(counts.items()))
    return "mixed: " + ", ".join("%s %d" % kv for kv in sorted(counts.items()))


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


def choose_runtime(requested):
    """(runtime, trt module or None, why the fallback)."""
    if requested == "onnxruntime":
        return "onnxruntime-fallback", None, "ONNX Runtime was asked for (--runtime onnxruntime)"
    try:
        import tensorrt as trt
    except ImportError as exc:
        if requested == "tensorrt":
            raise SystemExit("error: tensorrt is not importable here (%s); on a Jetson it comes with JetPack "
                             "(python3-libnvinfer)" % one_line(exc)) from exc
        return "onnxruntime-fallback", None, "tensorrt is not importable (%s)" % one_line(exc)
    return "tensorrt", trt, None


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

    runtime, trt, fallback_reason = choose_runtime(args.runtime)
    platform = platform_info.base_report()
    platform.update({"tensorrt": None, "fast_int8": None, "fast_fp16": None, "gpu": None, "cuda": None})
    doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "program": {"name": "trt_bench.py",
           "version": PROGRAM_VERSION}, "created": utc_now(), "runtime": runtime,
           "fallback_reason": fallback_reason, "platform": platform,
           "settings": {"batches": args.batch, "warmup": args.warmup, "iters": args.iters,
                        "workspace_mib": args.workspace_mib, "tegrastats": bool(args.tegrastats),
                        "seed": args.seed, "cache_dir": cache_dir},
           "graphs": {}, "runs": [], "comparisons": [], "notes": []}

    cuda = logger = None
    fast_int8 = None
    if trt is not None:
        logger = trt_engine.make_logger(trt)
        platform["tensorrt"] = str(trt.__version__)
        platform.update(trt_engine.platform_flags(trt, logger))
        fast_int8 = platform["fast_int8"]
        cuda = cuda_mem.load_backend(args.cuda)
        described = cuda.describe()
        platform["gpu"] = {"name": described["gpu_name"], "compute_capability": described["compute_capability"]}
        platform["cuda"] = {"runtime": described["cuda_runtime"], "driver": described["cuda_driver"],
                            "binding": described["backend"]}
        log("TensorRT %s on %s (sm %s), fast INT8: %s, fast FP16: %s" % (
            trt.__version__, described["gpu_name"], described["compute_capability"], fast_int8,
            platform["fast_fp16"]))
    else:
        log("runtime: ONNX Runtime on the CPU (%s)" % fallback_reason)
        doc["notes"].append(FALLBACK_NOTE)

    prepared = prepare_graphs(graphs, cache_dir, want_stripped=(trt is not None and not fast_int8))
    doc["graphs"] = dict((role, dict((k, v) for k, v in entry.items() if k != "path"))
                         for role, entry in prepared.items())
    plan = plan_runs(prepared, "tensorrt" if trt is not None else "onnxruntime", fast_int8)
    gpu = platform["gpu"] or {}
    int8_reason = None
    try:
        for batch in args.batch:
            reference = None
            for role, precision, skip in plan:
                run = {"graph": role, "precision": precision, "batch": batch, "status": "ok", "reason": None}
                doc["runs"].append(run)
                path = prepared[role]["path"]
                if skip == "no-fast-int8":
                    if int8_reason is None:  # TensorRT's reason does not depend on the batch size
                        int8_reason = int8_not_buildable_reason(trt, path, batch, args.workspace_mib, logger)
                        log("%s graph, INT8: not buildable on this device (%s)" % (role, int8_reason))
                    run.update({"status": "not-buildable", "reason": int8_reason, "precision_ran": None})
                    continue
                if skip:
                    run.update({"status": "skipped", "reason": skip, "precision_ran": None})
                    continue
                log("batch %d, %s graph, %s: %s" % (batch, role, precision.upper(),
                                                     "building/loading engine" if trt else "timing"))
                try:
                    if trt is None:
                        result = time_onnxruntime(path, precision, batch, args.warmup, args.iters, args.seed)
                    else:
                        engine_bytes, engine_info = build_or_load(
                            trt, path, prepared[role]["sha256"], precision, batch, args.workspace_mib, cache_dir,
                            {"gpu_name": gpu.get("name"), "compute_capability": gpu.get("compute_capability")}, logger)
                        run["engine"] = engine_info
                        shape = engine_info.get("build", {}).get("input", {}).get("shape")
                        if shape is None:
                            shape = input_shape_for(path, batch)
                        result = time_tensorrt(trt, cuda, engine_bytes, shape, args.warmup, args.iters, args.seed,
                                               logger, precision, args.tegrastats)
                        result["precision_ran"] = precision_ran_from_layers(precision, result["layers"])
                except Exception as exc:  # one failed run must not lose the others
                    run.update({"status": "failed", "reason": one_line(exc), "precision_ran": None})
                    log("%s graph, %s failed: %s" % (role, precision.upper(), run["reason"]))
                    continue
                output = result.pop("output")
                if reference is None and role == "fp32" and precision == "fp32":
                    reference = output
                if reference is not None and output.shape == reference.shape:
                    diff = np.abs(output.astype(np.float64) - reference)
                    run["max_abs_diff_vs_fp32"] = float(np.max(diff))
                    run["top1_agreement_vs_fp32"] = float(np.mean(np.argmax(output, -1) == np.argmax(reference, -1)))
                run.update(result)
                run["stats_ms"] = dict((k, summarize(v)) for k, v in result["latency_ms"].items() if v)
                median = run["stats_ms"]["end_to_end"]["median"]
                run["throughput_per_s"] = batch * 1000.0 / median if median else None
                log("batch %d, %s graph, %s: median %.3f ms end to end" % (batch, role, precision.upper(), median))
    finally:
        if cuda is not None:
            cuda.close()
    doc["comparisons"] = [compare([r for r in doc["runs"] if r["batch"] == b], trt is not None, fast_int8, b)
                          for b in args.batch]
    note = doc["comparisons"][0].get("note")
    if note and note not in doc["notes"]:
        doc["notes"].append(note)
    return doc


def input_shape_for(path, batch):
    """The input shape of a graph for ``batch`` (engine from cache: read the ONNX input dims)."""
    try:
        import onnx

        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]
    except ImportError as exc:
        raise RuntimeError("a cached engine needs its input shape; install onnx on the device or clear the "
                           "cache") from exc
    return input_shape_from_onnx_dims(dims, batch)


def _find(runs, graph, precision):
    for run in runs:
        if run["graph"] == graph and run["precision"] == precision and run["status"] == "ok":
            return run
    return None


def _pair(runs, baseline, candidate, label):
    base, cand = _find(runs, *baseline), _find(runs, *candidate)
    entry = {"label": label, "baseline": list(baseline), "candidate": list(candidate), "speedup_median": None}
    if base and cand:
        metric = "gpu_compute" if "gpu_compute" in base["stats_ms"] and "gpu_compute" in cand["stats_ms"] \
            else "end_to_end"
        entry["metric"] = metric
        entry["speedup_median"] = base["stats_ms"][metric]["median"] / cand["stats_ms"][metric]["median"]
    return entry


def compare(runs, on_tensorrt, fast_int8, batch):
    """The headline comparison at one batch size: INT8 vs FP32 where INT8 exists, else FP16 vs FP32 (Nano rule)."""
    if on_tensorrt and not fast_int8:
        pairs = [_pair(runs, ("fp32", "fp32"), ("fp32", "fp16"), "FP16 vs FP32 (FP32 graph)"),
                 _pair(runs, ("int8-stripped", "fp32"), ("int8-stripped", "fp16"),
                       "FP16 vs FP32 (student, Q/DQ stripped)")]
        return {"batch": batch, "headline": pairs[0], "others": pairs[1:], "note": NANO_NOTE}
    headline = _pair(runs, ("fp32", "fp32"), ("int8", "int8"), "INT8 vs FP32")
    others = [_pair(runs, ("fp32", "fp32"), ("fp32", "fp16"), "FP16 vs FP32 (reference)")] if on_tensorrt else []
    return {"batch": batch, "headline": headline, "others": others, "note": None if on_tensorrt else FALLBACK_NOTE}


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
    b.add_argument("--workspace-mib", type=int, default=trt_engine.DEFAULT_WORKSPACE_MIB)
    b.add_argument("--cache-dir", default=DEFAULT_CACHE, help="engine and timing cache folder")
    b.add_argument("--runtime", choices=("auto", "tensorrt", "onnxruntime"), default="auto")
    b.add_argument("--cuda", choices=("auto", "pycuda", "cuda-python"), default="auto")
    b.add_argument("--tegrastats", action="store_true", help="sample board power with tegrastats while timing")
    b.add_argument("--seed", type=int, default=0)
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
    if args.command == "bench" and (args.iters < 1 or args.warmup < 0):
        parser.error("--iters must be >= 1 and --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    commands = {"bench": bench, "build": build_command, "platform": platform_command}
    try:
        doc = commands[args.command](args)
    except trt_engine.EngineBuildError as exc:
        sys.stderr.write("error: %s\n" % exc)
        return 2
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        sys.stderr.write("error: the device program failed unexpectedly (traceback above)\n")
        return 1
    sys.stdout.write(json.dumps(doc, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
