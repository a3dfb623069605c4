"""Quantizers on residual Adds, learned in training: the branch output and the block output.

The paper quantizes only the inputs of weighted layers, so a residual block's last conv feeds a float
Add, and no integer runtime can keep that conv, or the Add, in integers: ONNX Runtime's ``DQ -> Conv -> Q``
fusion needs a Q on the conv's output and its ``QLinearAdd`` needs both Add inputs dequantized. Without
them half of a ResNet's convs ran in float (the INT8 graph was then slower than the FP32 one). A Q/DQ
added only at export would change values the student never saw; quantizers trained with the student keep
the exported graph exact. They are 8-bit by default, so they cost the student almost nothing.

With ``share_residual_stream`` (the default) a residual-stream tensor that quant layers read (a block's
output, or a block's float input) is quantized once, by the very quantizer those layers use on their
input: an 8-bit stream that each reader re-quantized to 4 bits left a dequantize-quantize pair before
every block in the integer graph (a third of ONNX Runtime's INT8 time on ResNet-18).
"""

from __future__ import annotations

import torch
from torch import fx, nn

from ..config import QuantConfig
from ..graph import TraceFailure, is_add, is_weighted_output, module_calls, residual_skips, set_submodule, trace
from .modules import make_act_quantizer
from .quantizers import Quantizer


class ResidualBranch(nn.Module):
    """A residual branch's last module followed by its output quantizer.

    Args:
        inner: the module whose output enters the residual Add (typically the block's last BatchNorm).
        quantizer: the signed activation quantizer of that output.
    """

    def __init__(self, inner: nn.Module, quantizer: Quantizer) -> None:
        super().__init__()
        self.inner = inner
        self.quantizer = quantizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantizer(self.inner(x))


def residual_quantizer(config: QuantConfig, sign: str) -> Quantizer:
    """A quantizer for the residual path: the student's family at ``residual_bits``.

    DoReFa's activation range is fixed to [0, 1] / [-1, 1], which pre-activation values and residual
    streams overflow; LSQ's learned step takes its place for DoReFa students.

    Args:
        config: the student's quantization settings.
        sign: ``signed`` (a branch output), or ``auto`` (a block output: unsigned after a final ReLU).
    """
    return make_act_quantizer(config, config.residual_bits, sign, _stream_family(config))


def _stream_family(config: QuantConfig) -> str:
    """The family of the residual path's quantizers: LSQ's learned step in DoReFa students, else theirs."""
    return "lsq" if config.quantizer == "dorefa" else config.quantizer


