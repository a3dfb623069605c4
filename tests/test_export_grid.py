"""Every quantizer x bits x target exports, lints clean and passes parity.

The fast subset runs ResNet-20 (the CI grid: 4 quantizers x {8, 4, 2} bits x both targets); the full grid
over every registered model is marked ``slow``. Students are real small QAT runs, not random networks:
a teacher is trained on a synthetic 10-class task (class prototypes plus noise), each student is
QAT-trained from it for a few dozen steps, and parity runs on fresh samples of the same task. Random
networks have near-tied logits, where any float noise flips top-1, which would test nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sqakd_edge.config import QuantConfig
from sqakd_edge.export.api import ExportConfig, ExportInputs, export_model
from sqakd_edge.export.inputs import ParityData
from sqakd_edge.models import create_model, list_models
from sqakd_edge.quant import prepare_qat

QUANTIZERS = ("pact", "lsq", "dorefa", "interval")
BITS = (8, 4, 2)
TARGETS = ("tensorrt", "onnxruntime")


@dataclass
class Task:
    """A synthetic classification task: ``prototype[label] + noise``."""

    channels: int
    size: int
    classes: int = 10
    noise: float = 0.7
    seed: int = 0

    def __post_init__(self) -> None:
        self.gen = torch.Generator().manual_seed(self.seed)
        self.prototypes = torch.randn(self.classes, self.channels, self.size, self.size, generator=self.gen)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, self.classes, (n,), generator=self.gen)
        x = self.prototypes[y] + self.noise * torch.randn(n, self.channels, self.size, self.size, generator=self.gen)
        return x, y


def fit(model: nn.Module, task: Task, steps: int, lr: float, batch: int = 64) -> nn.Module:
    opt = torch.optim.Adam(model.parameters(), lr)
    model.train()
    for _ in range(steps):
        x, y = task.batch(batch)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class Zoo:
    """Teachers and QAT students per model, built once per test module."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.teachers: dict[str, tuple[nn.Module, Task]] = {}
        self.students: dict[tuple[str, str, int], nn.Module] = {}

    def teacher(self, name: str) -> tuple[nn.Module, Task]:
        if name not in self.teachers:
            task = Task(channels=1, size=self.size)
            torch.manual_seed(0)
            self.teachers[name] = (fit(create_model(name, num_classes=task.classes, in_channels=1), task, 120, 1e-2),
                                   task)
        return self.teachers[name]

    def student(self, name: str, quantizer: str, bits: int) -> tuple[nn.Module, Task]:
        teacher, task = self.teacher(name)
        key = (name, quantizer, bits)
        if key not in self.students:
            torch.manual_seed(1)
            s = prepare_qat(teacher, QuantConfig(quantizer=quantizer, wbits=bits, abits=bits)).eval()
            with torch.no_grad():
                s(task.batch(64)[0])  # quantizers take their ranges from the first batch
            self.students[key] = fit(s, task, 40, 1e-3, batch=32)
        return self.students[key], task


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return Zoo(size=10)


@pytest.fixture(scope="module")
def zoo16() -> Zoo:
    return Zoo(size=16)  # every registered model takes 16x16 (vgg11_bn needs more than 10)


