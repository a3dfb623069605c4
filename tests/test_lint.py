"""The QDQ linter: one small hand-made graph per rule (onnx.helper), plus a clean graph and the CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from sqakd_edge.cli import main
from sqakd_edge.errors import ExportError
from sqakd_edge.export.lint import lint_file, lint_model

C = 4


class G:
    """A tiny graph builder: x (N, C, 8, 8) -> ... -> output ``y``."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def init(self, arr: np.ndarray, name: str | None = None) -> str:
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], name: str | None = None, **attrs: object) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or f"{op}_{self.n}", **attrs))
        return out

    def qdq(self, x: str, scale: float | np.ndarray = 0.1, zp: np.ndarray | None = None, name: str = "act",
            axis: int | None = None) -> str:
        s = self.init(np.asarray(scale, np.float32))
        z = self.init(np.zeros(np.shape(scale), np.int8) if zp is None else zp)
        kw = {"axis": axis} if axis is not None else {}
        q = self.node("QuantizeLinear", [x, s, z], name=f"{name}_q", **kw)
        return self.node("DequantizeLinear", [q, s, z], name=f"{name}_dq", **kw)

    def weight(self, shape: tuple[int, ...] = (C, C, 3, 3), axis: int = 0, name: str = "w") -> str:
        q = self.init(np.ones(shape, np.int8), f"{name}_int8")
        s = self.init(np.full(shape[axis], 0.01, np.float32), f"{name}_scale")
        z = self.init(np.zeros(shape[axis], np.int8), f"{name}_zp")
        return self.node("DequantizeLinear", [q, s, z], name=f"{name}_dq", axis=axis)

    def qconv(self, x: str, name: str = "conv", qdq_input: bool = True) -> str:
        xin = self.qdq(x, name=f"{name}_in") if qdq_input else x
        return self.node("Conv", [xin, self.weight(name=f"{name}_w")], name=name, pads=[1, 1, 1, 1])

    def model(self, out: str, opset: int = 13) -> onnx.ModelProto:
        self.nodes.append(helper.make_node("Identity", [out], ["y"], name="out_identity"))
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, 8, 8])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, "g", [x], [y], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 8
        return m


def rules(model: onnx.ModelProto, target: str = "tensorrt") -> dict[str, str]:
    return {f.rule: f.severity for f in lint_model(model, target)}


def clean_model() -> onnx.ModelProto:
    g = G()
    a = g.node("Relu", [g.qconv("x", "conv1")])
    b = g.qconv(a, "conv2")
    return g.model(g.node("Relu", [g.node("Add", [b, g.qdq("x", name="skip")])]))


def test_clean_graph_has_no_findings():
    assert lint_model(clean_model()) == []


def test_opset_below_13_is_an_error_and_above_13_a_warning():
    assert rules(_model_with_one_conv(opset=12))["opset"] == "error"
    assert rules(_model_with_one_conv(opset=17))["opset"] == "warning"
    assert "opset" not in rules(_model_with_one_conv(opset=17), "onnxruntime")


def _model_with_one_conv(opset: int = 13) -> onnx.ModelProto:
    g = G()
    return g.model(g.qconv("x"), opset=opset)


def test_nonzero_zero_point():
    g = G()
    x = g.qdq("x", zp=np.array(3, np.int8))
    m = g.model(g.node("Conv", [x, g.weight()], pads=[1, 1, 1, 1]))
    assert rules(m)["zero-point"] == "error"
    assert "zero-point" not in rules(m, "onnxruntime")


def test_uint8_qdq_and_missing_zero_point():
    g = G()
    x = g.qdq("x", zp=np.array(0, np.uint8))
    m = g.model(g.node("Conv", [x, g.weight()], pads=[1, 1, 1, 1]))
    found = lint_model(m)
    assert [f.rule for f in found if f.rule == "uint8"] == ["uint8", "uint8"]
    assert "uint8" not in rules(m, "onnxruntime")
    g = G()
    s = g.init(np.asarray(0.1, np.float32))
    q = g.node("QuantizeLinear", [g.node("Relu", ["x"]), s], name="q_no_zp")
    m = g.model(g.node("Conv", [g.node("DequantizeLinear", [q, s]), g.weight()], pads=[1, 1, 1, 1]))
    found = rules(m)
    assert found["zero-point-missing"] == "error" and "uint8" not in found  # named for what it is
    assert "zero-point-missing" not in rules(m, "onnxruntime")


