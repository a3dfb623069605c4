"""Contract tests: the device program's TensorRT code against stand-ins of TensorRT 8.0, 8.2, 8.5, 10.x and 11.x.

What these prove: for each TensorRT version, the builder and runner call only the Python API that version
has, and take the right branch: 8.0.1 refused (no engine inspector); workspace via ``max_workspace_size``
(8.2) or ``set_memory_pool_limit`` (>= 8.4); EXPLICIT_BATCH on 8.x, no flag on 10.x, STRONGLY_TYPED and no
precision flags on 11.x; ``build_serialized_network`` (never ``build_engine``); binding indices +
``execute_async_v2`` before 8.5 and tensor names + ``execute_async_v3`` from 8.5; the inspector's
``execution_context``; fast INT8 from the compute capability on 11; and the Nano rule on a GPU without
fast INT8. The stand-ins' attributes are checked against NVIDIA's real names, per version, by
``tests/test_trt_api_names.py`` (the table built from the binding sources and wheels).

What they do NOT prove: that a real engine builds, runs or is fast on a device. The stand-ins execute
nothing; they only record calls and refuse attributes a version does not have (as pybind11 objects do).
The INT8 refusal text on a no-INT8 GPU is the one FACTS.md records for the Jetson Nano.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from jetson import cuda_mem, trt_bench, trt_engine
from sqakd_edge.bench.remote import document

from .tiny_graphs import write_tiny_graphs

pytestmark = [pytest.mark.contract, pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")]

NANO_INT8_ERROR = "Networks with QuantizeLayer/DequantizeLayer layers require hardware with Int8 support"


class Recorder:
    """Shared call log of one stand-in module."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class Strict:
    """Refuses to set attributes the recorded version does not have (pybind11 objects raise too)."""

    _settable: frozenset = frozenset()

    def __setattr__(self, name, value):
        if not name.startswith("_") and name not in self._settable:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r} in this TensorRT version")
        if not name.startswith("_"):
            self._rec.calls.append((f"{type(self).__name__}.{name}=", value))
        object.__setattr__(self, name, value)


def _enum(name, **members):
    cls = type(name, (), {})
    for key, value in members.items():
        setattr(cls, key, _EnumValue(name, key, value))
    return cls


class _EnumValue:
    def __init__(self, owner, name, value):
        self.owner, self.name, self.value = owner, name, value

    def __int__(self):
        return self.value

    def __repr__(self):
        return f"{self.owner}.{self.name}"


