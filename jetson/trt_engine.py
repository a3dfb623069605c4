"""Build, cache, inspect and run TensorRT engines, across TensorRT 8.2 (JetPack 4.6) to 10.x (Python 3.6+).

The TensorRT module is passed in (``trt``) rather than imported here, so the same code runs against the
real library on a device and against the recorded per-version stand-ins of the contract tests.

Where the API differs between versions (checked against NVIDIA/TensorRT ``python/src`` at each release and
the names table ``tests/data/tensorrt_api_names.json``, built from those sources and the bindings wheels),
the branch is chosen from ``trt.__version__``:

====================================  ==========================  ===================================
what                                  older                       newer
====================================  ==========================  ===================================
engine inspector, DETAILED profile    absent in 8.0: refused      ``create_engine_inspector`` (8.2+)
workspace limit                       ``max_workspace_size``      ``set_memory_pool_limit`` (>= 8.4)
network flags                         EXPLICIT_BATCH (8.x)        0 (10.x); STRONGLY_TYPED (11.x)
precision                             BuilderFlag FP16/INT8       11.x: none (the graph's types decide)
fast INT8/FP16 query                  ``platform_has_fast_*``     11.x: from the compute capability
engine I/O and launch                 binding indices +           tensor names + ``set_tensor_address``
                                      ``execute_async_v2``        + ``execute_async_v3`` (>= 8.5)
inspector's context attribute         ``execution_context`` (8.2.1 on; ``context`` never existed)
====================================  ==========================  ===================================

``build_serialized_network`` (8.0+) is used everywhere: ``build_engine`` is gone in 10.x.
"""

import hashlib
import json
import os
import re
import sys

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_WORKSPACE_MIB = 256
MIN_VERSION = (8, 2)  # the engine inspector (the precision each layer ran in) and DETAILED profiling

# TensorRT logs these after the real cause of a failed build; they never say why (8.3, 8.5, 10.x logs).
GENERIC_ERRORS = re.compile(r"Assertion (?:engine|enginePtr) != nullptr failed|Engine could not be created"
                            r"|Building engine failed|Network validation failed|Builder failed while",
                            re.IGNORECASE)


class EngineBuildError(Exception):
    """TensorRT could not parse or build the network; the message is TensorRT's own reason."""


class UnsupportedTensorRT(Exception):
    """This TensorRT cannot do what the device program needs (one line, with the fix)."""


def trt_version(trt):
    """``(major, minor)`` of a TensorRT module, from ``trt.__version__`` (e.g. "8.2.1.8")."""
    parts = re.findall(r"\d+", str(trt.__version__))
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


def check_supported(trt):
    """Refuse TensorRT older than 8.2 in one line: 8.0.1 (JetPack 4.6.0) has no engine inspector."""
    if trt_version(trt) < MIN_VERSION:
        raise UnsupportedTensorRT(
            "TensorRT %s has no engine inspector (ProfilingVerbosity.DETAILED and create_engine_inspector came in "
            "8.2), so the precision each layer ran in cannot be read; JetPack 4.6.0 ships 8.0.1: upgrade to "
            "JetPack 4.6.1 or later (TensorRT 8.2.1), or bench with --runtime trtexec" % trt.__version__)


def is_strongly_typed(trt):
    """TensorRT 11 builds only strongly typed networks: the graph's types (and its Q/DQ) fix each precision."""
    return trt_version(trt) >= (11, 0)


def fast_precisions_from_compute_capability(compute_capability):
    """``{"fast_int8", "fast_fp16"}`` for a GPU (used where ``platform_has_fast_*`` is gone: TensorRT 11).

    INT8 kernels need sm_61 or sm_70+ (dp4a / tensor cores); sm_53 (Nano) and sm_62 (TX2) have none.
    Fast FP16: sm_53, sm_60, sm_62 and sm_70+ (sm_61 GeForce parts run FP16 at 1/64 rate).
    """
    try:
        major, minor = (int(p) for p in str(compute_capability).split(".")[:2])
    except ValueError:
        return {"fast_int8": None, "fast_fp16": None}
    cc = (major, minor)
    return {"fast_int8": cc == (6, 1) or cc >= (7, 0), "fast_fp16": cc in ((5, 3), (6, 0), (6, 2)) or cc >= (7, 0)}


def uses_tensor_api(trt):
    """Name-based I/O + ``execute_async_v3`` (8.5+) rather than binding indices."""
    return trt_version(trt) >= (8, 5)


def uses_memory_pools(trt):
    """``set_memory_pool_limit`` (8.4+) rather than ``max_workspace_size``."""
    return trt_version(trt) >= (8, 4)