def test_scale_dtype_and_zero_point_shape_are_tensorrt_parser_checks():
    """TensorRT 8.2's ONNX parser checks that scales are float32 and zero-points have the scale's size."""
    g = G()
    s64 = g.init(np.asarray(0.1, np.float64))
    zp = g.init(np.asarray(0, np.int8))
    q = g.node("QuantizeLinear", [g.node("Relu", ["x"]), s64, zp], name="q_f64")
    m = g.model(g.node("Conv", [g.node("DequantizeLinear", [q, s64, zp]), g.weight()], pads=[1, 1, 1, 1]))
    assert rules(m)["scale-dtype"] == "error" and "scale-dtype" not in rules(m, "onnxruntime")
    g = G()
    s = g.init(np.asarray(0.1, np.float32))
    zp3 = g.init(np.zeros(3, np.int8))
    q = g.node("QuantizeLinear", [g.node("Relu", ["x"]), s, zp3], name="q_zp3")
    m = g.model(g.node("Conv", [g.node("DequantizeLinear", [q, s, zp3]), g.weight()], pads=[1, 1, 1, 1]))
    assert rules(m)["zero-point-shape"] == "error" and rules(m, "onnxruntime")["zero-point-shape"] == "error"


def test_an_opset_above_the_devices_is_an_error():
    g = G()
    x = g.qdq("x")
    m = g.model(g.node("Conv", [x, g.weight()], pads=[1, 1, 1, 1]))
    m.opset_import[0].version = 17
    assert "opset-device" not in {f.rule for f in lint_model(m)}
    found = {f.rule: f for f in lint_model(m, "tensorrt", max_opset=13)}
    assert found["opset-device"].severity == "error" and "--opset 13" in found["opset-device"].fix


def test_scale_not_constant():
    g = G()
    scale = g.node("ReduceMax", ["x"], keepdims=0)
    z = g.init(np.asarray(0, np.int8))
    q = g.node("QuantizeLinear", ["x", scale, z])
    m = g.model(g.node("Conv", [g.node("DequantizeLinear", [q, scale, z]), g.weight()], pads=[1, 1, 1, 1]))
    assert rules(m)["scale-constant"] == "error"
    assert rules(m, "onnxruntime")["scale-constant"] == "error"


@pytest.mark.parametrize("bad", [0.0, -0.5, float("inf")])
def test_zero_negative_or_infinite_scale(bad):
    g = G()
    q = g.init(np.ones((C, C, 3, 3), np.int8))
    s = g.init(np.array([0.1, bad, 0.1, 0.1], np.float32))
    z = g.init(np.zeros(C, np.int8))
    w = g.node("DequantizeLinear", [q, s, z], name="w_dq", axis=0)
    m = g.model(g.node("Conv", [g.qdq("x"), w], pads=[1, 1, 1, 1]))
    found = [f for f in lint_model(m) if f.rule == "scale-positive"]
    assert len(found) == 1 and found[0].node == "w_dq" and "dead-channel" in found[0].fix


def test_weight_axis_wrong_for_conv_and_right_for_conv_transpose():
    g = G()
    m = g.model(g.node("Conv", [g.qdq("x"), g.weight(axis=1)], pads=[1, 1, 1, 1]))
    assert rules(m)["weight-axis"] == "error"
    g = G()  # ConvTranspose keeps its output channels on axis 1: axis=1 is right
    m = g.model(g.node("ConvTranspose", [g.qdq("x"), g.weight(axis=1)], pads=[1, 1, 1, 1]))
    assert "weight-axis" not in rules(m)
    g = G()  # Gemm with transB=1: weight [out, in], axis 0
    flat = g.node("Flatten", [g.qdq("x")])
    m = g.model(g.node("Gemm", [flat, g.weight((C, C * 64), axis=1)], transB=1))
    assert rules(m)["weight-axis"] == "error"


