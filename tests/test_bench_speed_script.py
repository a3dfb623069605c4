"""Smoke run of benchmarks/bench_speed.py on ResNet-20 only (a few seconds: one batch, one thread, few iterations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_speed_script_writes_its_table(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_speed.py"), "--models", "resnet20-cifar", "--batches", "2",
           "--threads", "1", "--budget", "0.1", "--min-iters", "3", "--warmup", "1", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "bench_speed.json").read_text())
    (config,) = doc["models"][0]["configs"]
    assert set(config["stats"]) == {"fp32", "int8-trt", "int8-ort", "int8-ort-int", "ort-qs", "ort-qs-u8", "eager"}
    assert config["precision_ran"]["int8-ort"] == "int8"
    # our --target onnxruntime graph of the W4A4 student: every quantized conv on an integer kernel, only the
    # float first and last layers (the paper's policy) in float; quantize_static's u8 graph quantizes all 20
    assert config["placement"]["int8-ort"]["int8_layers"] == 18
    assert config["placement"]["int8-ort"]["float_layers"] == 2
    assert config["placement"]["ort-qs-u8"]["float_layers"] == 0
    assert doc["models"][0]["parity"]["int8-ort"]["off"]["top1_agreement"] == 1.0  # exact graph, reference ORT
    assert "| 2 | 1 |" in (tmp_path / "bench_speed.md").read_text()