def needs_explicit_batch_flag(trt):
    """TensorRT 8.x needs EXPLICIT_BATCH for ONNX; 10.x is always explicit batch (the flag is deprecated)."""
    return trt_version(trt) < (10, 0)


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def engine_cache_key(onnx_sha256, tensorrt_version, settings):
    """The engine cache key: an engine is valid only for the same graph, TensorRT, device and settings.

    ``tensorrt_version``: the version text of the TensorRT that builds it (Python bindings or trtexec).
    ``settings`` holds everything else the engine depends on: GPU name and compute capability, CUDA and
    JetPack/L4T versions, the device program's version, precision, batch, workspace and the builder's
    network flags (strongly typed or not). It is hashed as sorted JSON.
    """
    text = json.dumps({"onnx": onnx_sha256, "tensorrt": str(tensorrt_version), "settings": settings},
                      sort_keys=True, default=str)
    return sha256_bytes(text.encode("utf-8"))[:32]


def builder_settings(trt, precision):
    """What the builder is told besides the graph (part of the cache key and the build record)."""
    strongly_typed = is_strongly_typed(trt)
    flags = []
    if not strongly_typed:
        flags = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision]
    return {"strongly_typed": strongly_typed, "builder_flags": flags,
            "explicit_batch_flag": needs_explicit_batch_flag(trt)}


def write_atomic(path, data):
    """Write bytes to ``path`` through a temporary file and a rename, so no half-written file is left."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def make_logger(trt, echo=None):
    """A TensorRT logger that keeps errors (for one-line reasons) and echoes warnings to stderr."""
    echo = sys.stderr if echo is None else echo

    class CapturingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors = []

        def reset(self):
            """Forget earlier errors: each build reports its own reason."""
            self.errors = []

        def log(self, severity, msg):
            name = str(getattr(severity, "name", severity)).upper()
            if "ERROR" in name:
                self.errors.append(str(msg))
            if "ERROR" in name or "WARNING" in name:
                echo.write("[TensorRT %s] %s\n" % (name.split(".")[-1], msg))
                echo.flush()

    return CapturingLogger()


def first_specific_error(errors):
    """The first error that says why; TensorRT's generic follow-ups only if nothing else was logged."""
    for line in errors:
        if not GENERIC_ERRORS.search(line):
            return line
    return errors[0] if errors else "no reason was logged"


def _fail(logger, what):
    raise EngineBuildError("%s: %s" % (what, first_specific_error(logger.errors)))


def build_engine_bytes(trt, onnx_bytes, precision, batch=1, workspace_mib=DEFAULT_WORKSPACE_MIB,
                       timing_cache_path=None, logger=None):
    """Parse an ONNX graph and build a serialized engine.

    Args:
        trt: the ``tensorrt`` module.
        onnx_bytes: the ONNX model.
        precision: ``fp32``, ``fp16`` or ``int8``. ``int8`` is for QDQ graphs (explicit quantization): it
            sets INT8 plus FP16, so layers left unquantized don't fall back to FP32; no calibrator. On
            TensorRT 11 (strongly typed) no flag is set: ``int8`` is the QDQ graph as typed, ``fp16`` needs
            an FP16 ONNX (``model.fp16.onnx`` from export) and a float32 graph runs in FP32.
        batch: the batch size the engine is optimised for (a dynamic batch dimension gets the profile
            min 1, opt = max = batch).
        workspace_mib: the builder's workspace memory-pool limit.
        timing_cache_path: a timing-cache file to read (if present) and update.
        logger: a logger from :func:`make_logger` (one is made if not given).

    Returns:
        ``(engine_bytes, info)``; ``info`` records the branches taken and the input shape.

    Raises:
        EngineBuildError: parse or build failure, with TensorRT's reason.
    """
    if precision not in PRECISIONS:
        raise ValueError("precision must be one of %s, got %r" % (", ".join(PRECISIONS), precision))
    check_supported(trt)
    logger = logger or make_logger(trt)
    logger.reset()
    settings = builder_settings(trt, precision)
    info = {"tensorrt": str(trt.__version__), "precision": precision, "workspace_mib": workspace_mib}
    info.update(settings)
    builder = trt.Builder(logger)
    if settings["explicit_batch_flag"]:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        info["network_flags"] = "EXPLICIT_BATCH"
    elif settings["strongly_typed"]:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        info["network_flags"] = "STRONGLY_TYPED"
    else:
        flags = 0
        info["network_flags"] = "none (explicit batch is the default)"
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError("TensorRT could not parse the ONNX graph: " + ("; ".join(errors) or "unknown error"))

    config = builder.create_builder_config()
    workspace = int(workspace_mib) << 20
    if uses_memory_pools(trt):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
        info["workspace_api"] = "set_memory_pool_limit"
    else:
        config.max_workspace_size = workspace
        info["workspace_api"] = "max_workspace_size"
    for flag in settings["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED

    net_input = network.get_input(0)
    dims = [int(d) for d in net_input.shape]
    if any(d < 0 for d in dims[1:]):
        raise EngineBuildError("input %r has dynamic dimensions other than the batch: %s" % (net_input.name, dims))
    info["input"] = {"name": net_input.name, "shape": [batch] + dims[1:]}
    if dims[0] < 0:
        profile = builder.create_optimization_profile()
        profile.set_shape(net_input.name, tuple([1] + dims[1:]), tuple([batch] + dims[1:]),
                          tuple([batch] + dims[1:]))
        config.add_optimization_profile(profile)
        info["optimization_profile"] = {"min": [1] + dims[1:], "opt": [batch] + dims[1:], "max": [batch] + dims[1:]}
    elif dims[0] != batch:
        raise EngineBuildError("the graph's batch dimension is fixed at %d; bench it with --batch %d"
                               % (dims[0], dims[0]))

    cache = None
    if timing_cache_path:
        blob = b""
        if os.path.exists(timing_cache_path):
            with open(timing_cache_path, "rb") as fh:
                blob = fh.read()
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, False)
        info["timing_cache"] = "loaded" if blob else "new"

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        _fail(logger, "TensorRT could not build the %s engine" % precision.upper())
    if cache is not None:
        write_atomic(timing_cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized)), info


