"""ReLUs folded into the activation quantizers that read them: one pass less each way, for training on CPU.

A ReLU whose output only an unsigned activation quantizer reads does nothing that the quantizer's fused
kernel (:mod:`.cpu_kernels`) does not do already: the kernel clamps ``x / scale`` at level 0, which is the
ReLU forward, and its backward passes the gradient only where ``0 < x < top``, strictly, which is ReLU's mask
(``x > 0``) times the quantizer's own. So ``quantizer(x)`` equals ``quantizer(relu(x))`` bit for bit, outputs
and gradients (:meth:`~.quantizers.Quantizer.absorbs_relu` says when), and the ReLU's pass over the tensor
forward and its pass backward can be skipped. In the default ResNet-20 student all 19 ReLUs feed one (a
block's inner ReLU the next conv's input quantizer; the stem's and each block's last one the residual
stream's quantizer); in the paper's student, without residual quantizers, the 9 inner ones do.

:func:`fold_relus` gives a *training view* of a student: a GraphModule of its traced forward that holds the
student's own modules (the same parameters, buffers and hooks) and skips each such ReLU whenever the
quantizer's fused kernel runs; elsewhere (the first batch, the eager node, CUDA, the EWGS Hessian estimate)
it applies the ReLU as before. The student itself, what is checkpointed, evaluated and exported, is
unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..graph import TraceFailure, relu_input, trace
from . import cpu_kernels
from .modules import QuantLayer
from .quantizers import Quantizer


class ReluFolded(nn.Module):
    """``reader(relu(x))``, computed as ``reader(x)`` where the reader's input quantizer absorbs the ReLU.

    Args:
        reader: a quant layer (its input quantizer reads ``x`` first) or an activation quantizer.
    """

    def __init__(self, reader: nn.Module) -> None:
        super().__init__()
        self.reader = reader

    @property
    def quantizer(self) -> Quantizer:
        reader = self.reader
        return reader.act_quantizer if isinstance(reader, QuantLayer) else reader  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if not self.quantizer.absorbs_relu(x):
            x = F.relu(x)
        return self.reader(x, *args, **kwargs)  # type: ignore[no-any-return]


def _reads_quantized(module: nn.Module) -> bool:
    """Whether ``module``'s first step on its first input is an activation quantizer."""
    if isinstance(module, QuantLayer):
        return isinstance(getattr(module, "act_quantizer", None), Quantizer)
    return isinstance(module, Quantizer) and not module.is_weight


def _trace_for_training(student: nn.Module) -> fx.GraphModule | None:
    """The student's graph in training mode; None where fx cannot trace it or its forward branches on the mode.

    A traced graph keeps the Python branches taken while tracing: a forward that reads ``self.training``
    (torchvision's GoogLeNet returns its auxiliary logits only in training) would run as traced whatever
    its mode, so such a student trains as it is.
    """
    was_training = student.training
    graphs = []
    try:
        for mode in (False, True):  # training's mode last: that graph is the one kept
            student.train(mode)
            graphs.append(trace(student))
    except TraceFailure:
        return None
    finally:
        student.train(was_training)
    return graphs[1] if graphs[0].code == graphs[1].code else None


def fold_relus(student: nn.Module) -> nn.Module:
    """The student's training view with its foldable ReLUs folded (see the module docstring), or the student.

    A ReLU is folded when its only reader is a quant layer or an activation quantizer that takes it as its
    first input, and (for an in-place ReLU, which overwrites its input) nothing else reads its input. The
    student itself is returned when it has none, when the fused kernels are off or unavailable, when fx
    cannot trace it, or when its forward branches on its mode.
    """
    if not any(isinstance(m, Quantizer) for m in student.modules()) or cpu_kernels.kernels() is None:
        return student  # (without the kernels no quantizer would absorb one)
    gm = _trace_for_training(student)
    if gm is None:
        return student
    modules = dict(gm.named_modules())
    folded = 0
    for node in list(gm.graph.nodes):
        found = relu_input(node, modules)
        if found is None or len(node.users) != 1:
            continue
        source, in_place = found
        (reader,) = node.users
        if reader.op != "call_module" or not reader.args or reader.args[0] is not node:
            continue
        if node in reader.args[1:] or node in reader.kwargs.values():
            continue
        if not _reads_quantized(modules[str(reader.target)]):
            continue
        if in_place and len(source.users) > 1:
            continue
        name = f"relu_folded_{folded}_{str(reader.target).replace('.', '_')}"
        gm.add_submodule(name, ReluFolded(modules[str(reader.target)]))
        reader.target = name
        reader.args = (source, *reader.args[1:])
        gm.graph.erase_node(node)
        folded += 1
    if not folded:
        return student
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.folded_relus = folded  # type: ignore[assignment]
    return gm


def folded_relus(model: nn.Module) -> int:
    """How many ReLUs :func:`fold_relus` folded in ``model`` (0 for anything else)."""
    return int(getattr(model, "folded_relus", 0)) if isinstance(model, fx.GraphModule) else 0
