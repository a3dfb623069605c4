"""Tiny FP32 and QDQ ONNX graphs (opset 13, input ``input``, output ``logits``) for bench and device tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_tiny_graphs(folder: Path, *, prefix: str = "model.", dynamic_logits: bool = True) -> dict[str, Path]:
    """``{"fp32": path, "int8": path}``: a conv + linear net, the int8 one with fake-quant on input and weight."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self, qdq: bool) -> None:
            super().__init__()
            self.qdq = qdq
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 10)

        def forward(self, x):
            w = self.conv.weight
            if self.qdq:
                x = torch.fake_quantize_per_tensor_affine(x, 0.05, 0, -128, 127)
                w = torch.fake_quantize_per_tensor_affine(w, 0.01, 0, -128, 127)
            return self.fc(torch.relu(torch.nn.functional.conv2d(x, w, self.conv.bias, padding=1)).mean((2, 3)))

    torch.manual_seed(0)
    axes = {"input": {0: "batch"}, **({"logits": {0: "batch"}} if dynamic_logits else {})}
    out = {}
    for role, qdq in (("fp32", False), ("int8", True)):
        path = folder / f"{prefix}{role}.onnx"
        torch.onnx.export(Net(qdq).eval(), torch.randn(1, 1, 8, 8), str(path), opset_version=13, dynamo=False,
                          input_names=["input"], output_names=["logits"], dynamic_axes=axes)
        out[role] = path
    return out
