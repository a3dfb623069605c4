"""NVIDIA's ``trtexec`` as the device program's runner: build, per-layer information and timing, no CUDA binding.

Every JetPack has ``/usr/src/tensorrt/bin/trtexec``; it needs neither pycuda nor cuda-python, so the device
program uses it when Python TensorRT or a CUDA binding is missing (or TensorRT 8.0 has no engine inspector).
Runs on the device (Python 3.6+, stdlib only); commands are argument lists, never shell strings.

Flags, as ``samples/common/sampleOptions.cpp`` of NVIDIA/TensorRT parses them at the tags 8.0.1, 8.2.1,
8.5.2, v8.6.1, v10.3.0 and v11.1 (``getAndDelOption(arguments, "--flag", ...)``):

=============================  ===========================================================
flag                           releases
=============================  ===========================================================
--onnx --saveEngine            all
--loadEngine --shapes
--warmUp (ms) --iterations
--exportTimes --exportProfile
--timingCacheFile
--separateProfileRun
--explicitBatch                8.x only (not parsed in 10.3: always explicit batch)
--workspace (MiB)              8.0-8.4 (8.5 still parses it, deprecated)
--memPoolSize=workspace:NM     8.5 on
--fp16 --int8                  8.x-10.x; not in 11.1 (strongly typed networks only)
--stronglyTyped                10.3 on
--profilingVerbosity=detailed  8.2 on (8.0.1 has no engine inspector)
--exportLayerInfo
--skipInference                8.6 on (``--buildOnly`` before)
=============================  ===========================================================

Output formats (``samples/common/sampleReporting.cpp``): ``--exportTimes`` writes a JSON list with one object
per inference, ``computeMs`` (GPU compute), ``latencyMs`` (H2D + compute + D2H) and, before 10.x,
``endToEndMs``; ``--exportLayerInfo`` writes the engine inspector's JSON (``{"Layers": [...], "Bindings":
[...]}``, per-layer ``Inputs``/``Outputs`` with ``Format/Datatype`` at DETAILED verbosity), which
``trt_engine.summarize_layers`` reads. The banner ``&&&& RUNNING TensorRT.trtexec [TensorRT v8201]`` gives
the version: ``major*1000 + minor*100 + patch`` on 8.x (``kNV_TENSORRT_VERSION_IMPL``, NvInferRuntimeCommon.h
at 8.2.1), ``major*10000 + minor*100 + patch`` from 10.x (``NV_TENSORRT_VERSION_INT``, NvInferRuntimeBase.h).

What cannot be verified here: that a board's trtexec accepts these flags and writes these files (no
TensorRT on this machine). The tests run a recording stand-in ``trtexec`` that writes files of the formats
above; only the source reading says the real one does.
"""

import json
import os
import re
import subprocess
import time

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
BANNER = re.compile(r"\[TensorRT v(\d+)\]")
# trtexec's and TensorRT's generic follow-ups after the real cause of a failure
GENERIC = re.compile(r"Engine could not be created|Error Code 2: Internal Error \(Assertion|Assertion engine"
                     r"|Network validation failed|Engine set up failed|engine != nullptr|FAILED TensorRT\.trtexec"
                     r"|Failed to create engine", re.IGNORECASE)


class TrtexecError(Exception):
    """trtexec could not do what was asked; the message is its first specific error line."""


def find_trtexec(candidates=None):
    """The trtexec to use: ``$SQAKD_TRTEXEC``, else on PATH, else JetPack's; None when there is none."""
    if candidates is None:
        candidates = [os.environ.get("SQAKD_TRTEXEC")]
        candidates += [os.path.join(d, "trtexec") for d in os.environ.get("PATH", "").split(os.pathsep) if d]
        candidates.append(JETPACK_TRTEXEC)
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def parse_version(text):
    """``(major, minor, patch)`` from trtexec's banner ("[TensorRT v8201]" -> (8, 2, 1)), else None."""
    match = BANNER.search(text or "")
    if not match:
        return None
    n = int(match.group(1))
    if n >= 100000:  # 10.x on: major*10000 + minor*100 + patch
        return n // 10000, (n // 100) % 100, n % 100
    return n // 1000, (n // 100) % 10, n % 100