def _float_weight_qdq(g: G, q_axis: int, dq_axis: int, scale: np.ndarray | None = None) -> str:
    """A float weight -> Q(axis) -> DQ(axis), the form PyTorch's exporter writes (no int8 initializer)."""
    w = g.init(np.ones((C, C, 3, 3), np.float32), "wf")
    s = g.init(np.full(C, 0.01, np.float32) if scale is None else scale, "wf_scale")
    z = g.init(np.zeros(C, np.int8), "wf_zp")
    q = g.node("QuantizeLinear", [w, s, z], name="wf_q", axis=q_axis)
    return g.node("DequantizeLinear", [q, s, z], name="wf_dq", axis=dq_axis)


def test_float_weight_through_q_and_dq_is_a_weight_with_its_axis_checked():
    g = G()  # legal: per-channel on the output channels of a Conv; it is a weight, not an activation
    m = g.model(g.node("Conv", [g.qdq("x"), _float_weight_qdq(g, 0, 0)], pads=[1, 1, 1, 1]))
    assert "activation-per-channel" not in rules(m) and "weight-axis" not in rules(m)
    g = G()  # wrong axis on both nodes: each is named
    m = g.model(g.node("Conv", [g.qdq("x"), _float_weight_qdq(g, 1, 1)], pads=[1, 1, 1, 1]))
    assert sorted(f.node for f in lint_model(m) if f.rule == "weight-axis") == ["wf_dq", "wf_q"]
    assert "activation-per-channel" not in rules(m)
    g = G()  # Q right, DQ wrong: the DQ is named
    m = g.model(g.node("Conv", [g.qdq("x"), _float_weight_qdq(g, 0, 1)], pads=[1, 1, 1, 1]))
    assert [f.node for f in lint_model(m) if f.rule == "weight-axis"] == ["wf_dq"]


def test_text_scale_or_zero_point_is_a_finding_naming_the_dtype():
    g = G()
    conv = g.node("Conv", [g.qdq("x"), _float_weight_qdq(g, 0, 0)], pads=[1, 1, 1, 1])
    m = g.model(conv)
    scale = next(i for i in m.graph.initializer if i.name == "wf_scale")
    scale.CopyFrom(helper.make_tensor("wf_scale", TensorProto.STRING, [C], [b"0.01"] * C))
    found = [f for f in lint_model(m) if f.rule == "scale-dtype"]
    assert {f.node for f in found} == {"wf_q", "wf_dq"} and "holds text" in found[0].message
    assert not [f for f in lint_model(m) if f.rule == "malformed-node"]
    zp = next(i for i in m.graph.initializer if i.name == "wf_zp")
    zp.CopyFrom(helper.make_tensor("wf_zp", TensorProto.STRING, [C], [b"0"] * C))
    scale.CopyFrom(numpy_helper.from_array(np.full(C, 0.01, np.float32), "wf_scale"))
    assert rules(m)["zero-point-dtype"] == "error"


def test_activation_quantized_per_channel():
    g = G()
    x = g.qdq("x", scale=np.full(C, 0.1, np.float32), axis=1)
    m = g.model(g.node("Conv", [x, g.weight()], pads=[1, 1, 1, 1]))
    assert rules(m)["activation-per-channel"] == "error"
    assert rules(m, "onnxruntime")["activation-per-channel"] == "warning"


def test_qdq_on_network_output():
    g = G()
    out = g.qdq(g.qconv("x"), name="logits")
    m = g.model(out)
    m.graph.node.pop()  # drop the Identity: the DQ writes the output itself
    m.graph.node[-1].output[0] = "y"
    assert rules(m)["qdq-on-output"] == "error"


