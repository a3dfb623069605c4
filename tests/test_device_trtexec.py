"""The trtexec runner of the device program, against NVIDIA's flags per release and a recording stand-in trtexec.

What this proves: the argument list per TensorRT version follows ``samples/common/sampleOptions.cpp`` of
NVIDIA/TensorRT at each release tag (cited per assertion), the parsers read the formats
``samples/common/sampleReporting.cpp`` writes (``tests/data/trtexec/``, constructed from that source), the
version banner decodes by each release's formula, and the whole ``bench`` command runs through trtexec with
no CUDA Python binding: build once, time the cached engine, layer precisions from ``--exportLayerInfo``.
What it does not prove: that a board's real trtexec accepts these flags (no TensorRT here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jetson import cuda_mem, trt_bench, trtexec_runner

from .tiny_graphs import write_tiny_graphs

pytestmark = [pytest.mark.contract, pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")]
DATA = Path(__file__).parent / "data" / "trtexec"


def _argv(version, precision="int8", **kw):
    return trtexec_runner.build_argv("trtexec", version, "m.onnx", "m.engine", precision, "/x", **kw)


def test_flags_per_release():
    a80 = _argv((8, 0, 1))
    assert "--explicitBatch" in a80 and "--workspace=256" in a80  # 8.0.1: --workspace, --explicitBatch
    assert not any(a.startswith("--profilingVerbosity") or a.startswith("--exportLayerInfo") for a in a80)
    a82 = _argv((8, 2, 1))
    assert "--profilingVerbosity=detailed" in a82 and any(a.startswith("--exportLayerInfo=") for a in a82)  # 8.2.1
    a85 = _argv((8, 5, 2))
    assert "--memPoolSize=workspace:256M" in a85 and "--explicitBatch" in a85  # 8.5.2 adds --memPoolSize
    a103 = _argv((10, 3, 0))
    assert "--explicitBatch" not in a103 and {"--fp16", "--int8"} <= set(a103)  # 10.3: no --explicitBatch
    a11 = _argv((11, 1, 0))
    assert "--stronglyTyped" in a11 and "--int8" not in a11 and "--fp16" not in a11  # 11.1: no --fp16/--int8
    assert "--fp16" not in _argv((8, 2, 1), "fp32") and "--int8" not in _argv((8, 2, 1), "fp16")
    timed = _argv((8, 2, 1), load_engine=True, input_name="input", input_shape=[4, 1, 8, 8])
    assert "--loadEngine=m.engine" in timed and "--onnx=m.onnx" not in timed and "--shapes=input:4x1x8x8" in timed


def test_version_banner_per_release_formula():
    assert trtexec_runner.parse_version("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec") == (8, 2, 1)
    assert trtexec_runner.parse_version("[TensorRT v8502]") == (8, 5, 2)
    assert trtexec_runner.parse_version("[TensorRT v100300]") == (10, 3, 0)
    assert trtexec_runner.parse_version("[TensorRT v110100]") == (11, 1, 0)
    assert trtexec_runner.parse_version("no banner") is None


def test_parsers_read_the_formats_of_sample_reporting():
    old = trtexec_runner.parse_times((DATA / "times-8.2.json").read_text())
    new = trtexec_runner.parse_times((DATA / "times-10.3.json").read_text())
    assert old["end_to_end"] == pytest.approx([1.2, 1.21, 1.22, 1.23, 1.24])  # endToEndMs
    assert old["gpu_compute"][0] == 1.0
    assert new["end_to_end"] == pytest.approx([1.1, 1.11, 1.12, 1.13, 1.14])  # 10.x writes no endToEndMs
    profile = trtexec_runner.parse_profile((DATA / "profile-10.3.json").read_text())
    assert [p["name"] for p in profile] == ["conv1 + relu1", "conv2 + relu2", "gemm"]
    layers = trtexec_runner.parse_layer_info((DATA / "layers-8.2.json").read_text())
    from jetson import trt_engine

    assert trt_engine.summarize_layers(json.dumps(layers), "int8")["by_precision"] == {"INT8": 1, "FP16": 1}


def test_first_error_skips_generic_follow_ups():
    log = ("[12/03/2026-10:00:00] [I] [TRT] ...\n"
           "[12/03/2026-10:00:01] [E] Error[10]: [optimizer.cpp::computeCosts::3728] Networks with "
           "QuantizeLayer/DequantizeLayer layers require hardware with Int8 support.\n"
           "[12/03/2026-10:00:01] [E] Error[2]: [builder.cpp::buildSerializedNetwork::636] Error Code 2: Internal "
           "Error (Assertion engine != nullptr failed. )\n"
           "[12/03/2026-10:00:01] [E] Engine could not be created from network\n"
           "&&&& FAILED TensorRT.trtexec [TensorRT v8201] # trtexec --onnx=m.onnx --int8\n")
    assert "require hardware with Int8 support" in trtexec_runner.first_error(log)


FAKE = r'''#!{python}
"""A stand-in trtexec: prints the banner of TensorRT {version}, logs its argv, writes the export files."""
import json, os, shutil, sys
data = {data!r}
with open({log!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
print("&&&& RUNNING TensorRT.trtexec [TensorRT v{banner}] # trtexec")
opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
if "help" in sys.argv[1] if len(sys.argv) > 1 else False:
    sys.exit(0)
onnx = opts.get("onnx", "")
if "int8" in onnx and {no_int8} and "--int8" in sys.argv:
    print("[E] Error[10]: Networks with QuantizeLayer/DequantizeLayer layers require hardware with Int8 support.")
    print("[E] Error[2]: Error Code 2: Internal Error (Assertion engine != nullptr failed. )")
    print("&&&& FAILED TensorRT.trtexec")
    sys.exit(1)
if "saveEngine" in opts:
    open(opts["saveEngine"], "wb").write(b"engine for " + onnx.encode())
for flag, name in (("exportTimes", "times-8.2.json"), ("exportLayerInfo", "layers-8.2.json"),
                   ("exportProfile", "profile-10.3.json")):
    if flag in opts:
        shutil.copyfile(os.path.join(data, name), opts[flag])
print("&&&& PASSED TensorRT.trtexec")
'''


def _fake_trtexec(tmp_path, version="8.2.1", banner="8201", no_int8=False):
    log = tmp_path / "trtexec.log"
    path = tmp_path / "trtexec"
    path.write_text(FAKE.format(python=sys.executable, version=version, data=str(DATA), log=str(log), banner=banner,
                                no_int8=no_int8))
    path.chmod(0o755)
    return path, log


def _bench(monkeypatch, tmp_path, trtexec, graphs, extra=()):
    def no_cuda(preferred="auto"):
        raise cuda_mem.CudaUnavailable("no CUDA Python binding works here (pycuda.driver: No module named 'pycuda')")

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # no Python TensorRT either
    monkeypatch.setattr(cuda_mem, "load_backend", no_cuda)
    monkeypatch.setenv("SQAKD_TRTEXEC", str(trtexec))
    argv = ["bench", "--iters", "5", "--warmup", "1", "--cache-dir", str(tmp_path / "cache"), "--input",
            "input:1x8x8", *extra]
    for role, path in graphs.items():
        argv += ["--graph", f"{role}={path}"]
    return trt_bench.bench(trt_bench.parse_args(argv))


def test_bench_through_trtexec_builds_once_and_reads_precisions(monkeypatch, tmp_path):
    graphs = {k: str(v) for k, v in write_tiny_graphs(tmp_path, prefix="", dynamic_logits=False).items()}
    trtexec, log = _fake_trtexec(tmp_path)
    doc = _bench(monkeypatch, tmp_path, trtexec, graphs, ["--batch", "1,4"])
    assert doc["runtime"] == "trtexec" and "tensorrt is not importable" in doc["fallback_reason"]
    assert doc["platform"]["tensorrt"] == "8.2.1" and doc["platform"]["fast_int8"] is True
    runs = {(r["graph"], r["precision"], r["batch"]): r for r in doc["runs"]}
    int8 = runs[("int8", "int8", 4)]
    assert int8["status"] == "ok" and int8["precision_ran"] == "mixed: FP16 1, INT8 1"
    assert int8["latency_ms"]["gpu_compute"][0] == 1.0 and int8["stats_ms"]["end_to_end"]["n"] == 5
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    builds = [c for c in calls if any(a.startswith("--saveEngine=") for a in c)]
    assert len(builds) == 6  # fp32 x {fp32, fp16} + int8, at two batch sizes
    assert all("--shapes=input:4x1x8x8" in c for c in calls if "--loadEngine" in " ".join(c) and
               any(a.endswith("4x1x8x8") for a in c))
    again = _bench(monkeypatch, tmp_path, trtexec, graphs, ["--batch", "1,4"])
    assert all(r["engine"]["cache_hit"] for r in again["runs"] if r["status"] == "ok")
    assert len([c for c in map(json.loads, log.read_text().splitlines()) if "--saveEngine" in " ".join(c)]) == 6


def test_trtexec_on_a_gpu_without_int8_reports_tensorrts_reason_and_the_nano_comparison(monkeypatch, tmp_path):
    graphs = {k: str(v) for k, v in write_tiny_graphs(tmp_path, prefix="", dynamic_logits=False).items()}
    trtexec, _ = _fake_trtexec(tmp_path, no_int8=True)
    doc = _bench(monkeypatch, tmp_path, trtexec, graphs)
    runs = {(r["graph"], r["precision"]): r for r in doc["runs"]}
    assert runs[("int8", "int8")]["status"] == "not-buildable"
    assert "require hardware with Int8 support" in runs[("int8", "int8")]["reason"]
    assert "Assertion" not in runs[("int8", "int8")]["reason"]
    assert doc["platform"]["fast_int8"] is False
    assert doc["comparisons"][0]["headline"]["label"] == "FP16 vs FP32 (FP32 graph)"
    assert not any(r["status"] == "ok" and "int8" in str(r.get("precision_ran")) for r in doc["runs"])