def first_error(log_text):
    """The first error line that says why; generic follow-ups only when nothing better was logged."""
    errors = [line.strip() for line in (log_text or "").splitlines()
              if "[E]" in line or "Error[" in line or line.lstrip().startswith("ERROR")]
    for line in errors:
        if not GENERIC.search(line):
            return line
    return errors[0] if errors else "trtexec gave no reason"


def build_argv(trtexec, version, onnx_path, engine_path, precision, export_dir, batch=1, input_name=None,
               input_shape=None, workspace_mib=256, timing_cache=None, warmup_ms=200, iterations=200,
               load_engine=False):
    """trtexec's argument list for one graph and precision on TensorRT ``version`` (see the module table).

    ``precision``: ``fp32``, ``fp16`` or ``int8``. On 11.x there are no precision flags: the graph's types
    decide (``int8`` is the QDQ graph, ``fp16`` needs an FP16 graph), so the caller passes the right file.
    With ``load_engine`` the cached engine is timed; otherwise it is built and saved to ``engine_path``.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise TrtexecError("precision must be fp32, fp16 or int8, got %r" % precision)
    major_minor = tuple(version[:2])
    argv = [trtexec]
    argv += ["--loadEngine=%s" % engine_path] if load_engine else ["--onnx=%s" % onnx_path,
                                                                   "--saveEngine=%s" % engine_path]
    if not load_engine:
        if major_minor < (10, 0):
            argv.append("--explicitBatch")
        if major_minor >= (8, 5):
            argv.append("--memPoolSize=workspace:%dM" % int(workspace_mib))
        else:
            argv.append("--workspace=%d" % int(workspace_mib))
        if major_minor >= (11, 0):
            argv.append("--stronglyTyped")
        else:
            argv += {"fp32": [], "fp16": ["--fp16"], "int8": ["--fp16", "--int8"]}[precision]
        if timing_cache:
            argv.append("--timingCacheFile=%s" % timing_cache)
    if input_name and input_shape:  # the batch of a dynamic-batch graph (a static graph ignores it)
        argv.append("--shapes=%s:%s" % (input_name, "x".join(str(int(d)) for d in input_shape)))
    if major_minor >= (8, 2):
        argv += ["--profilingVerbosity=detailed", "--exportLayerInfo=%s" % os.path.join(export_dir, "layers.json")]
    argv += ["--warmUp=%d" % int(warmup_ms), "--iterations=%d" % int(iterations), "--separateProfileRun",
             "--exportTimes=%s" % os.path.join(export_dir, "times.json"),
             "--exportProfile=%s" % os.path.join(export_dir, "profile.json")]
    return argv


def parse_times(text):
    """``{"end_to_end": [ms], "gpu_compute": [ms]}`` from ``--exportTimes`` (endToEndMs before 10.x, latencyMs)."""
    records = json.loads(text)
    if not isinstance(records, list):
        raise TrtexecError("trtexec's --exportTimes file is not a list")
    e2e, gpu = [], []
    for record in records:
        if not isinstance(record, dict):
            continue
        total = record.get("endToEndMs", record.get("latencyMs"))
        if isinstance(total, (int, float)) and total > 0:
            e2e.append(float(total))
        if isinstance(record.get("computeMs"), (int, float)) and record["computeMs"] > 0:
            gpu.append(float(record["computeMs"]))
    return {"end_to_end": e2e, "gpu_compute": gpu}


def parse_profile(text):
    """Per-layer ``[{"name", "average_ms", "percentage"}]`` from ``--exportProfile`` (its first item is the count)."""
    items = json.loads(text)
    layers = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and "name" in item:
            layers.append({"name": str(item["name"]), "average_ms": item.get("averageMs"),
                           "percentage": item.get("percentage")})
    return layers


def parse_layer_info(text):
    """The engine inspector's document from ``--exportLayerInfo`` (``{"Layers": [...], ...}``)."""
    data = json.loads(text)
    if isinstance(data, list):  # a bare list of layers
        data = {"Layers": data}
    if not isinstance(data, dict) or not isinstance(data.get("Layers"), list):
        raise TrtexecError("trtexec's --exportLayerInfo file has no Layers list")
    return data


