"""Grid fit: exact when the trained grid fits the target, refused (or re-quantized on request) when not;
and the lowered module computes what its ONNX graph computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sqakd_edge.config import QuantConfig
from sqakd_edge.errors import ExportError
from sqakd_edge.export.fold import fold_batchnorm
from sqakd_edge.export.lower import lower
from sqakd_edge.export.onnx_io import to_onnx
from sqakd_edge.export.parity import run, session
from sqakd_edge.models import create_model
from sqakd_edge.quant import iter_quant_layers, prepare_qat


def student(quant: QuantConfig, seed: int = 0, size: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("resnet20", num_classes=10, in_channels=1)
    s = prepare_qat(model, quant).eval()
    with torch.no_grad():
        s(torch.randn(16, 1, size, size))
    return s


def layer(s: nn.Module, name: str = "layer1.0.conv1") -> nn.Module:
    return dict(iter_quant_layers(s))[name]


def test_affine_activation_is_refused_with_layer_reason_and_fix():
    s = student(QuantConfig(quantizer="interval", wbits=4, abits=4, deployable=False))
    with torch.no_grad():
        layer(s, "layer2.1.conv2").act_quantizer.lower.fill_(-0.25)
    folded = fold_batchnorm(s)
    with pytest.raises(ExportError) as err:
        lower(folded, "tensorrt")
    msg = str(err.value)
    assert "layer layer2.1.conv2" in msg and "non-zero lower bound" in msg
    assert "--allow-requantize" in msg and "deployable=True" in msg
    lowered = lower(folded, "tensorrt", allow_requantize=True)
    plan = lowered.plans["layer2.1.conv2"]
    assert plan.input_grid is None and plan.act.dtype == "int8" and (plan.act.qmin, plan.act.qmax) == (-127, 127)
    assert plan.act.float_clip is not None and plan.act.float_clip[0] == pytest.approx(-0.25)
    assert any("affine range" in note for note in lowered.requantized)


def test_unsigned_8bit_activations_need_int8_safe_grid_under_tensorrt_only():
    s = student(QuantConfig(quantizer="lsq", wbits=8, abits=8, deployable=False))
    folded = fold_batchnorm(s)
    with pytest.raises(ExportError, match=r"\[0, 255\] \(unsigned 8-bit\) does not fit TensorRT's signed int8"):
        lower(folded, "tensorrt")
    ort = lower(folded, "onnxruntime")  # uint8 holds [0, 255] exactly
    plan = ort.plans["layer1.0.conv1"]
    assert (plan.act.dtype, plan.act.qmin, plan.act.qmax, plan.act.int_clip) == ("uint8", 0, 255, False)
    assert ort.requantized == []
    trt = lower(folded, "tensorrt", allow_requantize=True)
    plan = trt.plans["layer1.0.conv1"]
    assert (plan.act.qmin, plan.act.qmax) == (0, 127)
    assert plan.act.scale == pytest.approx(float(layer(s).input_grid().scale) * 255 / 127)


def test_odd_8bit_weight_grid_needs_9_bits():
    s = student(QuantConfig(quantizer="dorefa", wbits=8, abits=4, deployable=False))
    folded = fold_batchnorm(s)
    with pytest.raises(ExportError, match="without zero needs 9 bits"):
        lower(folded, "onnxruntime")
    lowered = lower(folded, "onnxruntime", allow_requantize=True)
    w = lowered.plans["layer1.0.conv1"].weight_int
    assert w.dtype == torch.int8 and int(w.abs().max()) <= 127


def test_negative_gamma_turning_minus_128_into_plus_128_is_caught():
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10, in_channels=1)
    with torch.no_grad():
        model.layer1[0].conv1.weight[3, 0, 0, 0] = -100.0  # clamps to -128 on the 8-bit LSQ grid
        model.layer1[0].bn1.weight[3] = -1.0
    s = prepare_qat(model, QuantConfig(quantizer="lsq", wbits=8, abits=8)).eval()
    with torch.no_grad():
        s(torch.randn(8, 1, 10, 10))
    folded = fold_batchnorm(s)
    assert int(folded.quant_layers["layer1.0.conv1"].weight_int[3].max()) == 128
    with pytest.raises(ExportError, match=r"BatchNorm layer1.0.bn1 has a negative gamma on channel\(s\) \[3\]"):
        lower(folded, "tensorrt")
    assert int(lower(folded, "tensorrt", allow_requantize=True).plans["layer1.0.conv1"].weight_int.max()) == 127


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_int8_headroom_keeps_weight_values(bits):
    s = student(QuantConfig(quantizer="lsq", wbits=bits, abits=bits))
    folded = fold_batchnorm(s)
    plan = lower(folded, "onnxruntime").plans["layer2.0.conv1"]
    src = folded.quant_layers["layer2.0.conv1"]
    want = src.weight_int.double() * src.weight_scale.double().reshape(-1, 1, 1, 1)
    got = plan.weight_int.double() * plan.weight_scale.double().reshape(-1, 1, 1, 1)
    assert torch.allclose(got, want, rtol=1e-6, atol=0)
    if bits < 8:  # low-bit integers spread over int8: finer int32 bias grid for integer kernels
        assert int(plan.weight_int.abs().max()) > 2 ** (bits - 1)
    assert int(plan.weight_int.abs().max()) <= 127


def test_activation_specs_per_target():
    s = student(QuantConfig(quantizer="pact", wbits=4, abits=4))
    folded = fold_batchnorm(s)
    trt = lower(folded, "tensorrt").plans["layer1.0.conv1"].act
    ort = lower(folded, "onnxruntime").plans["layer1.0.conv1"].act
    scale = float(layer(s).input_grid().scale)
    assert (trt.dtype, trt.qmin, trt.qmax) == ("int8", 0, 15)
    assert trt.float_clip == pytest.approx((0.0, 15 * scale)) and not trt.int_clip
    assert (ort.dtype, ort.qmin, ort.qmax, ort.float_clip, ort.int_clip) == ("uint8", 0, 15, None, True)
    s8 = student(QuantConfig(quantizer="lsq", wbits=8, abits=8))  # [0, 127] after a ReLU: Q alone is exact
    assert lower(fold_batchnorm(s8), "tensorrt").plans["layer1.0.conv1"].act.float_clip is None


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
@pytest.mark.parametrize("quant", [("pact", 4), ("lsq", 2), ("dorefa", 8), ("interval", 4)])
def test_lowered_module_is_what_onnxruntime_computes_without_optimisations(target, quant):
    q = QuantConfig(quantizer=quant[0], wbits=quant[1], abits=quant[1], act_sign="auto")
    s = student(q, seed=3)
    lowered = lower(fold_batchnorm(s), target)
    x = torch.randn(8, 1, 10, 10)
    model = to_onnx(lowered.module, x[:1], 13)
    got = run(session(model.SerializeToString(), "off"), x.numpy())
    with torch.no_grad():
        want = lowered.module(x).numpy()
    # a semantic mismatch (a missing clip, a wrong integer type) changes most logits; float noise may flip a
    # rare rounding tie on another CPU, so allow a few elements off
    close = np.isclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    assert close.mean() >= 0.95, f"{(~close).sum()} of {close.size} logits differ"


class _Relu6Net(nn.Module):
    """conv -> BN -> ReLU6 three times (MobileNet style), pooled into a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(*[m for c_in, c_out in ((3, 8), (8, 8), (8, 8)) for m in
                                    (nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                                     nn.ReLU6(inplace=True))])
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean((2, 3)))


