"""ReLUs folded into the activation quantizers that read them (``sqakd_edge.quant.relu_fold``), for real.

What this proves: on this machine's built kernels, the training view of a student computes the student's
outputs and every parameter's gradient bit for bit, for every quantizer family and backward, with and
without residual quantizers, on our ResNet-20 (``F.relu``) and torchvision's ResNet-18 (one shared in-place
``nn.ReLU``); the ReLUs it folds are the ones only a quantizer reads, and it applies them wherever the
kernel does not run (first batch, eager node, EWGS Hessian estimate). It does not prove speed
(``benchmarks/train_step.py``).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from sqakd_edge.config import QuantConfig
from sqakd_edge.models import create_model
from sqakd_edge.quant import cpu_kernels, initialize_quantizers, iter_quantizers, prepare_qat
from sqakd_edge.quant.relu_fold import ReluFolded, fold_relus, folded_relus
from sqakd_edge.train.distributed import DistInfo
from sqakd_edge.train.loop import training_module

from .test_cpu_kernels import built  # noqa: F401 -- the fixture: the real extension


def _student(model, images, **quant):
    student = prepare_qat(model, QuantConfig(wbits=4, abits=4, **quant))
    initialize_quantizers(student, images)
    return student.to(memory_format=torch.channels_last).train()


def _step(model, images):
    out = model(images)
    (out.square().sum() + out[:, 0].sum()).backward()
    return out.detach()


def _grads(model):
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def _same_step(student, images, view=None):
    """(view, absorbed calls, total calls): the student's view and a copy of the student take bit-identical steps."""
    view_owner, plain = student, copy.deepcopy(student)
    view = view if view is not None else fold_relus(view_owner)
    calls = []
    original = ReluFolded.forward

    def counting(self, x, *args, **kwargs):
        calls.append(self.quantizer.absorbs_relu(x))
        return original(self, x, *args, **kwargs)

    ReluFolded.forward = counting
    try:
        out_view = _step(view, images)
    finally:
        ReluFolded.forward = original
    out_plain = _step(plain, images)
    assert torch.equal(out_view, out_plain)
    grads_view, grads_plain = _grads(view_owner), _grads(plain)
    assert grads_view.keys() == grads_plain.keys() and grads_view
    for name, grad in grads_plain.items():
        assert torch.equal(grads_view[name], grad), name
    return view, sum(calls), len(calls)


@pytest.mark.parametrize("backward", ["ste", "ewgs"])
@pytest.mark.parametrize("quantizer", ["lsq", "pact", "dorefa", "interval"])
@pytest.mark.parametrize("residual_bits,expected", [(8, 19), (0, 9)], ids=["residual", "paper"])
def test_the_view_takes_the_students_step_bit_for_bit(built, quantizer, backward, residual_bits, expected):  # noqa: F811
    torch.manual_seed(0)
    images = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    student = _student(create_model("resnet20", 10, 3), images, quantizer=quantizer, backward=backward,
                       residual_bits=residual_bits)
    view, absorbed, total = _same_step(student, images)
    # every ReLU of ResNet-20 feeds a quantizer with residual quantizers; without them a block's last one
    # feeds a float Add's stream, and only each block's inner ReLU (before conv2) is folded
    assert folded_relus(view) == expected
    assert absorbed == total == expected  # the fused kernel took every folded ReLU


def test_torchvisions_shared_in_place_relu_is_folded_where_only_a_quantizer_reads_it(built):  # noqa: F811
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    student = _student(torchvision.models.resnet18(num_classes=10), images)
    view, absorbed, total = _same_step(student, images)
    assert folded_relus(view) >= 8 and absorbed == total == folded_relus(view)  # at least each block's inner one


class _TwoReaders(nn.Module):
    """Two ReLUs to keep: one read by a quant conv and an Add; an in-place one whose input an Add reads."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.stem(x)
        r = F.relu(y)
        z = self.a(r) + r  # r has two readers
        w = F.relu(z, inplace=True)  # overwrites z, which the Add below reads too
        return self.head(self.b(w) + z)


def test_a_relu_that_something_else_reads_stays(built):  # noqa: F811
    images = torch.randn(2, 3, 16, 16)
    student = _student(_TwoReaders(), images, residual_bits=0)
    assert fold_relus(student) is student  # nothing to fold: the student itself trains


class _ModeBranch(nn.Module):
    """A forward that reads ``self.training`` (as torchvision's GoogLeNet does for its auxiliary logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.a(F.relu(self.stem(x)))
        return self.head(y * 2 if self.training else y)


class _NoBranch(_ModeBranch):
    """The same without the branch: its ReLU is folded."""

    def forward(self, x):
        return self.head(self.a(F.relu(self.stem(x))) * 2)


def test_a_forward_that_branches_on_its_mode_trains_as_it_is(built):  # noqa: F811
    images = torch.randn(2, 3, 16, 16)
    student = _student(_ModeBranch(), images, residual_bits=0, keep_first_last_float=False)
    assert fold_relus(student) is student  # a traced graph would keep one branch in both modes
    student.eval()
    assert fold_relus(student) is student and not student.training  # and its mode is left as it was
    assert folded_relus(fold_relus(_student(_NoBranch(), images, residual_bits=0, keep_first_last_float=False))) == 1


def test_where_the_kernel_does_not_run_the_relu_is_applied(built, monkeypatch):  # noqa: F811
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    student = _student(create_model("resnet20", 10, 3), images)
    x = torch.randn(4, 16, 8, 8)
    quantizer = student.layer1[0].conv2.act_quantizer
    assert quantizer.absorbs_relu(x)
    quantizer.capture_levels = True  # the EWGS Hessian estimate: the eager node, whose clamp passes x == 0
    assert not quantizer.absorbs_relu(x)
    quantizer.capture_levels = False
    assert not quantizer.absorbs_relu(x.double())  # outside what the kernels cover
    view = fold_relus(student)
    monkeypatch.setattr(cpu_kernels, "_state", {"module": None, "tried": True})  # as with SQAKD_EDGE_CPU_KERNELS=0
    assert not quantizer.absorbs_relu(x)
    _, absorbed, total = _same_step(student, images, view)  # a view built while they were on: the ReLUs run again
    assert absorbed == 0 and total == 19
    assert training_module(student, DistInfo(), torch.device("cpu")) is student  # fit trains the student itself


def test_a_cold_quantizer_initialises_from_the_relus_output(built):  # noqa: F811
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    cold = prepare_qat(create_model("resnet20", 10, 3), QuantConfig(wbits=4, abits=4)).train()
    plain = copy.deepcopy(cold)
    view = fold_relus(cold)
    assert isinstance(view, fx.GraphModule) and folded_relus(view) == 19
    with torch.no_grad():
        assert torch.equal(view(images), plain(images))
    steps = {name: q.step for name, q in iter_quantizers(plain) if hasattr(q, "step")}
    for name, q in iter_quantizers(cold):
        assert bool(q.initialized), name
        if name in steps:  # LSQ's first step is 2 mean|x| / sqrt(Qp): of x after its ReLU
            assert torch.equal(q.step, steps[name]), name


def test_a_float_model_trains_as_it_is():
    model = create_model("resnet20", 10, 3)
    assert fold_relus(model) is model
    assert training_module(model, DistInfo(), torch.device("cpu")) is model