def run_trtexec(argv, timeout_s=1800):
    """Run trtexec (argument list); its log text, or TrtexecError with the first specific error."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as exc:
        raise TrtexecError("cannot run %s: %s" % (argv[0], exc)) from None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise TrtexecError("trtexec did not finish within %d s" % timeout_s) from None
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise TrtexecError(first_error(text))
    return text


def _read(path):
    with open(path) as fh:
        return fh.read()


def trtexec_version(trtexec):
    """The TensorRT version trtexec was built with, from its banner (``trtexec --help`` prints it)."""
    try:
        proc = subprocess.Popen([trtexec, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TrtexecError("cannot run %s --help: %s" % (trtexec, exc)) from None
    version = parse_version(out.decode("utf-8", "replace"))
    if version is None:
        raise TrtexecError("%s printed no TensorRT version banner" % trtexec)
    return version


def bench_with_trtexec(trtexec, onnx_path, precision, work_dir, engine_path, version, batch=1, input_name=None,
                       input_shape=None, warmup=20, iterations=200, workspace_mib=256, timing_cache=None):
    """Build (or load ``engine_path``) and time one graph; the raw facts trtexec reports.

    Returns:
        ``{"trtexec", "tensorrt_version", "argv", "latency_ms": {"end_to_end", "gpu_compute"}, "layer_info",
        "layer_info_unavailable", "profile", "engine_file", "build_s", "cache_hit", "log_tail"}``.
    """
    export_dir = os.path.join(work_dir, "trtexec-%d" % os.getpid())
    if not os.path.isdir(export_dir):
        os.makedirs(export_dir)
    cache_hit = os.path.exists(engine_path)
    build_s = 0.0
    if not cache_hit:  # build once, then time the saved engine like a cached one
        tmp_engine = "%s.tmp-%d" % (engine_path, os.getpid())
        argv = build_argv(trtexec, version, onnx_path, tmp_engine, precision, export_dir, batch, input_name,
                          input_shape, workspace_mib, timing_cache, 0, 1)
        start = time.time()
        run_trtexec(argv)
        build_s = round(time.time() - start, 3)
        os.replace(tmp_engine, engine_path)
    # trtexec's warm-up is in milliseconds: about 2 ms per warm-up iteration asked for, at least 200 ms
    argv = build_argv(trtexec, version, onnx_path, engine_path, precision, export_dir, batch, input_name,
                      input_shape, workspace_mib, None, max(200, 2 * int(warmup)), iterations, load_engine=True)
    log = run_trtexec(argv)
    times = parse_times(_read(os.path.join(export_dir, "times.json")))
    layers_path = os.path.join(export_dir, "layers.json")
    layer_info, unavailable = None, None
    if tuple(version[:2]) < (8, 2):
        unavailable = "TensorRT %d.%d's trtexec has no --exportLayerInfo (8.2 on)" % tuple(version[:2])
    elif os.path.exists(layers_path):
        layer_info = parse_layer_info(_read(layers_path))
    else:
        unavailable = "trtexec wrote no layer information"
    profile_path = os.path.join(export_dir, "profile.json")
    profile = parse_profile(_read(profile_path)) if os.path.exists(profile_path) else None
    return {"trtexec": trtexec, "tensorrt_version": "%d.%d.%d" % tuple(version[:3]), "argv": argv,
            "latency_ms": times, "layer_info": layer_info, "layer_info_unavailable": unavailable,
            "profile": profile, "engine_file": engine_path, "build_s": build_s, "cache_hit": cache_hit,
            "input_shape": list(input_shape) if input_shape else None, "log_tail": log.splitlines()[-40:]}
