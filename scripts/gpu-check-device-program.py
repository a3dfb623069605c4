#!/usr/bin/env python3
"""Smoke-check the device program's CUDA layer on a real NVIDIA GPU (not a Jetson).

1. ``jetson/cuda_mem.py``'s cuda-python backend: device and page-locked host allocation, async copies on
   its stream, CUDA events, the device description.
2. ``jetson/trt_engine.py``'s ``TrtRunner`` buffer and stream plumbing with that backend: the "network" is
   a stand-in execution context whose ``execute_async_v3`` enqueues a real device-to-device copy of the
   input buffer into the output buffer on the runner's stream, so the output read back proves that the
   pointers, shapes, stream and event order are right. TensorRT itself is not involved.
3. If ``tensorrt`` happens to be importable, the real device program (``trt_bench.py bench``) on two tiny
   graphs exported with torch.

Prints one JSON report (and writes it to ``$OUT/gpu_check.json`` when ``OUT`` is set). Exit status 0 only
when every check that could run passed.
"""

import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jetson import cuda_mem, trt_engine  # noqa: E402


def check_backend(report):
    """Round-trip a buffer through device memory with the cuda-python backend; time it with events."""
    cuda = cuda_mem.load_backend("cuda-python")
    report["describe"] = cuda.describe()
    host_in = cuda.host_empty((4, 3, 32, 32), np.float32)
    host_in[...] = np.random.RandomState(0).standard_normal(host_in.shape)
    host_out = cuda.host_empty((4, 3, 32, 32), np.float32)
    ptr = cuda.alloc(host_in.nbytes)
    start, end = cuda.event(), cuda.event()
    cuda.record(start)
    cuda.htod(ptr, host_in)
    cuda.dtoh(host_out, ptr)
    cuda.record(end)
    cuda.synchronize()
    ms = cuda.elapsed_ms(start, end)
    report["roundtrip_equal"] = bool(np.array_equal(host_in, host_out))
    report["roundtrip_ms"] = ms
    cuda.free(ptr)
    cuda.close()
    return report["roundtrip_equal"] and ms >= 0


def check_runner(report):
    """Drive TrtRunner with a stand-in context whose launch is a real device-to-device copy."""
    from cuda.bindings import runtime as rt

    cuda = cuda_mem.load_backend("cuda-python")
    shapes = {"input": None, "logits": None}
    addresses = {}
    calls = []

    class Context:
        def set_input_shape(self, name, shape):
            shapes["input"] = tuple(shape)
            shapes["logits"] = tuple(shape)  # the stand-in "network" copies its input
            return True

        def get_tensor_shape(self, name):
            return shapes[name]

        def set_tensor_address(self, name, ptr):
            addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            calls.append(stream_handle)
            nbytes = int(np.prod(shapes["input"])) * 4
            err = rt.cudaMemcpyAsync(addresses["logits"], addresses["input"], nbytes,
                                     rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream_handle)[0]
            return int(err) == 0

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["input", "logits"][i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "input" else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return "float32"

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine()

    class ILogger:
        def __init__(self):
            pass

    trt = types.SimpleNamespace(__version__="10.0.0-standin", ILogger=ILogger, Runtime=Runtime,
                                TensorIOMode=types.SimpleNamespace(INPUT=1, OUTPUT=2), nptype=np.dtype)
    x = np.random.RandomState(1).standard_normal((8, 3, 16, 16)).astype(np.float32)
    with trt_engine.TrtRunner(trt, cuda, b"plan", x.shape) as runner:
        runner.set_input(x)
        events = [cuda.event() for _ in range(4)]
        timings = [runner.infer_timed(events) for _ in range(20)]
        out = np.array(runner.output(), copy=True)
    cuda.close()
    report["runner_output_equal"] = bool(np.array_equal(out, x))
    report["runner_stream_used"] = bool(calls) and all(c == cuda.stream_handle for c in calls)
    report["gpu_ms_median"] = float(np.median([g for g, _ in timings]))
    report["e2e_ms_median"] = float(np.median([e for _, e in timings]))
    report["gpu_within_e2e"] = all(0 <= g <= e for g, e in timings)
    return report["runner_output_equal"] and report["runner_stream_used"] and report["gpu_within_e2e"]


def check_real_tensorrt(report):
    """Run the real device program when TensorRT is importable (None when it is not)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        report["tensorrt"] = f"not importable: {exc}"
        return None
    import torch

    tmp = Path(tempfile.mkdtemp())
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    torch.onnx.export(net, torch.randn(1, 3, 32, 32), str(tmp / "fp32.onnx"), opset_version=13, dynamo=False,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}})
    proc = subprocess.run([sys.executable, str(REPO / "jetson" / "trt_bench.py"), "bench", "--graph",
                           f"fp32={tmp / 'fp32.onnx'}", "--iters", "50", "--batch", "1,8", "--cache-dir",
                           str(tmp / "cache")], capture_output=True, text=True, timeout=600)
    report["trt_bench_rc"] = proc.returncode
    report["trt_bench_stderr_tail"] = proc.stderr[-2000:]
    if proc.returncode != 0:
        return False
    doc = json.loads(proc.stdout)
    report["trt_bench"] = {"runtime": doc["runtime"], "platform": doc["platform"].get("gpu"),
                           "tensorrt": doc["platform"].get("tensorrt"),
                           "runs": [(r["graph"], r["precision"], r["batch"], r["status"], r.get("precision_ran"),
                                     (r.get("stats_ms") or {}).get("gpu_compute", {}).get("median"))
                                    for r in doc["runs"]]}
    return doc["runtime"] == "tensorrt" and all(r["status"] == "ok" for r in doc["runs"])


def main():
    """Run the checks, print and save the report."""
    report = {"python": sys.version.split()[0]}
    ok = True
    for name, check in (("backend", check_backend), ("runner", check_runner), ("tensorrt", check_real_tensorrt)):
        try:
            result = check(report)
        except Exception as exc:  # report and go on to the next check
            report[name + "_error"] = f"{type(exc).__name__}: {exc}"
            result = False
        report[name + "_passed"] = result
        ok = ok and result is not False
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