def test_quantize_not_followed_by_dequantize():
    g = G()
    s, z = g.init(np.asarray(0.1, np.float32)), g.init(np.asarray(0, np.int8))
    q = g.node("QuantizeLinear", ["x", s, z])
    clipped = g.node("Clip", [q, g.init(np.asarray(0, np.int8)), g.init(np.asarray(15, np.int8))])
    m = g.model(g.node("Conv", [g.node("DequantizeLinear", [clipped, s, z]), g.weight()], pads=[1, 1, 1, 1]))
    assert rules(m)["q-dq-pair"] == "error"
    assert "q-dq-pair" not in rules(m, "onnxruntime")


def test_identity_between_initializer_and_dequantize():
    g = G()
    q = g.init(np.ones((C, C, 3, 3), np.int8))
    s = g.node("Identity", [g.init(np.full(C, 0.01, np.float32))], name="shared_scale_identity")
    z = g.init(np.zeros(C, np.int8))
    w = g.node("DequantizeLinear", [q, s, z], axis=0)
    m = g.model(g.node("Conv", [g.qdq("x"), w], pads=[1, 1, 1, 1]))
    found = {f.rule: f for f in lint_model(m)}
    assert found["identity-initializer"].node == "shared_scale_identity"
    assert "scale-constant" not in found  # constant through the Identity: one finding, not two


def test_qdq_on_weighted_layer_output():
    g = G()
    y = g.qdq(g.node("Relu", [g.qconv("x")]), name="after_conv")
    m = g.model(g.node("Sigmoid", [y]))
    assert rules(m)["qdq-weighted-output"] == "warning"
    g = G()  # the same Q/DQ feeding the next conv is the normal input quantization: fine
    m = g.model(g.qconv(g.node("Relu", [g.qconv("x", "c1")]), "c2"))
    assert "qdq-weighted-output" not in rules(m)


def test_residual_add_without_skip_qdq():
    g = G()
    m = g.model(g.node("Relu", [g.node("Add", [g.qconv("x"), "x"], name="residual_add")]))
    found = {f.rule: f for f in lint_model(m)}
    assert found["residual-add-skip"].severity == "warning" and found["residual-add-skip"].node == "residual_add"
    assert "residual-add-skip" not in rules(m, "onnxruntime")


def test_concat_inputs_with_different_scales():
    g = G()
    cat = g.node("Concat", [g.qdq("x", 0.1, name="a"), g.qdq("x", 0.2, name="b")], axis=1)
    m = g.model(cat)
    assert rules(m)["concat-scales"] == "warning"
    g = G()
    m = g.model(g.node("Concat", [g.qdq("x", 0.1, name="a"), g.qdq("x", 0.1, name="b")], axis=1))
    assert "concat-scales" not in rules(m)


def test_conv_with_quantized_input_but_float_weight():
    g = G()
    w = g.init(np.ones((C, C, 3, 3), np.float32))
    m = g.model(g.node("Conv", [g.qdq("x"), w], pads=[1, 1, 1, 1]))
    assert rules(m)["partial-qdq"] == "warning"


def test_float_graph_is_clean():
    g = G()
    w = g.init(np.ones((C, C, 3, 3), np.float32))
    m = g.model(g.node("Add", [g.node("Conv", ["x", w], pads=[1, 1, 1, 1]), "x"]))
    assert lint_model(m) == []


def test_findings_are_sorted_errors_first_and_print_node_rule_fix():
    g = G()
    x = g.qdq("x", zp=np.array(0, np.uint8))
    m = g.model(g.node("Relu", [g.node("Add", [g.node("Conv", [x, g.weight()], pads=[1, 1, 1, 1]), "x"])]))
    found = lint_model(m)
    assert [f.severity for f in found] == sorted(f.severity for f in found)  # "error" < "warning"
    line = found[0].line()
    assert found[0].rule in line and found[0].node in line and "fix:" in line


# ---------------------------------------------------------------------------------------------------------
# files and the CLI
# ---------------------------------------------------------------------------------------------------------