def platform_flags(trt, logger=None, compute_capability=None):
    """``{"fast_int8", "fast_fp16", "source"}``: the builder's answer (False for INT8 on the Jetson Nano).

    TensorRT 11 removed ``platform_has_fast_int8/fp16``: there the answer comes from the GPU's compute
    capability (:func:`fast_precisions_from_compute_capability`), and ``source`` says so.
    """
    builder = trt.Builder(logger or make_logger(trt))
    if hasattr(builder, "platform_has_fast_int8"):
        return {"fast_int8": bool(builder.platform_has_fast_int8), "fast_fp16": bool(builder.platform_has_fast_fp16),
                "source": "Builder.platform_has_fast_int8/fp16"}
    flags = fast_precisions_from_compute_capability(compute_capability)
    flags["source"] = "compute capability %s (TensorRT %s has no platform_has_fast_*)" % (
        compute_capability, trt.__version__)
    return flags


# --- per-layer precision from the engine inspector ------------------------------------------------------

# Layers that only move or reinterpret data: not counted when checking the precision that layers ran in.
BOOKKEEPING_LAYER_TYPES = ("Reformat", "NoOp", "Shuffle", "Constant", "Identity")


def datatype_of(text):
    """``INT8``/``FP16``/``FP32``/... from an inspector "Format/Datatype" string, else None."""
    low = str(text).lower()
    for token, name in (("int8", "INT8"), ("fp8", "FP8"), ("bf16", "BF16"), ("fp16", "FP16"), ("half", "FP16"),
                        ("fp32", "FP32"), ("float", "FP32"), ("int32", "INT32"), ("bool", "BOOL")):
        if token in low:
            return name
    return None


def layer_precision(layer):
    """The precision a layer computed in: that of its first input (an INT8 conv reads INT8, may write FP32)."""
    for tensor in list(layer.get("Inputs") or []) + list(layer.get("Outputs") or []):
        if isinstance(tensor, dict):
            kind = datatype_of(tensor.get("Format/Datatype", ""))
            if kind:
                return kind
    return None


def summarize_layers(inspector_json, requested):
    """Count layers per precision and those not in the requested one.

    Args:
        inspector_json: the engine inspector's JSON text (``LayerInformationFormat.JSON``, DETAILED).
        requested: ``fp32``, ``fp16`` or ``int8``.

    Returns:
        ``{"total", "by_precision", "not_in_requested", "not_in_requested_names", "unknown"}``, counting
        only compute layers (reformats, no-ops and shuffles are left out).
    """
    data = json.loads(inspector_json)
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    want = requested.upper()
    by_precision, odd, unknown, total = {}, [], 0, 0
    for layer in layers:
        if not isinstance(layer, dict) or layer.get("LayerType") in BOOKKEEPING_LAYER_TYPES:
            continue
        total += 1
        kind = layer_precision(layer)
        if kind is None:
            unknown += 1
            continue
        by_precision[kind] = by_precision.get(kind, 0) + 1
        if kind != want:
            odd.append(str(layer.get("Name", "?")))
    return {"total": total, "by_precision": by_precision, "not_in_requested": len(odd),
            "not_in_requested_names": odd[:50], "unknown": unknown}


# --- running an engine ----------------------------------------------------------------------------------


