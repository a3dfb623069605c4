"""The FP16 graph of a float model whose values leave float16's range: a note and no graph, not a parity miss."""

from __future__ import annotations

import torch

from sqakd_edge.export.api import ExportConfig, ExportInputs, export_model
from sqakd_edge.export.inputs import ParityData
from sqakd_edge.models import create_model


def _export(model, tmp_path, lines):
    meta = {"name": "resnet20", "num_classes": 10, "in_channels": 1, "input_size": 8}
    data = ParityData(torch.randn(32, 1, 8, 8), None, None, "x", None)
    config = ExportConfig(int8=False, parity_samples=32, fp32_parity_samples=16)
    return export_model(ExportInputs(meta, float_model=model.eval()), tmp_path / "out", config, parity_data=data,
                        log=lines.append)


def test_a_float_model_that_overflows_float16_gets_no_fp16_graph_and_the_export_passes(tmp_path):
    model = create_model("resnet20", 10, 1)
    with torch.no_grad():
        model.fc.weight.mul_(1e6)  # logits far beyond float16's 65504: its FP16 graph returns inf
    lines: list[str] = []
    result = _export(model, tmp_path, lines)
    assert result.passed and "fp16" not in result.manifest["parity"] and "fp16" not in result.manifest["graphs"]
    assert not (tmp_path / "out" / "model.fp16.onnx").exists()
    note = [line for line in lines if line.startswith("note: no FP16 graph")]
    assert len(note) == 1 and "overflows float16" in note[0] and "inf/NaN" in note[0]


def test_a_float_model_in_float16_range_keeps_its_fp16_graph(tmp_path):
    lines: list[str] = []
    result = _export(create_model("resnet20", 10, 1), tmp_path, lines)
    assert result.passed and result.manifest["parity"]["fp16"]["passed"]
    assert (tmp_path / "out" / "model.fp16.onnx").exists()
    assert not [line for line in lines if line.startswith("note: no FP16 graph")]