@pytest.mark.parametrize("step,fused", [(None, 1), (0.1, 0)])
def test_redundant_relu6_is_dropped_for_onnxruntime_fusion(step, fused):
    from collections import Counter

    torch.manual_seed(0)
    s = prepare_qat(_Relu6Net(), QuantConfig(quantizer="lsq", wbits=8, abits=8)).eval()
    x = torch.randn(16, 3, 8, 8)
    with torch.no_grad():
        s(x)
        if step is not None:  # grid [0, 127] x 0.1 reaches 12.7 > 6: the ReLU6 clips, so it stays
            s.body[6].act_quantizer.step.fill_(step)
        want = s(x).numpy()
    model = to_onnx(lower(fold_batchnorm(s), "onnxruntime").module, x[:1], 13)
    clips = Counter(n.op_type for n in model.graph.node)["Clip"]
    from sqakd_edge.export.parity import ParityThresholds, graph_parity

    result = graph_parity(model.SerializeToString(), x.numpy(), want, ParityThresholds(), inspect_kernels=True)
    assert result["off"]["max_abs_dlogit"] < 1e-3 * max(1.0, float(np.abs(want).max()))
    assert result["on"]["kernels"]["integer"].get("QLinearConv", 0) == fused
    assert clips == (3 if step is None else 4)  # uint8 integer clips (x2) + the first float ReLU6 (+ the kept one)