def check_export(zoo: Zoo, tmp_path, name: str, quantizer: str, bits: int, target: str) -> None:
    s, task = zoo.student(name, quantizer, bits)
    x, y = task.batch(200)  # 200 inputs: the 99% "on" threshold tolerates 2 flips, the 99.9% "off" none
    data = ParityData(x, y, None, "synthetic-prototypes", None)
    meta = {"name": name, "num_classes": task.classes, "in_channels": task.channels, "input_size": task.size}
    config = ExportConfig(target=target, parity_samples=200, fp32_parity_samples=16, fail_on_parity_miss=False)
    inputs = ExportInputs(meta, student=s, quant=QuantConfig(quantizer=quantizer, wbits=bits, abits=bits))
    result = export_model(inputs, tmp_path / "out", config, parity_data=data, log=lambda _m: None)
    m = result.manifest
    int8 = m["parity"]["int8"]
    if not result.passed and not int8["off"]["passed"]:
        explain_fold_rounding(s, x, int8["off"]["top1_agreement"], result.parity_line())
    if not result.passed and target == "onnxruntime" and int8["off"]["passed"]:
        explain_ort_bias_rounding(int8, result.parity_line())
    assert result.passed, result.parity_line()
    assert int8["off"]["top1_agreement"] >= 0.999 and int8["on"]["top1_agreement"] >= 0.99
    assert m["graphs"]["int8"]["exact"] is True and m["graphs"]["int8"]["requantized"] == []
    lint = m["graphs"]["int8"]["lint"]
    assert lint["errors"] == 0
    # the only warnings allowed under TensorRT: the trained residual-branch quantizers sit between a conv and
    # its Add (exact, where TensorRT would prefer the skip), or float residual skips without them
    allowed = {"qdq-weighted-output", "residual-add-skip"} if target == "tensorrt" else set()
    assert {f["rule"] for f in lint["findings"]} <= allowed
    if target == "onnxruntime":
        # ORT's optimiser really turned convs into integer kernels (every conv whose output is re-quantized)
        assert int8["on"]["kernels"]["integer"].get("QLinearConv", 0) >= 1
    assert (tmp_path / "out" / "model.int8.onnx").stat().st_size == m["graphs"]["int8"]["bytes"]


def explain_fold_rounding(student: nn.Module, x: torch.Tensor, off_agreement: float, line: str) -> None:
    """A miss with optimisations off: is it the float32 rounding of BN folding, the folding itself exact?

    The graph holds BN folded into float32 weight scales and biases and computes in another order than
    the student; each folded value is off by float32 rounding, and a value that lands that close to a
    rounding tie of the next activation quantizer comes out one level apart. A briefly trained DoReFa zoo
    student is sensitive enough for one level to flip a decision on ~0.1-0.5% of inputs. The check: folded
    in float64, the student's folding must equal the student in float64 (same decisions, |dlogit| ~1e-14);
    then the math is exact and the miss is float32 rounding, an expected failure. A folding that is not
    exact fails the test, as does a graph off by more than such rounding could make it (< 98%).
    """
    import copy

    from sqakd_edge.export.fold import fold_batchnorm

    student64 = copy.deepcopy(student).double()
    with torch.no_grad():
        want = student64(x.double())
        folded = fold_batchnorm(student64, dtype=torch.float64).module(x.double())
    same = float((folded.argmax(1) == want.argmax(1)).double().mean())
    delta = float((folded - want).abs().max())
    assert same == 1.0 and delta <= 1e-9 * float(want.abs().max()), (
        f"BN folding is not exact in float64 ({same:.2%} same decisions, max |dlogit| {delta:.3g}): {line}")
    assert off_agreement >= 0.98, f"off-parity miss beyond float rounding: {line}"
    pytest.xfail(f"float32 rounding of the folded BN flips decisions (folded in float64: same decisions, max "
                 f"|dlogit| {delta:.1e}): {line}")


def explain_ort_bias_rounding(int8: dict, line: str) -> None:
    """An ORT-target miss with optimisations on only: is it ORT's int32 rounding of the conv biases?

    ORT's optimiser rounds each float conv bias onto the int32 grid (input scale x weight scale) so it
    can run QLinearConv; deep low-bit students can be sensitive enough for that to flip decisions. Export
    diagnoses such a miss itself (``on.without_bias_rounding``: the "on" run without that one pass,
    WeightBiasQuantization). If that restores parity, the miss is ORT's, and this is an expected failure;
    anything else fails the test.
    """
    without = int8["on"].get("without_bias_rounding")
    assert without is not None, f"an ORT-on miss the export did not diagnose: {line}"
    agreement = without["top1_agreement"]
    assert agreement >= 0.99, f"ORT-on miss not explained by its bias rounding ({agreement:.4f}): {line}"
    pytest.xfail(f"ONNX Runtime's int32 bias rounding (WeightBiasQuantization) flips decisions: {line}; "
                 f"without that pass: {agreement:.2%}")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_resnet20_grid(zoo, tmp_path, quantizer, bits, target):
    check_export(zoo, tmp_path, "resnet20", quantizer, bits, target)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("quantizer", QUANTIZERS)
@pytest.mark.parametrize("name", list_models())
def test_full_grid(zoo16, tmp_path, name, quantizer, bits, target):
    check_export(zoo16, tmp_path, name, quantizer, bits, target)