def engine_input_shape(trt, engine, batch):
    """The input shape of a deserialized engine, its dynamic batch dimension set to ``batch``."""
    if uses_tensor_api(trt):
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        dims = [int(d) for d in engine.get_tensor_shape(inputs[0])]
    else:
        index = [i for i in range(engine.num_bindings) if engine.binding_is_input(i)][0]
        dims = [int(d) for d in engine.get_binding_shape(index)]
    if any(d < 0 for d in dims[1:]):
        raise EngineBuildError("the engine's input has dynamic dimensions other than the batch: %s" % dims)
    return tuple([batch if dims[0] < 0 else dims[0]] + dims[1:])


class TrtRunner(object):
    """An engine ready to run on a CUDA stream: ``infer_timed()`` returns (gpu_ms, end_to_end_ms).

    Use as a context manager; buffers are freed on exit.
    """

    def __init__(self, trt, cuda, engine_bytes, input_shape=None, logger=None, batch=1):
        self.trt = trt
        self.cuda = cuda
        self.logger = logger or make_logger(trt)
        self.logger.reset()
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            _fail(self.logger, "TensorRT could not deserialize the engine")
        self.context = self.engine.create_execution_context()
        if input_shape is None:  # a cached engine without its build record: the engine knows its input
            input_shape = engine_input_shape(trt, self.engine, batch)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.inputs, self.outputs = [], []  # (name, host array, device ptr)
        self.io_api = ("tensor names + execute_async_v3" if uses_tensor_api(trt)
                       else "binding indices + execute_async_v2")
        if uses_tensor_api(trt):
            self._setup_tensor_api()
        else:
            self._setup_binding_api()

    def _buffer(self, shape, trt_dtype):
        host = self.cuda.host_empty(shape, self.trt.nptype(trt_dtype))
        return host, self.cuda.alloc(host.nbytes)

    def _setup_tensor_api(self):
        engine, context, trt = self.engine, self.context, self.trt
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                context.set_input_shape(name, self.input_shape)
        for name in names:
            shape = tuple(context.get_tensor_shape(name))
            host, ptr = self._buffer(shape, engine.get_tensor_dtype(name))
            context.set_tensor_address(name, ptr)
            side = self.inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs
            side.append((name, host, ptr))

        def launch():
            if not context.execute_async_v3(self.cuda.stream_handle):
                raise RuntimeError("execute_async_v3 failed")

        self._launch = launch

    def _setup_binding_api(self):
        engine, context = self.engine, self.context
        count = engine.num_bindings
        bindings = [0] * count
        for i in range(count):
            if engine.binding_is_input(i):
                context.set_binding_shape(i, self.input_shape)
        for i in range(count):
            shape = tuple(context.get_binding_shape(i))
            host, ptr = self._buffer(shape, engine.get_binding_dtype(i))
            bindings[i] = ptr
            side = self.inputs if engine.binding_is_input(i) else self.outputs
            side.append((engine.get_binding_name(i), host, ptr))

        def launch():
            if not context.execute_async_v2(bindings, self.cuda.stream_handle):
                raise RuntimeError("execute_async_v2 failed")

        self._launch = launch

    def set_input(self, array):
        """Copy ``array`` into the (single) input's page-locked host buffer."""
        self.inputs[0][1][...] = array

    def infer_timed(self, events):
        """One inference; returns ``(gpu_compute_ms, end_to_end_ms)`` from CUDA events on the stream.

        ``events`` is four events: e2e start, compute start, compute end, e2e end. End-to-end includes
        the host-to-device and device-to-host copies; GPU compute is the enqueued network alone.
        """
        cuda = self.cuda
        e2e_start, gpu_start, gpu_end, e2e_end = events
        cuda.record(e2e_start)
        for _, host, ptr in self.inputs:
            cuda.htod(ptr, host)
        cuda.record(gpu_start)
        self._launch()
        cuda.record(gpu_end)
        for _, host, ptr in self.outputs:
            cuda.dtoh(host, ptr)
        cuda.record(e2e_end)
        cuda.synchronize()
        return cuda.elapsed_ms(gpu_start, gpu_end), cuda.elapsed_ms(e2e_start, e2e_end)

    def output(self, index=0):
        return self.outputs[index][1]

    def layer_info_json(self):
        """The engine inspector's JSON for this engine (with the context, so dynamic shapes are concrete)."""
        inspector = self.engine.create_engine_inspector()
        # "execution_context" from 8.2.1 on (python/src/infer/pyCore.cpp); there is no "context" attribute.
        inspector.execution_context = self.context
        return inspector.get_engine_information(self.trt.LayerInformationFormat.JSON)

    def close(self):
        for _, _, ptr in self.inputs + self.outputs:
            self.cuda.free(ptr)
        self.inputs, self.outputs = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