def test_uninitialised_student_is_refused(tmp_path):
    from sqakd_edge.export.api import ExportInputs, export_model

    s = prepare_qat(create_model("resnet20", num_classes=10, in_channels=1), QuantConfig()).eval()
    meta = {"name": "resnet20", "num_classes": 10, "in_channels": 1, "input_size": 8}
    with pytest.raises(ExportError, match="quantizers are not initialised"):
        export_model(ExportInputs(meta, student=s), tmp_path / "out", log=lambda _m: None)
    assert not (tmp_path / "out").exists()


def test_requantized_export_says_so_and_measures_the_cost(tmp_path):
    from sqakd_edge.export.api import ExportConfig, ExportInputs, export_model
    from sqakd_edge.export.inputs import ParityData

    s = student(QuantConfig(quantizer="lsq", wbits=8, abits=8, deployable=False), size=8)
    x = torch.randn(64, 1, 8, 8)
    meta = {"name": "resnet20", "num_classes": 10, "in_channels": 1, "input_size": 8}
    config = ExportConfig(allow_requantize=True, parity_samples=64, fail_on_parity_miss=False)
    data = ParityData(x, None, None, "x", None)
    result = export_model(ExportInputs(meta, student=s), tmp_path / "out", config, parity_data=data,
                          log=lambda _m: None)
    graph = result.manifest["graphs"]["int8"]
    # every quant layer's [0, 255] input, the 9 residual blocks' [0, 255] outputs, and the first block's input
    assert graph["exact"] is False and len(graph["requantized"]) == 18 + 9 + 1
    assert all(not layer["exact"] for layer in graph["layers"])
    off = result.manifest["parity"]["int8"]["off"]
    assert off["max_abs_dlogit"] > 1e-4  # the re-quantized grid is not the trained one, and parity shows it