def make_tensorrt(version: str, *, fast_int8: bool = True, input_shape=(-1, 1, 8, 8)) -> types.ModuleType:
    """A stand-in ``tensorrt`` module with exactly the recorded API surface of ``version``."""
    major, minor = (int(p) for p in version.split(".")[:2])
    v = (major, minor)
    rec = Recorder()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt._rec = rec

    # TensorRT 11 removed BuilderFlag.FP16/INT8 and EXPLICIT_BATCH (networks are strongly typed); STRONGLY_TYPED
    # came in 10.x; ProfilingVerbosity.DETAILED and the engine inspector came in 8.2 (absent in 8.0.1).
    flags = {"TF32": 7} if v >= (11, 0) else {"FP16": 0, "INT8": 1}
    trt.BuilderFlag = _enum("BuilderFlag", **flags)
    creation = {} if v >= (11, 0) else {"EXPLICIT_BATCH": 0}
    if v >= (10, 0):
        creation["STRONGLY_TYPED"] = 1
    trt.NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", **creation)
    verbosity = {"LAYER_NAMES_ONLY": 0, "NONE": 1, "DETAILED": 2} if v >= (8, 2) else {"DEFAULT": 0, "NONE": 1,
                                                                                         "VERBOSE": 2}
    trt.ProfilingVerbosity = _enum("ProfilingVerbosity", **verbosity)
    if v >= (8, 2):  # with the engine inspector
        trt.LayerInformationFormat = _enum("LayerInformationFormat", ONELINE=0, JSON=1)
    trt.DataType = _enum("DataType", FLOAT=0, HALF=1, INT8=2)
    if v >= (8, 4):
        trt.MemoryPoolType = _enum("MemoryPoolType", WORKSPACE=0)
    if v >= (8, 5):
        trt.TensorIOMode = _enum("TensorIOMode", NONE=0, INPUT=1, OUTPUT=2)
    trt.nptype = lambda dtype: np.float32

    class ILogger:
        def __init__(self):
            pass

    trt.ILogger = ILogger

    # --- network, parser ---------------------------------------------------------------------------------
    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs = []

        def get_input(self, i):
            return self.inputs[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network, self.logger = network, logger

        def parse(self, data):
            rec.calls.append(("OnnxParser.parse", len(data)))
            if not data.startswith(b"\x08"):  # every ONNX ModelProto starts with field 1 (ir_version)
                self.num_errors = 1
                return False
            self.network.inputs.append(types.SimpleNamespace(name="input", shape=input_shape))
            self.network.qdq = b"QuantizeLinear" in data
            self.network.half = b"float16" in data
            return True

        def get_error(self, i):
            return "In node 0: the stand-in parser saw bytes that are not an ONNX model"

    trt.OnnxParser = OnnxParser

    class TimingCache:
        def __init__(self, blob):
            self.blob = blob

        def serialize(self):
            return memoryview(b"timing-cache:" + bytes(self.blob[:8]))

    config_attrs = {"profiling_verbosity"}
    if v < (10, 0):
        config_attrs.add("max_workspace_size")

    class IBuilderConfig(Strict):
        _settable = frozenset(config_attrs)

        def __init__(self):
            self._rec = rec
            self._flags = set()
            self._profiles = []
            self._cache = None

        def set_flag(self, flag):
            rec.calls.append(("IBuilderConfig.set_flag", flag.name))
            self._flags.add(flag.name)

        def create_timing_cache(self, blob):
            rec.calls.append(("IBuilderConfig.create_timing_cache", bytes(blob)))
            return TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            rec.calls.append(("IBuilderConfig.set_timing_cache", ignore_mismatch))
            self._cache = cache
            return True

        def get_timing_cache(self):
            return self._cache

        def add_optimization_profile(self, profile):
            rec.calls.append(("IBuilderConfig.add_optimization_profile", dict(profile.shapes)))
            self._profiles.append(profile)

    if v >= (8, 4):
        def set_memory_pool_limit(self, pool, size):
            rec.calls.append(("IBuilderConfig.set_memory_pool_limit", pool.name, size))

        IBuilderConfig.set_memory_pool_limit = set_memory_pool_limit

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            self.logger = logger
            if v < (11, 0):  # removed in 11
                self.platform_has_fast_int8 = fast_int8
                self.platform_has_fast_fp16 = True

        def create_network(self, flags=0):
            rec.calls.append(("Builder.create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            rec.calls.append(("Builder.build_serialized_network", sorted(config._flags)))
            if getattr(network, "qdq", False) and not fast_int8:
                error = types.SimpleNamespace(name="ERROR")
                self.logger.log(error, NANO_INT8_ERROR)
                # TensorRT's generic follow-up line (seen in 8.3, 8.5 and 10.x logs)
                self.logger.log(error, "2: [builder.cpp::buildSerializedNetwork::751] Error Code 2: Internal Error "
                                "(Assertion engine != nullptr failed. )")
                return None
            strongly_typed = v >= (10, 0) and network.flags & (1 << 1)
            if strongly_typed:  # the graph's types decide
                precision = "int8" if network.qdq else "fp16" if network.half else "fp32"
            elif "INT8" in config._flags:
                precision = "int8"
            elif "FP16" in config._flags:
                precision = "fp16"
            else:
                precision = "fp32"
            plan = {"precision": precision, "shape": list(network.inputs[0].shape)}
            return memoryview(json.dumps(plan).encode())

    if v < (10, 0):
        def build_engine(self, network, config):  # present (deprecated) on 8.x, removed in 10
            rec.calls.append(("Builder.build_engine",))

        Builder.build_engine = build_engine
    trt.Builder = Builder

    # --- engine, context, inspector -----------------------------------------------------------------------
    names = ["input", "logits"]

    class IExecutionContext:
        def __init__(self, plan):
            self.plan = plan
            self.shapes = {"input": None, "logits": None}

        def execute_v2(self, bindings):  # everywhere
            rec.calls.append(("IExecutionContext.execute_v2",))
            return True

    def _set_shape(ctx, name, shape):
        ctx.shapes["input"] = tuple(shape)
        ctx.shapes["logits"] = (shape[0], 10)

    if v < (10, 0):
        def set_binding_shape(self, index, shape):
            rec.calls.append(("IExecutionContext.set_binding_shape", index, tuple(shape)))
            _set_shape(self, names[index], shape)
            return True

        def get_binding_shape(self, index):
            return self.shapes[names[index]]

        def execute_async_v2(self, bindings, stream_handle):
            rec.calls.append(("IExecutionContext.execute_async_v2", list(bindings), stream_handle))
            return True

        IExecutionContext.set_binding_shape = set_binding_shape
        IExecutionContext.get_binding_shape = get_binding_shape
        IExecutionContext.execute_async_v2 = execute_async_v2
    if v >= (8, 5):
        def set_input_shape(self, name, shape):
            rec.calls.append(("IExecutionContext.set_input_shape", name, tuple(shape)))
            _set_shape(self, name, shape)
            return True

        def get_tensor_shape(self, name):
            return self.shapes[name]

        def set_tensor_address(self, name, ptr):
            rec.calls.append(("IExecutionContext.set_tensor_address", name, ptr))
            return True

        def execute_async_v3(self, stream_handle):
            rec.calls.append(("IExecutionContext.execute_async_v3", stream_handle))
            return True

        for fn in (set_input_shape, get_tensor_shape, set_tensor_address, execute_async_v3):
            setattr(IExecutionContext, fn.__name__, fn)

    # "execution_context" from 8.2.1 on (python/src/infer/pyCore.cpp); a "context" attribute never existed
    inspector_attr = "execution_context"

    class EngineInspector(Strict):
        _settable = frozenset({inspector_attr})

        def __init__(self, plan):
            self._rec = rec
            self._plan = plan

        def get_engine_information(self, fmt):
            rec.calls.append(("EngineInspector.get_engine_information", fmt.name))
            ctx = getattr(self, inspector_attr, None)
            if ctx is None or ctx.shapes["input"] is None:
                fmt_text = "N/A due to dynamic shapes"
                conv = head = fmt_text
            else:
                conv = {"int8": "Thirty-two wide channel vectorized row major Int8 format",
                        "fp16": "Channel major FP16 format where channel % 8 == 0",
                        "fp32": "Row major linear FP32"}[self._plan["precision"]]
                head = "Row major linear FP32" if self._plan["precision"] == "fp32" else "Half"
            layers = [
                {"Name": "Reformatting CopyNode for Input Tensor 0", "LayerType": "Reformat",
                 "Inputs": [{"Format/Datatype": "Row major linear FP32"}], "Outputs": [{"Format/Datatype": conv}]},
                {"Name": "conv1 + relu1", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": conv}],
                 "Outputs": [{"Format/Datatype": conv}]},
                {"Name": "conv2 + relu2", "LayerType": "CaskConvolution", "Inputs": [{"Format/Datatype": conv}],
                 "Outputs": [{"Format/Datatype": conv}]},
                {"Name": "gemm", "LayerType": "CaskGemm", "Inputs": [{"Format/Datatype": head}],
                 "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
            ]
            return json.dumps({"Layers": layers, "Bindings": names})

    # pybind11 exposes properties on the class, so hasattr() sees them before they are set
    setattr(EngineInspector, inspector_attr, None)

    class ICudaEngine:
        def __init__(self, plan):
            self.plan = plan

        def create_execution_context(self):
            return IExecutionContext(self.plan)

    if v >= (8, 2):
        ICudaEngine.create_engine_inspector = lambda self: EngineInspector(self.plan)

    if v < (10, 0):
        ICudaEngine.num_bindings = 2
        ICudaEngine.get_binding_name = lambda self, i: names[i]
        ICudaEngine.binding_is_input = lambda self, i: i == 0
        ICudaEngine.get_binding_dtype = lambda self, i: trt.DataType.FLOAT
        ICudaEngine.get_binding_index = lambda self, name: names.index(name)
        ICudaEngine.get_binding_shape = lambda self, i: tuple(input_shape) if i == 0 else (input_shape[0], 10)
    if v >= (8, 5):
        ICudaEngine.get_tensor_shape = lambda self, name: (
            tuple(input_shape) if name == "input" else (input_shape[0], 10))
        ICudaEngine.num_io_tensors = 2
        ICudaEngine.get_tensor_name = lambda self, i: names[i]
        ICudaEngine.get_tensor_mode = lambda self, name: (
            trt.TensorIOMode.INPUT if name == "input" else trt.TensorIOMode.OUTPUT)
        ICudaEngine.get_tensor_dtype = lambda self, name: trt.DataType.FLOAT

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            rec.calls.append(("Runtime.deserialize_cuda_engine", len(data)))
            return ICudaEngine(json.loads(bytes(data)))

    trt.Runtime = Runtime
    return trt


class FakeCuda:
    """Stand-in CUDA backend: numpy host buffers, fake device pointers, events on a fake clock."""

    stream_handle = 0xC0FFEE

    def __init__(self) -> None:
        self.next_ptr = 0x10000
        self.clock = 0.0
        self.copies: list[tuple] = []

    def alloc(self, nbytes):
        ptr = self.next_ptr
        self.next_ptr += nbytes + 256
        return ptr

    def free(self, ptr):
        pass

    def host_empty(self, shape, dtype):
        return np.zeros(shape, dtype)

    def htod(self, ptr, array):
        self.copies.append(("htod", ptr, array.nbytes))

    def dtoh(self, array, ptr):
        self.copies.append(("dtoh", ptr, array.nbytes))

    def synchronize(self):
        pass

    def event(self):
        return [0.0]

    def record(self, event):
        self.clock += 0.25
        event[0] = self.clock

    def elapsed_ms(self, start, end):
        return end[0] - start[0]

    def describe(self):
        return {"backend": "stand-in", "gpu_name": "NVIDIA Tegra X1", "compute_capability": "5.3",
                "cuda_runtime": "10.2", "cuda_driver": "10.2"}

    def close(self):
        pass


ONNX_LIKE = b"\x08\x07" + b"graph bytes"
QDQ_LIKE = b"\x08\x07" + b"... QuantizeLinear ... DequantizeLinear ..."
VERSIONS = ["8.2.1.8", "8.5.2.2", "10.3.0"]
NULL = open(os.devnull, "w")


# --- builder ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision,flags", [("fp32", []), ("fp16", ["FP16"]), ("int8", ["FP16", "INT8"])])
def test_builder_takes_the_documented_branch(version, precision, flags, tmp_path):
    trt = make_tensorrt(version)
    timing = tmp_path / "timing.cache"
    data, info = trt_engine.build_engine_bytes(trt, ONNX_LIKE, precision, batch=4, workspace_mib=64,
                                               timing_cache_path=str(timing))
    calls = trt._rec.calls
    names = trt._rec.names()
    assert "Builder.build_serialized_network" in names and "Builder.build_engine" not in names
    assert ("Builder.build_serialized_network", flags) in calls
    explicit = 1 << 0 if version.startswith("8.") else 0
    assert ("Builder.create_network", explicit) in calls
    if version.startswith("8.2"):
        assert ("IBuilderConfig.max_workspace_size=", 64 << 20) in calls
        assert info["workspace_api"] == "max_workspace_size"
    else:
        assert ("IBuilderConfig.set_memory_pool_limit", "WORKSPACE", 64 << 20) in calls
        assert "IBuilderConfig.max_workspace_size=" not in names
    assert ("IBuilderConfig.profiling_verbosity=", trt.ProfilingVerbosity.DETAILED) in calls
    assert ("IBuilderConfig.add_optimization_profile", {"input": ((1, 1, 8, 8), (4, 1, 8, 8), (4, 1, 8, 8))}) in calls
    assert ("IBuilderConfig.set_timing_cache", False) in calls
    assert timing.read_bytes().startswith(b"timing-cache:")
    assert json.loads(data)["precision"] == precision
    assert info["input"] == {"name": "input", "shape": [4, 1, 8, 8]}


def test_timing_cache_is_reloaded_on_the_next_build(tmp_path):
    timing = tmp_path / "timing.cache"
    trt_engine.build_engine_bytes(make_tensorrt("8.2.1"), ONNX_LIKE, "fp16", timing_cache_path=str(timing))
    second = make_tensorrt("8.2.1")
    _, info = trt_engine.build_engine_bytes(second, ONNX_LIKE, "fp16", timing_cache_path=str(timing))
    assert info["timing_cache"] == "loaded"
    assert ("IBuilderConfig.create_timing_cache", timing.read_bytes()) in second._rec.calls or any(
        c[0] == "IBuilderConfig.create_timing_cache" and c[1].startswith(b"timing-cache:") for c in second._rec.calls)


def test_the_stand_ins_refuse_what_a_version_lacks():
    """Guards the guards: a wrong branch would fail loudly, not pass silently."""
    cfg10 = make_tensorrt("10.3.0").Builder(None).create_builder_config()
    with pytest.raises(AttributeError):
        cfg10.max_workspace_size = 1
    cfg82 = make_tensorrt("8.2.1").Builder(None).create_builder_config()
    assert not hasattr(cfg82, "set_memory_pool_limit")
    assert not hasattr(make_tensorrt("10.0.1").Builder(None), "build_engine")
    ctx82 = make_tensorrt("8.2.1").Runtime(None).deserialize_cuda_engine(b'{"precision": "fp32"}')
    assert not hasattr(ctx82.create_execution_context(), "execute_async_v3")


def test_parse_failure_is_one_line_with_the_parser_reason():
    with pytest.raises(trt_engine.EngineBuildError, match="could not parse the ONNX graph: In node 0"):
        trt_engine.build_engine_bytes(make_tensorrt("8.5.2"), b"not onnx", "fp32")


def test_int8_on_a_gpu_without_fast_int8_fails_with_tensorrts_reason():
    trt = make_tensorrt("8.2.1.8", fast_int8=False)
    logger = trt_engine.make_logger(trt, echo=open("/dev/null", "w"))
    with pytest.raises(trt_engine.EngineBuildError, match="require hardware with Int8 support"):
        trt_engine.build_engine_bytes(trt, QDQ_LIKE, "int8", logger=logger)


# --- runner -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version,api", [("8.2.1.8", "binding"), ("8.5.2.2", "tensor"), ("10.3.0", "tensor")])
def test_runner_uses_bindings_before_8_5_and_tensor_names_after(version, api):
    trt = make_tensorrt(version)
    data, _ = trt_engine.build_engine_bytes(trt, ONNX_LIKE, "fp16", batch=2)
    cuda = FakeCuda()
    with trt_engine.TrtRunner(trt, cuda, data, (2, 1, 8, 8)) as runner:
        runner.set_input(np.ones((2, 1, 8, 8), np.float32))
        gpu_ms, e2e_ms = runner.infer_timed([cuda.event() for _ in range(4)])
        layer_json = runner.layer_info_json()
    names = trt._rec.names()
    if api == "binding":
        assert ("IExecutionContext.set_binding_shape", 0, (2, 1, 8, 8)) in trt._rec.calls
        launch = [c for c in trt._rec.calls if c[0] == "IExecutionContext.execute_async_v2"]
        assert len(launch) == 1 and launch[0][2] == FakeCuda.stream_handle and len(launch[0][1]) == 2
        assert "IExecutionContext.execute_async_v3" not in names
    else:
        assert ("IExecutionContext.set_input_shape", "input", (2, 1, 8, 8)) in trt._rec.calls
        assert [c[1] for c in trt._rec.calls if c[0] == "IExecutionContext.set_tensor_address"] == ["input", "logits"]
        assert ("IExecutionContext.execute_async_v3", FakeCuda.stream_handle) in trt._rec.calls
        assert "IExecutionContext.execute_async_v2" not in names  # exists on 8.5, must not be used
    assert ("EngineInspector.execution_context=", runner.context) in trt._rec.calls
    # copies: input 2*1*8*8 float32 in, logits 2*10 float32 out; GPU compute inside end-to-end
    assert [c[0] for c in cuda.copies] == ["htod", "dtoh"] and cuda.copies[0][2] == 512 and cuda.copies[1][2] == 80
    assert 0 < gpu_ms < e2e_ms
    summary = trt_engine.summarize_layers(layer_json, "fp16")
    assert summary["by_precision"] == {"FP16": 3} and summary["unknown"] == 0


def test_layer_summary_counts_layers_outside_the_requested_precision():
    trt = make_tensorrt("8.5.2.2")
    data, _ = trt_engine.build_engine_bytes(trt, ONNX_LIKE, "int8")
    with trt_engine.TrtRunner(trt, FakeCuda(), data, (1, 1, 8, 8)) as runner:
        summary = trt_engine.summarize_layers(runner.layer_info_json(), "int8")
    assert summary["total"] == 3  # the Reformat is bookkeeping
    assert summary["by_precision"] == {"INT8": 2, "FP16": 1}
    assert summary["not_in_requested"] == 1 and summary["not_in_requested_names"] == ["gemm"]
    assert document.precision_ran({"runtime": "tensorrt", "precision": "int8", "layers": summary}) == "int8"
    # INT8 requested but TensorRT chose FP16 for every layer: never labelled INT8
    only_fp16 = {"runtime": "tensorrt", "precision": "int8", "layers": {"by_precision": {"FP16": 3}}}
    assert document.precision_ran(only_fp16) == "fp16"


# --- the whole bench command with a stand-in TensorRT -----------------------------------------------------


def _graphs(tmp_path: Path) -> dict[str, str]:
    return {role: str(path) for role, path in write_tiny_graphs(tmp_path, prefix="", dynamic_logits=False).items()}


def _run_bench(monkeypatch, trt, graphs, cache, extra=()):
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda_mem, "load_backend", lambda preferred="auto": FakeCuda())
    argv = ["bench", "--iters", "5", "--warmup", "1", "--cache-dir", str(cache)]
    for role, path in graphs.items():
        argv += ["--graph", f"{role}={path}"]
    args = trt_bench.parse_args(argv + list(extra))
    doc = trt_bench.bench(args)
    json.dumps(doc)  # the document must serialise
    return doc


def test_nano_rule_nothing_is_labelled_int8_and_fp16_is_the_comparison(monkeypatch, tmp_path):
    graphs = _graphs(tmp_path)
    doc = _run_bench(monkeypatch, make_tensorrt("8.2.1.8", fast_int8=False), graphs, tmp_path / "cache")
    assert doc["runtime"] == "tensorrt" and doc["platform"]["fast_int8"] is False
    runs = {(r["graph"], r["precision"]): r for r in doc["runs"]}
    int8 = runs[("int8", "int8")]
    assert int8["status"] == "not-buildable" and NANO_INT8_ERROR in int8["reason"]
    assert "latency_ms" not in int8
    assert not any(m["precision_ran"] == "int8" for m in document.measurements_from_document(doc))
    # the student with Q/DQ stripped on the device (onnx is installed here), timed in FP32 and FP16
    assert runs[("int8-stripped", "fp32")]["status"] == "ok" and runs[("int8-stripped", "fp16")]["status"] == "ok"
    assert doc["graphs"]["int8-stripped"]["stripped_on_device"] == {"weights": 1, "activations": 1}
    assert document.comparisons_from_document(doc) == [("fp32", "fp16"), ("student-fp32", "student-fp16")]
    assert document.NANO_NOTE in document.notes_from_document(doc)
    assert runs[("fp32", "fp16")]["io_api"] == "binding indices + execute_async_v2"


def test_int8_capable_device_headlines_int8_and_reuses_cached_engines(monkeypatch, tmp_path):
    graphs = _graphs(tmp_path)
    cache = tmp_path / "cache"
    doc = _run_bench(monkeypatch, make_tensorrt("8.5.2.2", fast_int8=True), graphs, cache, ["--batch", "1,4"])
    runs = {(r["graph"], r["precision"]): r for r in doc["runs"] if r["batch"] == 4}
    assert set(runs) == {("fp32", "fp32"), ("fp32", "fp16"), ("int8", "int8")}
    assert runs[("fp32", "fp16")]["input_shape"] == [4, 1, 8, 8]
    assert runs[("int8", "int8")]["status"] == "ok"
    assert runs[("int8", "int8")]["layers"]["by_precision"] == {"FP16": 1, "INT8": 2}
    assert document.precision_ran(runs[("int8", "int8")]) == "int8"
    assert document.comparisons_from_document(doc) == [("fp32", "int8"), ("fp32", "fp16")]
    assert runs[("int8", "int8")]["latency_ms"]["gpu_compute"]  # raw GPU compute samples come back too
    assert all(r["engine"]["cache_hit"] is False for r in doc["runs"])
    assert len(list(cache.glob("*.engine"))) == 6  # one per graph, precision and batch size

    trt_again = make_tensorrt("8.5.2.2", fast_int8=True)
    again = _run_bench(monkeypatch, trt_again, graphs, cache, ["--batch", "1,4"])
    assert all(r["engine"]["cache_hit"] is True for r in again["runs"])
    assert "Builder.build_serialized_network" not in trt_again._rec.names()

    other_version = make_tensorrt("8.6.1", fast_int8=True)  # a TensorRT upgrade invalidates the cache
    third = _run_bench(monkeypatch, other_version, graphs, cache)
    assert all(r["engine"]["cache_hit"] is False for r in third["runs"])


def test_tensorrt_10_bench_uses_the_tensor_api(monkeypatch, tmp_path):
    graphs = _graphs(tmp_path)
    doc = _run_bench(monkeypatch, make_tensorrt("10.3.0"), graphs, tmp_path / "cache")
    assert {r["io_api"] for r in doc["runs"] if r["status"] == "ok"} == {"tensor names + execute_async_v3"}
    assert doc["runs"][0]["engine"]["build"]["network_flags"].startswith("none")


# --- defects found by reading TensorRT's real sources (issue 14) --------------------------------------------


def test_tensorrt_8_0_is_refused_in_one_line_before_any_attribute_error():
    trt = make_tensorrt("8.0.1.6")
    assert not hasattr(trt.ProfilingVerbosity, "DETAILED")  # the stand-in is 8.0's API
    with pytest.raises(trt_engine.UnsupportedTensorRT, match=r"TensorRT 8.0.1.6 .*JetPack 4.6.1 or later"):
        trt_engine.build_engine_bytes(trt, ONNX_LIKE, "fp16")


def test_tensorrt_8_0_bench_passes_over_python_tensorrt_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(trt_bench.trtexec_runner, "find_trtexec", lambda *a, **k: None)
    doc = _run_bench(monkeypatch, make_tensorrt("8.0.1.6"), _graphs(tmp_path), tmp_path / "cache")
    assert doc["runtime"] == "onnxruntime-fallback"
    assert "TensorRT 8.0.1.6 has no engine inspector" in doc["fallback_reason"]


def test_a_failed_build_reports_its_own_first_specific_error():
    trt = make_tensorrt("8.2.1.8", fast_int8=False)
    logger = trt_engine.make_logger(trt, echo=NULL)
    logger.log(types.SimpleNamespace(name="ERROR"), "an earlier build's error")
    with pytest.raises(trt_engine.EngineBuildError) as err:
        trt_engine.build_engine_bytes(trt, QDQ_LIKE, "int8", logger=logger)
    assert NANO_INT8_ERROR in str(err.value)
    assert "earlier build" not in str(err.value) and "Assertion engine" not in str(err.value)
    assert trt_engine.first_specific_error(["Error Code 2: Internal Error (Assertion engine != nullptr failed. )"]
                                           ).startswith("Error Code 2")  # nothing better was logged


def test_the_second_run_needs_no_onnx_package(monkeypatch, tmp_path):
    """JetPack has no `onnx`: a cached engine's input shape comes from its build record, else the engine."""
    graphs = {k: v for k, v in _graphs(tmp_path).items() if k != "int8-stripped"}
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError, as on a stock JetPack
    cache = tmp_path / "cache"
    first = _run_bench(monkeypatch, make_tensorrt("8.2.1.8"), graphs, cache, ["--batch", "1,4"])
    second = _run_bench(monkeypatch, make_tensorrt("8.2.1.8"), graphs, cache, ["--batch", "1,4"])
    for doc in (first, second):
        assert all(r["status"] == "ok" for r in doc["runs"]), [r.get("reason") for r in doc["runs"]]
    assert all(r["engine"]["cache_hit"] for r in second["runs"])
    assert {tuple(r["input_shape"]) for r in second["runs"] if r["batch"] == 4} == {(4, 1, 8, 8)}
    assert len(list(cache.glob("*.json"))) == len(list(cache.glob("*.engine"))) == 6  # a record per engine
    for record in cache.glob("*.json"):
        record.unlink()  # an older cache without records: the shape is read from the engine itself
    third = _run_bench(monkeypatch, make_tensorrt("8.2.1.8"), graphs, cache, ["--batch", "1,4"])
    assert all(r["status"] == "ok" and r["engine"]["cache_hit"] for r in third["runs"])
    assert {tuple(r["input_shape"]) for r in third["runs"] if r["batch"] == 4} == {(4, 1, 8, 8)}


def test_the_cache_key_holds_program_version_builder_settings_and_platform():
    trt = make_tensorrt("10.3.0")
    base = {"program": "2", "jetpack": "6.1", "cuda_runtime": "12.6", "precision": "fp16", "strongly_typed": False}
    key = trt_engine.engine_cache_key("abc", trt.__version__, base)
    for field, other in (("program", "3"), ("jetpack", "6.2"), ("cuda_runtime", "12.2"), ("strongly_typed", True)):
        assert trt_engine.engine_cache_key("abc", trt.__version__, {**base, field: other}) != key, field
    assert trt_engine.engine_cache_key("abc", trt.__version__, dict(base)) == key
    assert trt_engine.engine_cache_key("abc", "10.4.0", base) != key  # another TensorRT


@pytest.mark.parametrize("precision,half,expected", [("fp32", False, "fp32"), ("fp16", True, "fp16"),
                                                     ("int8", False, "int8")])
def test_tensorrt_11_builds_strongly_typed_networks_without_precision_flags(precision, half, expected):
    trt = make_tensorrt("11.0.1")
    assert not hasattr(trt.BuilderFlag, "INT8") and not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    graph = QDQ_LIKE if precision == "int8" else ONNX_LIKE + (b" float16" if half else b"")
    data, info = trt_engine.build_engine_bytes(trt, graph, precision)
    assert ("Builder.create_network", 1 << 1) in trt._rec.calls
    assert "IBuilderConfig.set_flag" not in trt._rec.names()
    assert info["network_flags"] == "STRONGLY_TYPED" and info["builder_flags"] == []
    assert json.loads(data)["precision"] == expected


def test_tensorrt_11_fast_int8_comes_from_the_compute_capability():
    trt = make_tensorrt("11.0.1")
    assert not hasattr(trt.Builder(None), "platform_has_fast_int8")
    orin = trt_engine.platform_flags(trt, None, "8.7")
    assert orin["fast_int8"] is True and orin["fast_fp16"] is True and "compute capability 8.7" in orin["source"]
    assert trt_engine.platform_flags(trt, None, "5.3")["fast_int8"] is False  # Nano (sm_53)
    assert trt_engine.fast_precisions_from_compute_capability("6.2")["fast_int8"] is False  # TX2
    assert trt_engine.fast_precisions_from_compute_capability("6.1") == {"fast_int8": True, "fast_fp16": False}


def test_tensorrt_11_bench_times_fp16_from_the_fp16_graph_only(monkeypatch, tmp_path):
    graphs = _graphs(tmp_path)
    fp16 = tmp_path / "model.fp16.onnx"
    import onnx

    model = onnx.load(graphs["fp32"])
    model.doc_string = "float16 weights"  # what the stand-in parser looks for (an FP16 graph names float16 types)
    onnx.save(model, str(fp16))
    graphs = {"fp32": graphs["fp32"], "int8": graphs["int8"], "fp16": str(fp16)}
    cuda = FakeCuda()
    cuda.describe = lambda: {"backend": "stand-in", "gpu_name": "Orin", "compute_capability": "8.7",
                             "cuda_runtime": "12.6", "cuda_driver": "12.6"}
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt("11.0.1"))
    monkeypatch.setattr(cuda_mem, "load_backend", lambda preferred="auto": cuda)
    argv = ["bench", "--iters", "3", "--warmup", "1", "--cache-dir", str(tmp_path / "cache")]
    for role, path in graphs.items():
        argv += ["--graph", f"{role}={path}"]
    doc = trt_bench.bench(trt_bench.parse_args(argv))
    runs = {(r["graph"], r["precision"]): r for r in doc["runs"]}
    assert set(runs) == {("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8")}
    assert all(r["status"] == "ok" for r in runs.values())
    assert document.precision_ran(runs[("fp16", "fp16")]) == "fp16"
    assert document.precision_ran(runs[("fp32", "fp32")]) == "fp32"
    assert doc["platform"]["fast_int8"] is True and "compute capability" in doc["platform"]["fast_precisions_source"]
    without = trt_bench.plan_runs({"fp32": 1}, "tensorrt", True, strongly_typed=True)
    assert without[1][:2] == ("fp32", "fp16") and "FP16 graph" in without[1][2]


def test_an_unexpected_device_error_is_one_line_with_where_it_happened(monkeypatch, tmp_path, capsys):
    trt = make_tensorrt("8.5.2.2")

    def broken(self, *args):
        raise AttributeError("'tensorrt.tensorrt.Builder' object has no attribute 'nope'")

    trt.Builder.create_builder_config = broken
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda_mem, "load_backend", lambda preferred="auto": FakeCuda())
    graphs = _graphs(tmp_path)
    code = trt_bench.main(["build", graphs["fp32"], "--out", str(tmp_path / "x.engine")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "AttributeError" in err and "test_trt_contract.py" in err


def test_a_missing_cuda_binding_passes_over_to_trtexec_with_the_reason(monkeypatch, tmp_path):
    def no_cuda(preferred="auto"):
        raise cuda_mem.CudaUnavailable("no CUDA Python binding works here (pycuda: No module named 'pycuda')")

    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt("10.3.0"))
    monkeypatch.setattr(cuda_mem, "load_backend", no_cuda)
    monkeypatch.setattr(trt_bench.trtexec_runner, "find_trtexec", lambda *a, **k: "/usr/src/tensorrt/bin/trtexec")
    runtime, trt, cuda, why = trt_bench.choose_runtime("auto")
    assert runtime == "trtexec" and trt is None and "no CUDA Python binding" in why
    with pytest.raises(SystemExit, match="no CUDA Python binding"):
        trt_bench.choose_runtime("tensorrt")


# --- the stand-ins against NVIDIA's names (tests/data/tensorrt_api_names.json) ------------------------------


def _public(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


@pytest.mark.parametrize("version", ["8.0.1.6", "8.2.1.8", "8.5.2.2", "10.3.0", "11.0.1"])
def test_every_stand_in_attribute_is_in_that_versions_real_api(version):
    """A stand-in that offers a name the real version lacks would let a wrong branch pass: none may."""
    from . import trt_api_names as real

    row = real.table_version(version)
    trt = make_tensorrt(version)
    ours = {"_rec", "__version__"}
    for name in sorted(_public(trt) - ours):
        assert real.has(row, name), (row, name)
    for enum in ("BuilderFlag", "NetworkDefinitionCreationFlag", "ProfilingVerbosity", "LayerInformationFormat",
                 "DataType", "MemoryPoolType", "TensorIOMode"):
        if hasattr(trt, enum):
            for member in _public(getattr(trt, enum)):
                assert real.has(row, f"{enum}.{member}"), (row, enum, member)
    builder = trt.Builder(None)
    objects = {"Builder": builder, "IBuilderConfig": builder.create_builder_config()}
    if version >= "8.2":
        data, _ = ((None, None) if version.startswith("8.0") else
                   trt_engine.build_engine_bytes(trt, ONNX_LIKE, "fp32", logger=trt_engine.make_logger(trt, NULL)))
        engine = trt.Runtime(None).deserialize_cuda_engine(data)
        objects.update({"ICudaEngine": engine, "IExecutionContext": engine.create_execution_context(),
                        "EngineInspector": engine.create_engine_inspector()})
    for cls, obj in objects.items():
        extra = {"shapes", "plan", "logger"}  # the stand-ins' own bookkeeping, not API
        for name in sorted(_public(obj) - extra):
            assert real.has(row, f"{cls}.{name}"), (row, cls, name)


def test_engines_are_timed_in_alternating_rounds(monkeypatch, tmp_path):
    """Clock or temperature drift during a run must hit every engine alike: rounds go engine after engine."""
    trt = make_tensorrt("8.5.2.2", fast_int8=True)
    doc = _run_bench(monkeypatch, trt, _graphs(tmp_path), tmp_path / "cache", ["--iters", "6", "--rounds", "3",
                                                                               "--warmup", "0"])
    assert doc["settings"]["rounds"] == 3
    ok = [r for r in doc["runs"] if r["status"] == "ok"]
    assert len(ok) == 3 and all(len(r["latency_ms"]["end_to_end"]) == 6 for r in ok)
    # every timed iteration is one launch (no warm-up here); the order is checked by the next test
    launches = [c for c in trt._rec.calls if c[0] == "IExecutionContext.execute_async_v3"]
    assert len(launches) == 3 * 6
    assert trt_bench.round_sizes(200, 5) == [40] * 5 and trt_bench.round_sizes(7, 3) == [3, 2, 2]
    assert trt_bench.round_sizes(2, 5) == [1, 1]


def test_run_rounds_interleaves_and_isolates_a_failing_engine():
    order = []

    def timer(name, fail_at=None):
        n = yield
        done = 0
        while n:
            for _ in range(n):
                done += 1
                if done == fail_at:
                    raise RuntimeError(f"{name} lost the device")
                order.append(name)
            n = yield
        return {"name": name, "done": done}

    results, errors = trt_bench.run_rounds({"a": timer("a"), "b": timer("b", fail_at=3), "c": timer("c")}, 4, 2)
    assert order == ["a", "a", "b", "b", "c", "c", "a", "a", "c", "c"]
    assert results == {"a": {"name": "a", "done": 4}, "c": {"name": "c", "done": 4}}
    assert "lost the device" in str(errors["b"])
