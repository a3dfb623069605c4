"""The device program (jetson/) run for real where it can be: Python 3.6 syntax, graph surgery with onnx and
ONNX Runtime, the ONNX Runtime fallback end to end as a subprocess, and the platform parsers on recorded text."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from jetson import onnx_prep, platform_info, trt_bench
from sqakd_edge.bench.remote import document

JETSON = Path(__file__).resolve().parents[1] / "jetson"
VENV_BIN = Path(sys.executable).parent


def test_device_program_parses_as_python_3_6():
    for path in sorted(JETSON.glob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 6))


def test_vermin_finds_nothing_newer_than_python_3_6():
    vermin = VENV_BIN / "vermin"
    if not vermin.exists():
        pytest.skip("vermin is not installed (pip install vermin)")
    proc = subprocess.run([str(vermin), "-q", "-t=3.6-", "--violations", str(JETSON)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- graph surgery ----------------------------------------------------------------------------------------


def _conv_graph(weight_path: str) -> onnx.ModelProto:
    """input -> Conv(weights through `weight_path`) -> logits; weight_path: "qdq" | "identity-qdq" | "int8-dq"."""
    rng = np.random.RandomState(0)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    scale = (np.abs(w).reshape(4, -1).max(1) / 127).astype(np.float32)
    inits = [numpy_helper.from_array(scale, "w_scale"), numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
             numpy_helper.from_array(np.float32(0.05), "a_scale"), numpy_helper.from_array(np.int8(0), "a_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["input", "a_scale", "a_zp"], ["a_q"]),
             helper.make_node("DequantizeLinear", ["a_q", "a_scale", "a_zp"], ["a_dq"])]
    if weight_path == "int8-dq":
        q = np.clip(np.round(w / scale[:, None, None, None]), -128, 127).astype(np.int8)
        inits.append(numpy_helper.from_array(q, "w_int8"))
        nodes.append(helper.make_node("DequantizeLinear", ["w_int8", "w_scale", "w_zp"], ["w_dq"], axis=0))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
        src = "w"
        if weight_path == "identity-qdq":
            nodes.append(helper.make_node("Identity", ["w_scale"], ["w_scale_id"]))
            nodes.append(helper.make_node("Identity", ["w"], ["w_id"]))
            src = "w_id"
        sc = "w_scale_id" if weight_path == "identity-qdq" else "w_scale"
        nodes.append(helper.make_node("QuantizeLinear", [src, sc, "w_zp"], ["w_q"], axis=0))
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", sc, "w_zp"], ["w_dq"], axis=0))
    nodes.append(helper.make_node("Conv", ["a_dq", "w_dq"], ["logits"], pads=[1, 1, 1, 1]))
    x_info = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 6, 6])
    graph = helper.make_graph(nodes, "g", [x_info],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, 6, 6])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def test_identity_nodes_before_qdq_are_folded_and_the_graph_computes_the_same():
    model = _conv_graph("identity-qdq")
    x = np.random.RandomState(1).standard_normal((2, 1, 6, 6)).astype(np.float32)
    before = _run(model, x)
    assert onnx_prep.count_identity_before_qdq(model) == 3  # w -> Q, scale -> Q and DQ
    assert onnx_prep.fold_identity_initializers(model) == 2
    assert not any(n.op_type == "Identity" for n in model.graph.node)
    assert onnx_prep.count_identity_before_qdq(model) == 0
    onnx.checker.check_model(model)
    np.testing.assert_array_equal(_run(model, x), before)


@pytest.mark.parametrize("weight_path", ["qdq", "int8-dq"])
def test_strip_qdq_keeps_the_fake_quantized_weights(weight_path):
    model = _conv_graph(weight_path)
    x = (np.random.RandomState(2).randint(-100, 100, (2, 1, 6, 6)) * 0.05).astype(np.float32)  # on the grid
    before = _run(model, x)
    counts = onnx_prep.strip_qdq(model)
    onnx.checker.check_model(model)
    assert counts == {"weights": 1, "activations": 1}
    assert onnx_prep.count_qdq(model) == 0
    assert {i.name for i in model.graph.initializer} == {"w_dq"}  # scales, zero-points, raw weights gone
    # inputs already on the activation grid, so removing activation Q/DQ changes nothing: equal up to float error
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


def test_strip_qdq_refuses_a_computed_scale_with_a_clear_reason():
    model = _conv_graph("qdq")
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] == "w_q":
            node.input[1] = "computed_scale"
    with pytest.raises(ValueError, match="scale 'computed_scale' of a Q/DQ node is not a constant"):
        onnx_prep.strip_qdq(model)


# --- the ONNX Runtime fallback, run as on a device --------------------------------------------------------


def _save(model: onnx.ModelProto, path: Path) -> str:
    onnx.save(model, str(path))
    return str(path)


def test_fallback_bench_prints_one_json_document_and_says_it_is_not_tensorrt(tmp_path):
    fp32 = _conv_graph("qdq")
    onnx_prep.strip_qdq(fp32)
    graphs = {"fp32": _save(fp32, tmp_path / "f.onnx"), "int8": _save(_conv_graph("identity-qdq"), tmp_path / "q.onnx")}
    argv = [sys.executable, str(JETSON / "trt_bench.py"), "bench", "--iters", "7", "--warmup", "2", "--batch", "3,1",
            "--cache-dir", str(tmp_path / "cache")]
    for role, path in graphs.items():
        argv += ["--graph", f"{role}={path}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert proc.stdout.count("\n") == 1
    assert "[trt_bench]" in proc.stderr and "[trt_bench]" not in proc.stdout
    assert doc["schema"] == "sqakd-edge.device-results" and doc["schema_version"] == document.DEVICE_SCHEMA_VERSION
    assert document.document_problem(doc) is None  # what the workstation accepts
    assert doc["runtime"] == "onnxruntime-fallback" and "tensorrt" in doc["fallback_reason"]
    assert len(doc["runs"]) == 6
    runs = {(r["graph"], r["precision"]): r for r in doc["runs"] if r["batch"] == 3}
    assert runs[("fp32", "fp16")]["status"] == "skipped" and "needs TensorRT" in runs[("fp32", "fp16")]["reason"]
    ok = runs[("fp32", "fp32")]
    assert ok["input_shape"] == [3, 1, 6, 6] and len(ok["latency_ms"]["end_to_end"]) == 7
    assert ok["latency_ms"]["gpu_compute"] is None
    # raw facts only: no statistics, no verdict on precision, no comparisons (the workstation derives them)
    assert not {"stats_ms", "throughput_per_s", "precision_ran"} & set(ok) and "comparisons" not in doc
    assert ok["sample_output"]["shape"][0] == 3  # the first rows of the output on the timing inputs
    # the Identity nodes of the QDQ graph were folded on the device, into the cache folder
    assert doc["graphs"]["int8"]["identity_folded"] == 2
    assert doc["graphs"]["int8"]["sha256"] != doc["graphs"]["int8"]["source_sha256"]
    # what the workstation makes of it: the CPU-fallback note, INT8 vs FP32, and the engines' agreement on the
    # same timing inputs (the QDQ graph differs from the float one only by activation rounding)
    assert document.FALLBACK_NOTE in document.notes_from_document(doc)
    assert document.comparisons_from_document(doc) == [("fp32", "int8")]
    measured = {(m["name"], m["batch"]): m for m in document.measurements_from_document(doc)}
    assert measured[("fp32", 3)]["precision_ran"] == "fp32" and measured[("int8", 3)]["precision_ran"] == "int8"
    versus = measured[("int8", 3)]["info"]["vs_fp32_engine"]
    assert versus["rows"] == 3 and 0.5 < versus["top1_agreement"] <= 1.0 and 0 < versus["max_abs_diff"] < 0.5


def test_bad_arguments_are_one_line_errors(tmp_path):
    script = str(JETSON / "trt_bench.py")
    proc = subprocess.run([sys.executable, script, "bench", "--graph", "fp8=x.onnx"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "error: --graph takes ROLE=PATH with ROLE one of fp32, int8, int8-stripped, fp16, got 'fp8=x.onnx'"]
    proc = subprocess.run([sys.executable, script, "bench", "--graph", f"fp32={tmp_path}/missing.onnx"],
                          capture_output=True, text=True)
    assert proc.stderr.strip() == f"error: graph file {tmp_path}/missing.onnx does not exist"


def test_the_device_log_median_is_numpys():
    samples = list(np.random.RandomState(3).gamma(2.0, 1.5, 101))
    assert trt_bench.log_median(samples) == pytest.approx(np.median(samples))
    assert trt_bench.log_median(samples[:100]) == pytest.approx(np.median(samples[:100]))


# --- platform report parsers, on text recorded from JetPack tools ----------------------------------------


def test_l4t_and_jetpack_from_recorded_text():
    text = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19 2022"
    assert platform_info.l4t_release(text) == "R32.7.1"
    assert platform_info.l4t_release("garbage") is None
    assert platform_info.L4T_32_MINOR_TO_JETPACK["32.7"] == "4.6.x"


def test_nvpmodel_query_output():
    assert platform_info.nvpmodel_mode("NV Power Mode: MAXN\n0") == {"name": "MAXN", "id": 0}
    assert platform_info.nvpmodel_mode("NVPM WARN: ...\nNV Power Mode: 5W\n1\n") == {"name": "5W", "id": 1}
    assert platform_info.nvpmodel_mode("nothing") is None


def test_tegrastats_power_rails():
    nano = ("RAM 1632/3956MB (lfb 4x4MB) CPU [12%@1479,5%@1479] EMC_FREQ 0% GR3D_FREQ 0% PLL@27C "
            "POM_5V_IN 2556/2556 POM_5V_GPU 40/40 POM_5V_CPU 442/442")
    orin = "RAM 2215/7620MB CPU [1%@729] GR3D_FREQ 0% cpu@47.5C VDD_IN 4935mW/4935mW VDD_CPU_GPU_CV 516mW/516mW"
    assert platform_info.parse_tegrastats_power(nano) == ("POM_5V_IN", 2556)
    assert platform_info.parse_tegrastats_power(orin) == ("VDD_IN", 4935)
    assert platform_info.parse_tegrastats_power("RAM 1/2MB") is None


def test_tegrastats_sampler_reports_a_missing_tool_instead_of_failing():
    with platform_info.TegrastatsSampler(command="/nonexistent/tegrastats") as sampler:
        pass
    assert "tegrastats not available" in sampler.summary()["error"]


def test_power_modes_are_read_by_name_from_nvpmodel_conf():
    # /etc/nvpmodel.conf lines as on an Orin Nano with JetPack 6.2, which renumbered the modes
    conf = ("< PARAM TYPE=FILE NAME=CPU_ONLINE >\n< POWER_MODEL ID=0 NAME=15W >\nCPU_ONLINE CORE_0 1\n"
            "< POWER_MODEL ID=1 NAME=25W >\n< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n< PM_CONFIG DEFAULT=2 >\n")
    assert platform_info.nvpmodel_conf_modes(conf) == [(0, "15W"), (1, "25W"), (2, "MAXN_SUPER")]
    assert platform_info.nvpmodel_conf_modes("") == []


def test_the_probe_imports_pycuda_driver_not_just_the_package(tmp_path):
    """A pycuda whose compiled driver fails (built against another numpy, no libcuda) must show as not ok."""
    pkg = tmp_path / "pycuda"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VERSION_TEXT = '2024.1.2'\n")
    (pkg / "driver.py").write_text("raise ImportError('numpy.core.multiarray failed to import')\n")
    probe = Path(__file__).resolve().parents[1] / "jetson" / "probe.py"
    proc = subprocess.run([sys.executable, str(probe), str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    report = json.loads(proc.stdout)
    pycuda = report["modules"]["pycuda"]
    assert pycuda["ok"] is False and "numpy.core.multiarray" in pycuda["error"]
    assert "gid" in report and "trtexec" in report