class _SkipQuantNet(nn.Module):
    """One residual block whose skip branch the model itself quantizes (as a QAT residual quantizer would)."""

    def __init__(self) -> None:
        super().__init__()
        from sqakd_edge.quant.quantizers import LSQActivation

        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.skip_quant = LSQActivation(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        out = torch.relu(out + self.skip_quant(x))
        return self.fc(out.mean((2, 3)))


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_a_quantizer_the_student_calls_itself_becomes_an_exact_qdq(target):
    from sqakd_edge.export.lint import lint_model

    torch.manual_seed(0)
    # residual_bits=0: the model's own skip quantizer is the point here, not the ones prepare_qat adds
    s = prepare_qat(_SkipQuantNet(), QuantConfig(quantizer="lsq", wbits=4, abits=4, residual_bits=0)).eval()
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        s(x)
        want = s(x).numpy()
    lowered = lower(fold_batchnorm(s), target)
    model = to_onnx(lowered.module, x[:1], 13)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == 3  # conv1, conv2 inputs + the skip
    assert [f.rule for f in lint_model(model, target)] == []  # the residual Add now fuses: no warning
    got = run(session(model.SerializeToString(), "off"), x.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


class _FireNet(nn.Module):
    """SqueezeNet's fire pattern: two convs -> ReLU -> Concat -> MaxPool -> the next conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a, self.b = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.c = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.pool(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1))
        return self.fc(torch.relu(self.c(x)).mean((2, 3)))


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_qdq_shared_above_concat_and_maxpool(target):
    from sqakd_edge.export.lint import lint_model
    from sqakd_edge.export.parity import ParityThresholds, graph_parity

    torch.manual_seed(0)
    s = prepare_qat(_FireNet(), QuantConfig(quantizer="pact", wbits=4, abits=4)).eval()
    x = torch.randn(32, 1, 9, 9)
    with torch.no_grad():
        s(x)
        want = s(x).numpy()
    model = to_onnx(lower(fold_batchnorm(s), target).module, x[:1], 13)
    assert lint_model(model, target) == []
    q_before_cat = [n for n in model.graph.node if n.op_type == "Concat"
                    and all(i.endswith("DequantizeLinear_output_0") for i in n.input)]
    assert len(q_before_cat) == 1  # both Concat inputs carry the next conv's Q/DQ (one shared scale)
    result = graph_parity(model.SerializeToString(), x.numpy(), want, ParityThresholds(), inspect_kernels=True)
    assert result["off"]["max_abs_dlogit"] < 1e-4 * max(1.0, float(np.abs(want).max()))  # exact: it commutes
    if target == "onnxruntime":
        assert result["on"]["kernels"]["integer"] == {"QLinearConv": 2}  # a and b now end in a Q


def _requantizations(model) -> int:
    """DequantizeLinear -> [Clip ->] QuantizeLinear: a tensor taken out of one grid and put on another."""
    producer = {o: n for n in model.graph.node for o in n.output}

    def source(name: str) -> str:
        node = producer.get(name)
        return "" if node is None else source(node.input[0]) if node.op_type == "Clip" else node.op_type

    return sum(1 for n in model.graph.node
               if n.op_type == "QuantizeLinear" and source(n.input[0]) == "DequantizeLinear")


@pytest.mark.parametrize("target", ["tensorrt", "onnxruntime"])
def test_a_shared_residual_stream_is_quantized_once_in_the_graph(target):
    x = torch.randn(8, 1, 10, 10)
    shared = student(QuantConfig(quantizer="lsq", wbits=4, abits=4))
    separate = student(QuantConfig(quantizer="lsq", wbits=4, abits=4, share_residual_stream=False))
    lowered = lower(fold_batchnorm(shared), target)
    # the layers reading a block's output (or the first block's input) read its Q/DQ directly
    on_grid = sorted(n for n, m in lowered.module.named_modules() if getattr(m, "input_on_grid", False))
    assert on_grid == [f"layer{i}.{j}.conv1" for i in (1, 2, 3) for j in (0, 1, 2)]
    assert _requantizations(to_onnx(lowered.module, x[:1], 13)) == 0
    # separate streams: every block output is re-quantized for its reader
    assert _requantizations(to_onnx(lower(fold_batchnorm(separate), target).module, x[:1], 13)) == 8
    with torch.no_grad():  # exact: the lowered graph computes the student's values (up to BN-fold float noise)
        assert torch.allclose(lowered.module(x), shared(x), atol=1e-4)


def test_signed_grid_is_uint8_with_zero_point_128_for_onnxruntime_and_its_first_conv_runs_in_integers(tmp_path):
    """A quantized first layer reads a normalised (signed) input: under the ONNX Runtime target it is stored as
    uint8 with zero-point 128 (the same values), so ORT fuses that conv into QLinearConv; TensorRT keeps int8."""
    q = QuantConfig(quantizer="lsq", wbits=4, abits=4, keep_first_last_float=False, first_last_bits=8)
    s = student(q, seed=1)
    folded = fold_batchnorm(s)
    trt = lower(folded, "tensorrt").plans["conv1"].act
    assert (trt.dtype, trt.zero_point) == ("int8", 0) and trt.qmin < 0
    lowered = lower(folded, "onnxruntime")
    ort_act = lowered.plans["conv1"].act
    assert (ort_act.dtype, ort_act.zero_point) == ("uint8", 128)
    assert (ort_act.qmin, ort_act.qmax) == (trt.qmin, trt.qmax)  # the grid integers are unchanged
    assert lowered.plans["conv1"].describe()["input"]["zero_point"] == 128
    x = torch.randn(8, 1, 10, 10)
    model = to_onnx(lowered.module, x[:1], 13)
    with torch.no_grad():
        want = lowered.module(x).numpy()
    got = run(session(model.SerializeToString(), "off"), x.numpy())
    close = np.isclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    assert close.mean() >= 0.95, f"{(~close).sum()} of {close.size} logits differ"
    optimized = tmp_path / "opt.onnx"
    session(model.SerializeToString(), "on", optimized_path=str(optimized))
    import onnx

    ops = [n.op_type for n in onnx.load(str(optimized)).graph.node]
    assert "Conv" not in ops and "FusedConv" not in ops, ops  # every conv, the first included, is integer
    assert ops.count("QLinearConv") == sum(1 for n in lowered.plans if n != "fc")


def test_first_last_bits_quantizes_the_ends_at_their_own_bits():
    s = student(QuantConfig(quantizer="lsq", wbits=4, abits=4, keep_first_last_float=False, first_last_bits=8))
    layers = dict(iter_quant_layers(s))
    assert {layers["conv1"].weight_quantizer.bits, layers["fc"].act_quantizer.bits} == {8}
    assert {layers["layer1.0.conv1"].weight_quantizer.bits, layers["layer1.0.conv1"].act_quantizer.bits} == {4}
    with pytest.raises(Exception, match="keep_first_last_float"):
        QuantConfig(first_last_bits=8)
    with pytest.raises(Exception, match="first_last_bits must be an integer from 0"):
        QuantConfig(keep_first_last_float=False, first_last_bits=9)
