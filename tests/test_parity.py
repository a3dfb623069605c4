"""Parity statistics, thresholds, and what ONNX Runtime's optimiser turned the convolutions into."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sqakd_edge.config import QuantConfig
from sqakd_edge.errors import ConfigError, EngineError
from sqakd_edge.export.fold import fold_batchnorm
from sqakd_edge.export.lower import lower
from sqakd_edge.export.onnx_io import to_onnx
from sqakd_edge.export.parity import ParityThresholds, compare, graph_parity, session, summary_line
from sqakd_edge.models import create_model
from sqakd_edge.quant import prepare_qat


def test_compare_counts_agreement_ties_and_steps():
    ref = np.array([[3.0, 1.0, 0.0], [1.0, 1.05, 0.0], [0.0, 0.0, 5.0], [2.0, 0.0, 0.0]], np.float32)
    out = ref.copy()
    out[1] = [1.06, 1.04, 0.0]  # a near tie flips
    out[3] = [0.0, 2.5, 0.0]  # a real disagreement
    stats = compare(ref, out, step=np.array([0.5, 0.5, 0.5]))
    assert stats["top1_agreement"] == 0.5 and stats["disagreements"] == 2
    assert stats["disagreement_margins"] == [pytest.approx(0.05, abs=1e-6), 2.0]
    assert stats["max_abs_dlogit"] == pytest.approx(2.5)
    assert stats["max_dlogit_steps"] == pytest.approx(5.0)
    assert compare(ref, ref)["max_dlogit_steps"] is None and compare(ref, ref)["top1_agreement"] == 1.0


def test_thresholds_are_validated():
    with pytest.raises(ConfigError, match="min_top1_on"):
        ParityThresholds(min_top1_on=1.5)
    assert ParityThresholds().for_level("off") == 0.999 and ParityThresholds().for_level("on") == 0.99


def test_a_wrong_graph_fails_parity_and_a_broken_one_is_an_engine_error():
    torch.manual_seed(0)
    a = create_model("resnet20", num_classes=10, in_channels=1).eval()
    b = create_model("resnet20", num_classes=10, in_channels=1).eval()  # other weights
    x = torch.randn(32, 1, 8, 8)
    with torch.no_grad():
        ref = a(x).numpy()
    result = graph_parity(to_onnx(b, x[:1], 13).SerializeToString(), x.numpy(), ref, ParityThresholds())
    assert result["passed"] is False and result["off"]["top1_agreement"] < 0.9
    assert "MISS" in summary_line("fp32", result)
    same = graph_parity(to_onnx(a, x[:1], 13).SerializeToString(), x.numpy(), ref, ParityThresholds())
    assert same["passed"] is True and same["off"]["max_abs_dlogit"] < 1e-4
    with pytest.raises(EngineError, match="cannot load"):
        session(b"not a model", "off")


@pytest.mark.parametrize("target,integer", [("onnxruntime", True), ("tensorrt", False)])
def test_onnxruntime_target_fuses_into_integer_convs(target, integer):
    torch.manual_seed(0)
    s = prepare_qat(create_model("resnet20", num_classes=10, in_channels=1),
                    QuantConfig(quantizer="lsq", wbits=4, abits=4)).eval()
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        s(x)
        ref = s(x).numpy()
    model = to_onnx(lower(fold_batchnorm(s), target).module, x[:1], 13)
    result = graph_parity(model.SerializeToString(), x.numpy(), ref, ParityThresholds(0.0, 0.0), inspect_kernels=True)
    kernels = result["on"]["kernels"]
    if integer:
        # uint8 activations: each conv whose output is re-quantized becomes QLinearConv: all 18 of ResNet-20,
        # the second of each block through its residual-branch quantizer
        assert kernels["integer"] == {"QLinearConv": 18}
    else:
        # int8 activations: ORT keeps a ReLU between a conv and an int8 Q with zero-point 0, so only the
        # residual branches' convs (whose output Q follows them directly) fuse
        assert kernels["integer"] == {"QLinearConv": 9}
    assert "kernels" not in result["off"]


def test_an_onnxruntime_on_miss_explained_by_bias_rounding_gets_one_line():
    from sqakd_edge.export.api import bias_rounding_note

    assert bias_rounding_note({"on": {"top1_agreement": 1.0}}) is None  # nothing diagnosed: nothing said
    note = bias_rounding_note({"on": {"top1_agreement": 0.9, "without_bias_rounding": {"top1_agreement": 1.0}}})
    assert note is not None and "int32 grid" in note and "100.00%" in note and "\n" not in note
