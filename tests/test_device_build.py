"""``sqakd-edge build``: real one-line errors here (no TensorRT on this machine); the build path itself runs
against the recorded TensorRT stand-ins of the contract tests (it proves the wiring, not a real engine)."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sqakd_edge.cli import main
from sqakd_edge.engine.build import build_engine
from sqakd_edge.errors import ConfigError, EngineError

try:
    import tensorrt  # noqa: F401

    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False


def _model(path, identity=False):
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Identity", ["w"], ["w_id"])] if identity else []
    nodes.append(helper.make_node("Conv", ["input", "w_id" if identity else "w"], ["logits"]))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, 4, 4])
    graph = helper.make_graph(nodes, "g", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.skipif(HAVE_TRT, reason="checks the message shown when TensorRT is missing")
def test_build_without_tensorrt_is_one_line_with_the_install_hint(tmp_path):
    result = CliRunner().invoke(main, ["build", str(_model(tmp_path / "m.onnx")), "--precision", "fp16"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: sqakd-edge build needs the Python package 'tensorrt'")
    assert not list(tmp_path.glob("*.engine"))


def test_build_argument_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_engine(tmp_path / "missing.onnx", "fp16")
    with pytest.raises(ConfigError, match="--precision must be one of"):
        build_engine(_model(tmp_path / "m.onnx"), "int4")
    result = CliRunner().invoke(main, ["build", str(tmp_path / "missing.onnx")])
    assert result.exit_code == 2 and result.output.startswith("error: ONNX file")


@pytest.mark.contract
def test_build_uses_the_device_builder_and_writes_the_engine(tmp_path, monkeypatch):
    from .test_trt_contract import make_tensorrt

    trt = make_tensorrt("8.6.1")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    model = _model(tmp_path / "model.onnx", identity=True)
    built = build_engine(model, "fp16", batch=8, timing_cache=tmp_path / "timing.cache")
    assert built.path == tmp_path / "model.fp16.engine" and built.path.stat().st_size == built.bytes
    assert built.info["identity_folded"] == 1 and built.info["workspace_api"] == "set_memory_pool_limit"
    assert built.info["input"] == {"name": "input", "shape": [8, 1, 8, 8]}  # the stand-in's recorded input
    assert ("Builder.build_serialized_network", ["FP16"]) in trt._rec.calls
    assert (tmp_path / "timing.cache").exists()
    assert not list(tmp_path.glob("*.tmp-*"))  # written atomically


@pytest.mark.contract
def test_int8_build_on_a_gpu_without_fast_int8_is_refused(tmp_path, monkeypatch):
    from .test_trt_contract import make_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt("8.2.1.8", fast_int8=False))
    with pytest.raises(EngineError, match="no fast INT8 .* build --precision fp16 instead"):
        build_engine(_model(tmp_path / "model.onnx"), "int8")
    assert not list(tmp_path.glob("*.engine"))
