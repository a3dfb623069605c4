"""``sqakd-edge bench`` end to end on tiny exported graphs, its bad inputs, and Ctrl-C."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqakd_edge import atomic
from sqakd_edge.bench.results import validate_results
from sqakd_edge.bench.runners import OrtRunner
from sqakd_edge.cli import main

from .bench_fixtures import cached_export, copy_export, export_fp32, quantize_qdq, rehash, tiny_model

REPO = Path(__file__).resolve().parents[1]
FAST = ["--iters", "6", "--warmup", "1", "--threads", "1", "--round-iters", "3", "--no-plot", "--quiet"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return cached_export(tmp_path_factory)


def bench(*args: str):
    return CliRunner().invoke(main, ["bench", *map(str, args)])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bench_end_to_end_writes_valid_results_report_and_plot(export, tmp_path):
    out = tmp_path / "out"
    result = bench(export, "--batch", "1,4", "--iters", "24", "--warmup", "2", "--threads", "1", "--out", out)
    assert result.exit_code == 0, result.output
    assert "ORT INT8" in result.stdout and "ORT FP32" in result.stdout and "over ORT FP32" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["latency.png", "report.md", "results.json"]

    doc = json.loads((out / "results.json").read_text())
    assert validate_results(doc) == []
    assert doc["settings"]["batches"] == [1, 4] and doc["settings"]["threads"] == 1
    assert doc["command"][:3] == ["sqakd-edge", "bench", str(export)]
    assert [(r["name"], r["batch"]) for r in doc["results"]] == [("fp32", 1), ("int8", 1), ("fp32", 4), ("int8", 4)]
    for r in doc["results"]:
        assert r["latency_ms"]["n"] == len(r["samples_ms"]) == 24
        assert r["latency_ms"]["min"] <= r["latency_ms"]["median"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["max"]
    int8 = next(m for m in doc["models"] if m["name"] == "int8")
    assert int8["precision_ran"] == "int8" and int8["info"]["placement"]["int8_layers"] == 3
    assert int8["model_bytes"] == (export / "model.int8.onnx").stat().st_size
    assert [(s["batch"], s["baseline"], s["candidate"]) for s in doc["speedups"]] == [(1, "fp32", "int8"),
                                                                                       (4, "fp32", "int8")]
    assert doc["device"] is None
    assert doc["environment"]["cpu"]["logical_cores"] == os.cpu_count()
    assert any("PyTorch eager baseline skipped" in n for n in doc["notes"])

    report = (out / "report.md").read_text()
    for heading in ("## Latency", "## Speed-up", "## Models", "## Settings and environment", "latency.png"):
        assert heading in report
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_output_folder_and_duration(export, tmp_path):
    mine = copy_export(export, tmp_path / "export")
    result = bench(mine, "--duration", "0.05", "--warmup", "0", "--round-iters", "2", "--graphs", "int8", "--quiet")
    assert result.exit_code == 0, result.output
    doc = json.loads((mine / "bench" / "results.json").read_text())
    assert doc["settings"]["iters"] is None and doc["settings"]["duration_s"] == 0.05
    assert [m["name"] for m in doc["models"]] == ["int8"] and doc["speedups"] == []


def test_python_dash_m_entry_point_runs(export, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "sqakd_edge", "bench", str(export), "--out", str(tmp_path), *FAST],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "results.json").is_file() and "wrote" in proc.stdout


def test_importing_the_bench_package_loads_no_heavy_modules():
    code = ("import sys, sqakd_edge.bench.api, sqakd_edge.bench.backend, sqakd_edge.bench.runners;"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'matplotlib') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


# --- bad input (issue 5, section 7): one-line errors, nothing written --------------------------------------


def test_directory_without_manifest(tmp_path):
    assert_one_line_error(bench(tmp_path, *FAST), "has no manifest.json", "sqakd-edge export")


def test_missing_directory(tmp_path):
    assert_one_line_error(bench(tmp_path / "nope", *FAST), "does not exist")


def test_graphs_with_different_input_shapes(export, tmp_path):
    mine = copy_export(export, tmp_path / "export")
    other = tmp_path / "other.fp32.onnx"
    export_fp32(tiny_model(0), other, size=10)
    quantize_qdq(other, mine / "model.int8.onnx")
    rehash(mine)
    result = bench(mine, *FAST)
    assert_one_line_error(result, "different input shapes", "re-export")
    assert not (mine / "bench").exists()


@pytest.mark.parametrize("args, needle", [
    (["--iters", "0"], "--iters must be a positive number"),
    (["--iters", "-3"], "--iters must be a positive number"),
    (["--warmup", "-1"], "--warmup"),
    (["--duration", "0"], "--duration must be a positive"),
    (["--iters", "5", "--duration", "1"], "not both"),
    (["--batch", "0"], "--batch takes positive integers"),
    (["--batch", "1,x"], "--batch takes positive integers"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["--graphs", "int4"], "unknown graph"),
    (["--graphs", "eager"], "cannot run eager"),
])
def test_bad_settings(export, tmp_path, args, needle):
    assert_one_line_error(bench(export, "--out", tmp_path / "o", "--quiet", *args), needle)
    assert not (tmp_path / "o" / "results.json").exists()


def test_batch_the_graph_does_not_accept(tmp_path_factory, tmp_path):
    fixed = cached_export(tmp_path_factory, "fixed")
    result = bench(fixed, "--batch", "1,8", "--out", tmp_path, *FAST)
    assert_one_line_error(result, "accepts only batch 1", "--batch 1")
    assert bench(fixed, "--batch", "1", "--out", tmp_path, *FAST).exit_code == 0


def test_graph_onnx_runtime_cannot_load(export, tmp_path):
    mine = copy_export(export, tmp_path / "export")
    (mine / "model.int8.onnx").write_bytes(b"\x08\x07garbage that is not a protobuf graph")
    rehash(mine)
    assert_one_line_error(bench(mine, *FAST), "ONNX Runtime cannot load model.int8.onnx")


def test_graph_changed_after_export_and_missing_graph(export, tmp_path):
    mine = copy_export(export, tmp_path / "export")
    (mine / "model.int8.onnx").write_bytes((mine / "model.fp32.onnx").read_bytes())
    assert_one_line_error(bench(mine, *FAST), "does not match the hash")
    (mine / "model.int8.onnx").unlink()
    assert_one_line_error(bench(mine, *FAST), "model.int8.onnx is named in manifest.json but missing")


def test_broken_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    assert_one_line_error(bench(tmp_path, *FAST), "not valid JSON")
    (tmp_path / "manifest.json").write_text(json.dumps({"schema": "something-else"}))
    assert_one_line_error(bench(tmp_path, *FAST), "not an sqakd-edge export manifest")


def test_fp32_graph_as_int8_is_labelled_by_what_ran(export, tmp_path):
    mine = copy_export(export, tmp_path / "export")
    (mine / "model.int8.onnx").write_bytes((mine / "model.fp32.onnx").read_bytes())
    rehash(mine)
    assert bench(mine, *FAST).exit_code == 0
    doc = json.loads((mine / "bench" / "results.json").read_text())
    fallback = next(m for m in doc["models"] if m["name"] == "int8")
    assert fallback["precision_requested"] == "int8" and fallback["precision_ran"] == "fp32"
    assert "INT8" not in fallback["label"].split("(")[0]  # "ORT FP32 (INT8 requested)"
    assert any("int8 was requested but fp32 ran" in w for w in doc["warnings"])


def test_remote_flags_on_the_local_device_are_refused(export):
    assert_one_line_error(bench(export, "--host", "me@nano", *FAST), "--host are for a remote --device")
    assert_one_line_error(bench(export, "--setup", "--docker", "img", *FAST), "--setup, --docker are for a remote")
    assert_one_line_error(bench(export, "--device", "jetson-nano", *FAST), "also give --host")


# --- Ctrl-C -------------------------------------------------------------------------------------------------


def test_ctrl_c_during_timing_leaves_previous_results_untouched(export, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert bench(export, "--out", out, *FAST).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    calls = {"n": 0}
    real_infer = OrtRunner.infer

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 12:  # in the middle of the timed rounds
            raise KeyboardInterrupt
        return real_infer(self, batch)

    monkeypatch.setattr(OrtRunner, "infer", interrupted)
    result = bench(export, "--out", out, *FAST)
    assert result.exit_code == 130 and calls["n"] == 12
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    monkeypatch.undo()
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(OrtRunner, "infer", interrupted)
    calls["n"] = 0
    assert bench(export, "--out", fresh, *FAST).exit_code == 130
    assert not fresh.exists() or not any(fresh.iterdir())


def test_ctrl_c_while_writing_leaves_no_partial_file(export, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}\n')

    def interrupted_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "fsync", interrupted_fsync)
    assert bench(export, "--out", out, *FAST).exit_code == 130
    assert (out / "results.json").read_text() == '{"old": true}\n'
    assert [p.name for p in out.iterdir()] == ["results.json"]  # no temporary files left behind


def test_outputs_get_the_mode_open_would_give_them(export, tmp_path):
    """One atomic writer for the package: its files are 0666 & ~umask like open()'s, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        assert bench(export, "--out", tmp_path / "out", *FAST).exit_code == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes
