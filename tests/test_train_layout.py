"""Training's speed-ups change no numbers: the channels-last layout (.layout) and malloc reuse (.allocator).

What these prove: the layout is chosen by running the model, so a model that cannot run channels-last
(LeNet-style ``x.view``) trains in the default layout instead of crashing; the student's loss and gradients
in channels-last equal the default layout's within float tolerance; fit hands the model back in the
default layout; malloc reuse stops the page faults of reallocating a large tensor. What they do not prove:
any speed (``benchmarks/train_step.py`` measures that).
"""

from __future__ import annotations

import copy
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from sqakd_edge.config import QuantConfig, TrainConfig
from sqakd_edge.models import create_model
from sqakd_edge.quant import initialize_quantizers, prepare_qat
from sqakd_edge.train.layout import DEFAULT, in_layout, training_layout
from sqakd_edge.train.loop import RunData, fit
from sqakd_edge.train.loss import kd_loss
from sqakd_edge.train.task import DistillationTask

from .conftest import toy_images

CPU = torch.device("cpu")


class ViewNet(nn.Module):
    """LeNet-style: ``view`` on a feature map, which a channels-last tensor cannot give."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv(x)))), 2)
        return self.fc(x.view(-1, 4 * 8 * 8))


def _is_channels_last(model: nn.Module) -> bool:
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
    return conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()


def test_a_model_that_cannot_run_channels_last_keeps_the_default_layout():
    x = torch.randn(8, 1, 16, 16)
    model = ViewNet()
    with pytest.raises(RuntimeError, match="view size"):
        copy.deepcopy(model).to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert training_layout(model, x, CPU) == DEFAULT
    assert not _is_channels_last(model)
    model(in_layout(x, DEFAULT))  # still runs


def test_a_resnet_trains_channels_last_on_cpu_only(float_model):
    x = torch.randn(8, 1, 16, 16)
    model = copy.deepcopy(float_model).train()
    assert training_layout(model, None, CPU) == DEFAULT  # no sample: nothing tried
    assert training_layout(model, x, torch.device("meta")) == DEFAULT
    assert training_layout(model, x, CPU) == torch.channels_last
    assert _is_channels_last(model) and model.training  # converted in place, mode kept


def test_sqakd_edge_layout_default_keeps_the_default_layout(float_model, monkeypatch):
    monkeypatch.setenv("SQAKD_EDGE_LAYOUT", "default")
    model = copy.deepcopy(float_model)
    assert training_layout(model, torch.randn(8, 1, 16, 16), CPU) == DEFAULT
    assert not _is_channels_last(model)


def test_sqakd_on_a_view_model_trains_instead_of_crashing(tmp_path):
    """The teacher's channels-last wrapper once crashed every LeNet-style model on CPU."""
    torch.manual_seed(0)
    teacher = ViewNet().eval()
    images, labels = toy_images(96)
    student = prepare_qat(teacher, QuantConfig(quantizer="lsq", wbits=4, abits=4))
    data = RunData(TensorDataset(images, labels), None, None, True, {"spec": "toy"})
    result = fit(student, data, TrainConfig(epochs=1, batch_size=32, val_fraction=0.0), tmp_path / "run",
                 model_meta={"name": "viewnet"}, teacher=teacher, quant=QuantConfig(quantizer="lsq", wbits=4, abits=4),
                 progress=False, log=lambda _: None)
    assert result.best_path.exists()


@pytest.mark.parametrize("quantizer,backward", [("lsq", "ste"), ("pact", "ste"), ("interval", "ewgs")])
def test_channels_last_student_gives_the_default_layouts_loss_and_gradients(float_model, quantizer, backward):
    """In float64, where another summation order cannot move a value across a rounding boundary.

    (In float32 a few values sit within float noise of a boundary, and any change of summation order, the
    layout's or the thread count's, flips them: the quantizer-scale gradients then move by tens of percent.)
    """
    torch.manual_seed(0)
    x = torch.randn(32, 1, 16, 16, dtype=torch.float64)
    teacher = copy.deepcopy(float_model).double()
    quant = QuantConfig(quantizer=quantizer, backward=backward, wbits=4, abits=4)
    base = prepare_qat(teacher, quant)
    initialize_quantizers(base, x)
    fast = copy.deepcopy(base)
    layouts = {"default": DEFAULT, "fast": training_layout(fast, x, CPU)}
    assert layouts["fast"] == torch.channels_last and _is_channels_last(fast)
    results = {}
    for name, model in (("default", base), ("fast", fast)):
        task = DistillationTask(model, TrainConfig(amp=False), copy.deepcopy(teacher), CPU, quant,
                                sample=x if name == "fast" else None, student_layout=layouts[name])
        task.train()
        loss = task(x, torch.zeros(32, dtype=torch.long))["loss"]
        loss.backward()
        results[name] = (float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()
                                                if p.grad is not None})
    (loss_a, grads_a), (loss_b, grads_b) = results["default"], results["fast"]
    assert loss_a > 0 and loss_b == pytest.approx(loss_a, rel=1e-9)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 20
    for name in grads_a:
        scale = float(grads_a[name].abs().max())
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-7, atol=1e-9 * scale, msg=name)


def test_fit_hands_the_student_back_in_the_default_layout(tmp_path, float_model, toy_meta):
    images, labels = toy_images(96)
    quant = QuantConfig(quantizer="lsq", wbits=4, abits=4)
    student = prepare_qat(float_model, quant)
    data = RunData(TensorDataset(images, labels), None, None, True, {"spec": "toy"})
    fit(student, data, TrainConfig(epochs=1, batch_size=32, val_fraction=0.0), tmp_path / "run", model_meta=toy_meta,
        teacher=float_model, quant=quant, progress=False, log=lambda _: None)
    assert all(p.is_contiguous() for p in student.parameters())
    assert all(p.is_contiguous() for p in float_model.parameters())  # the caller's teacher was never converted
    with torch.no_grad():
        assert torch.isfinite(student.eval()(images[:4])).all()


def test_kd_loss_of_the_resnet_student_is_layout_independent():
    """The whole CIFAR ResNet-20 student at W4A4, logits compared (the model train_step.py times)."""
    torch.manual_seed(0)
    teacher = create_model("resnet20", 10, 3).eval()
    x = torch.randn(16, 3, 32, 32)
    student = prepare_qat(teacher, QuantConfig(quantizer="lsq", wbits=4, abits=4)).eval()
    initialize_quantizers(student, x)
    with torch.no_grad():
        want = student(x)
        training_layout(student, x, CPU)
        got = student(in_layout(x, torch.channels_last))
    assert float(kd_loss(got, want)) < 1e-4


GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

_FAULTS = """
import resource, sys, torch
from sqakd_edge.train.allocator import reuse_freed_memory
applied = reuse_freed_memory()
x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB: above glibc's largest dynamic mmap threshold
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = x * 2
    del y
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, faults[-1])
"""


@pytest.mark.skipif(not GLIBC, reason="malloc reuse is set through glibc's mallopt")
@pytest.mark.parametrize("setting", ["fit", "default"])
def test_malloc_reuse_stops_the_page_faults_of_a_reallocated_tensor(setting):
    env = {"SQAKD_EDGE_MALLOC": setting, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True, env=env,
                         cwd=str(Path(__file__).resolve().parents[1])).stdout.split()
    applied, faults = out[0] == "True", int(out[1])
    pages = 64 * 1024 * 1024 // 4096
    if setting == "fit":
        assert applied and faults < pages // 20  # reused: (almost) no new pages
    else:
        assert not applied and faults > pages // 2  # glibc's own settings: a fresh mapping every time