def _quantize_block_output(block: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: a residual block's output passes its ``output_quantizer`` (fx traces hooks)."""
    quantizer: Quantizer = block.output_quantizer  # type: ignore[assignment]
    return quantizer(output)


def _quantize_block_input(block: nn.Module, args: tuple[object, ...]) -> tuple[object, ...]:
    """Forward pre-hook: a residual block's (float) input passes its ``input_quantizer``."""
    quantizer: Quantizer = block.input_quantizer  # type: ignore[assignment]
    return (quantizer(args[0]), *args[1:])


def quantize_residuals(student: nn.Module, config: QuantConfig) -> list[str]:
    """Quantize both inputs of every residual Add whose branch ends in a quant layer (in place).

    - The branch's last module (its BatchNorm, or the quant layer itself) is wrapped in
      :class:`ResidualBranch`: a signed quantizer on the value the branch adds. A projection shortcut
      (a quant conv on the skip) is wrapped the same way.
    - The block that holds the Add gets an ``output_quantizer`` run by a forward hook, so the block's
      output (the next block's skip input, after the final ReLU where there is one) is quantized too.
      Layer names inside the block stay as they were.

    A residual Add is found on a ``torch.fx`` trace: one input comes from a quant layer (possibly through
    a BatchNorm), the other is the skip. A model fx cannot trace, or a module called more than once,
    keeps that part float (export then says so: its lint warns, its speed shows it).

    Returns:
        The names of the quantized branch modules and blocks.
    """
    try:
        gm = trace(student)
    except TraceFailure:
        return []
    calls = module_calls(gm.graph)
    branches: list[str] = []
    blocks: list[str] = []
    modules = dict(gm.named_modules())
    for add, skip_index in residual_skips(gm, quantized_only=True):
        inputs = [add.args[1 - skip_index]]
        skip = add.args[skip_index]
        if isinstance(skip, fx.Node) and is_weighted_output(skip, modules, quantized_only=True):
            inputs.append(skip)  # a projection shortcut (a quant conv) ends in a quantizer too
        for node in inputs:
            branch = str(node.target)  # type: ignore[union-attr]
            if calls.get(branch) == 1 and branch not in branches:
                wrapped = ResidualBranch(student.get_submodule(branch), residual_quantizer(config, "signed"))
                set_submodule(student, branch, wrapped)
                branches.append(branch)
        block = _block_of(add)
        module = student.get_submodule(block) if block else None
        if module is not None and not hasattr(module, "output_quantizer"):
            module.output_quantizer = residual_quantizer(config, "auto")
            module.register_forward_hook(_quantize_block_output)
            blocks.append(block)
    if config.share_residual_stream and (config.quantizer != "dorefa" or config.learned_stream_step):
        share_stream_quantizers(student, config)
    return branches + blocks


def _block_of(node: fx.Node) -> str:
    """The innermost module whose forward ``node`` runs in ('' at the top level)."""
    stack = list(node.meta.get("nn_module_stack", {}).values())
    return str(stack[-1][0]) if stack else ""


def _calls_quantizer(node: object, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` is a call of a quantizer module (its output is on that quantizer's grid)."""
    return isinstance(node, fx.Node) and node.op == "call_module" and isinstance(modules[str(node.target)], Quantizer)


def _inside(node: fx.Node, block: str) -> bool:
    owner = _block_of(node)
    return owner == block or owner.startswith(block + ".")


def share_stream_quantizers(student: nn.Module, config: QuantConfig) -> list[str]:
    """Give each residual-stream tensor that quant layers read one quantizer, shared with those layers.

    - A block output (its ``output_quantizer``) read by quant layers: the output quantizer becomes an
      ``abits`` activation quantizer, and it *is* each reader's ``act_quantizer`` (one module).
    - A block with a residual Add whose skip is float (e.g. the first block, after the float stem): its
      input, when quant layers in the block read it, passes an ``input_quantizer`` (a forward pre-hook),
      shared the same way; the skip then carries that grid.

    A reader's quantizer then sees values already on its grid and returns them unchanged (idempotent),
    so the student computes what the exported graph computes, and export writes one Q/DQ per tensor.
    Block outputs that no quant layer reads (the last block's, read by a float classifier) keep
    ``residual_bits``. In a DoReFa student (``learned_stream_step``) the shared quantizer is LSQ's, so
    the stream's readers take LSQ inputs; their weights, and every other input, stay DoReFa's.

    Returns:
        The names of the shared quantizers (``block.output_quantizer`` / ``block.input_quantizer``).
    """
    from .modules import QuantLayer

    gm = trace(student)
    modules = dict(gm.named_modules())

    def readers(node: fx.Node) -> list[fx.Node]:
        return [u for u in node.users if u.op == "call_module" and isinstance(modules[str(u.target)], QuantLayer)
                and u.args[0] is node]

    def share(owner: nn.Module, attr: str, layers: list[fx.Node]) -> None:
        quantizer = make_act_quantizer(config, config.abits, config.act_sign, _stream_family(config))
        setattr(owner, attr, quantizer)
        for layer in layers:
            student.get_submodule(str(layer.target)).act_quantizer = quantizer  # type: ignore[union-attr]

    shared: list[str] = []
    for node in gm.graph.nodes:
        target = str(node.target)
        layers = readers(node) if node.op == "call_module" and target.endswith("output_quantizer") else []
        if layers:
            block = target.rpartition(".")[0]
            share(student.get_submodule(block) if block else student, "output_quantizer", layers)
            shared.append(target)
    for add in [n for n in gm.graph.nodes if is_add(n)]:
        quantized = [_calls_quantizer(a, modules) for a in add.args]
        block = _block_of(add)
        if quantized.count(True) != 1 or not block or hasattr(student.get_submodule(block), "input_quantizer"):
            continue  # not a residual Add with a float skip inside a block (or already handled)
        inside = [n for n in gm.graph.nodes if _inside(n, block)]
        outside_inputs = {a for n in inside for a in n.all_input_nodes if not _inside(a, block)}
        if len(outside_inputs) != 1:
            continue  # not a block with one tensor input
        (block_input,) = outside_inputs
        if _calls_quantizer(block_input, modules):
            continue  # already quantized: the previous block's output quantizer
        layers = [u for u in readers(block_input) if _inside(u, block)]
        if layers:
            module = student.get_submodule(block)
            share(module, "input_quantizer", layers)
            # first among the block's children, so traces and graphs name it by the block, not by a reader
            children = module._modules
            reordered = {"input_quantizer": children.pop("input_quantizer"), **children}
            children.clear()
            children.update(reordered)
            module.register_forward_pre_hook(_quantize_block_input)
            shared.append(f"{block}.input_quantizer")
    return shared
