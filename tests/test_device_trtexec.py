"""The device program's ``bench`` through trtexec, end to end, with a recording stand-in trtexec.

What this proves: with no Python TensorRT and no CUDA binding the device program picks trtexec, builds each
engine once and times the cached one, reads the layer precisions from ``--exportLayerInfo`` and the times from
``--exportTimes`` (files of the formats ``samples/common/sampleReporting.cpp`` writes, ``tests/data/trtexec/``,
constructed from that source), and turns TensorRT's "no INT8" refusal into the Nano comparison. The flags per
release and the parsers against real recordings are ``tests/test_trtexec_runner.py``. What it does not prove:
that a board's real trtexec accepts these flags (no TensorRT here).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jetson import cuda_mem, trt_bench
from sqakd_edge.bench.remote import document

from .tiny_graphs import write_tiny_graphs

pytestmark = [pytest.mark.contract, pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript")]
DATA = Path(__file__).parent / "data" / "trtexec"
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
    assert int8["status"] == "ok" and int8["layers"]["by_precision"] == {"FP16": 1, "INT8": 1}
    assert int8["latency_ms"]["gpu_compute"][0] == 1.0 and len(int8["latency_ms"]["end_to_end"]) == 5
    assert document.precision_ran(int8) == "int8"  # INT8 layers seen in trtexec's per-layer report
    assert document.precision_ran({**int8, "layers": {"error": "no layer info"}}) == "unverified"
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
    assert document.comparisons_from_document(doc)[0] == ("fp32", "fp16")
    assert document.NANO_NOTE in document.notes_from_document(doc)
    assert not any(m["precision_ran"] == "int8" for m in document.measurements_from_document(doc))