def test_not_an_onnx_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a protobuf \x00\x01\x02")
    with pytest.raises(ExportError, match="not an ONNX model"):
        lint_file(bad)
    result = CliRunner().invoke(main, ["check", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and result.output.startswith("error: ")
    missing = CliRunner().invoke(main, ["check", str(tmp_path / "missing.onnx")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_check_command_exit_codes(tmp_path):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(clean_model(), good)
    g = G()
    onnx.save(g.model(g.node("Conv", [g.qdq("x", zp=np.array(2, np.int8)), g.weight()], pads=[1, 1, 1, 1])), bad)
    ok = CliRunner().invoke(main, ["check", str(good)])
    assert ok.exit_code == 0 and "0 error(s), 0 warning(s)" in ok.output
    res = CliRunner().invoke(main, ["check", str(bad)])
    assert res.exit_code == 1 and "zero-point" in res.output and "fix:" in res.output
    ort = CliRunner().invoke(main, ["check", str(bad), "--target", "onnxruntime"])
    assert ort.exit_code == 0


def test_export_tidy_up_folds_identity_and_constants():
    from sqakd_edge.export.onnx_io import (
        constants_to_initializers,
        drop_unused_initializers,
        fold_identity_initializers,
    )

    g = G()
    q = g.init(np.ones((C, C, 3, 3), np.int8))
    s = g.node("Identity", [g.init(np.full(C, 0.01, np.float32))], name="shared_scale_identity")
    z = g.node("Constant", [], value=numpy_helper.from_array(np.zeros(C, np.int8)))
    w = g.node("DequantizeLinear", [q, s, z], axis=0)
    m = g.model(g.node("Conv", [g.qdq("x"), w], pads=[1, 1, 1, 1]))
    assert {"identity-initializer"} <= {f.rule for f in lint_model(m)}
    constants_to_initializers(m)
    fold_identity_initializers(m)
    drop_unused_initializers(m)
    assert not [n for n in m.graph.node if n.op_type in ("Constant",) or n.name == "shared_scale_identity"]
    assert lint_model(m) == []


def test_cycles_are_one_finding_not_a_hang_or_a_recursion_error():
    """A BatchNorm cycle used to hang at 100 % CPU and an Identity cycle to raise RecursionError."""
    for op in ("Identity", "BatchNormalization"):
        g = G()
        s = g.init(np.asarray(0.1, np.float32))
        zp = g.init(np.asarray(0, np.int8))
        g.nodes.append(helper.make_node(op, ["loop_b"], ["loop_a"], name="a"))
        g.nodes.append(helper.make_node(op, ["loop_a"], ["loop_b"], name="b"))
        q = g.node("QuantizeLinear", ["loop_a", s, zp], name="q")
        m = g.model(g.node("DequantizeLinear", [q, s, zp], name="dq"))
        found = lint_model(m)
        assert [f.rule for f in found] == ["graph-cycle"] and found[0].severity == "error", found


def test_malformed_qdq_nodes_and_constants_are_findings_not_tracebacks():
    cases = []
    g = G()
    q = g.node("QuantizeLinear", [], name="q_no_inputs")
    cases.append((g.model(g.node("Relu", [q])), "malformed-node"))
    g = G()
    s, zp = g.init(np.asarray(0.1, np.float32)), g.init(np.asarray(0, np.int8))
    q = g.node("QuantizeLinear", [g.node("Relu", ["x"]), s, zp], name="q_text_axis", axis=0)
    q_node = g.nodes[-1]
    q_node.attribute[0].CopyFrom(helper.make_attribute("axis", "one"))
    cases.append((g.model(g.node("DequantizeLinear", [q, s, zp])), "malformed-node"))
    g = G()
    bad = TensorProto(name="bad_scale", data_type=TensorProto.FLOAT, dims=[4], raw_data=b"\x00\x01")  # 2 of 16 bytes
    g.inits.append(bad)
    zp = g.init(np.asarray(0, np.int8))
    q = g.node("QuantizeLinear", [g.node("Relu", ["x"]), "bad_scale", zp], name="q_bad_raw")
    cases.append((g.model(g.node("DequantizeLinear", [q, "bad_scale", zp])), "malformed-initializer"))
    for model, rule in cases:
        found = {f.rule: f for f in lint_model(model)}
        assert rule in found and found[rule].severity == "error", (rule, list(found))
